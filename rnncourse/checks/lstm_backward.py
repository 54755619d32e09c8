"""Checks for the lstm_backward assignment: backpropagation through time for an LSTM.

References are ``tf.GradientTape`` gradients of a float64 ``keras.layers.LSTM`` with the
same weights; the hints read the pattern of right and wrong gradients.
"""

from __future__ import annotations

import numpy as np

from rnncourse.checks.shared import as_tuple, check_sequence_gradients, lstm_problem
from rnncourse.grading import FLOAT64_TOL, call_student, check_gradients, keras_rnn_gradients

STEP_NAMES = ["dx_t", "dh_prev", "dc_prev", "dK", "dU", "db"]
NAMES = ["dx", "dh0", "dc0", "dK", "dU", "db"]


def step_hint(wrong: set[str], first_bad_step) -> str:
    """Advice from which of one step's six gradients are wrong."""
    if wrong == {"dc_prev"}:
        return "only dc_prev is wrong: c_prev reaches c_t scaled by the forget gate."
    if "dc_prev" not in wrong:
        return ("dc_prev is right, so the gradient on c_t is right: check each gate's derivative "
                "(sigmoid' = s * (1 - s), tanh' = 1 - tanh**2) and the block order i, f, c, o of dz.")
    return ("the gradient on c_t is dc_t plus what comes through h_t = o * tanh(c_t): "
            "dh_t * o * (1 - tanh(c_t)**2).")


def sequence_hint(all_wrong: set[str], dx_last_step_right: bool, T: int) -> str:
    """Advice from the pattern of right and wrong gradients (all six, not only those checked)."""
    if all_wrong == {"dK", "dU", "db"}:
        return ("dx, dh0 and dc0 are right, so each step's gradients are right: dK, dU and db "
                "must be summed over all time steps (+=), not overwritten.")
    if "dx" in all_wrong and dx_last_step_right:
        return ("dx is right at the last step but wrong before it: carry both gradients back "
                "from step t+1, dh_prev (added to dh[:, t]) and dc_prev (the next step's dc_t).")
    if "dx" in all_wrong and T > 1:
        return ("dx is already wrong at the last step: check lstm_step_backward, and walk "
                "t = T-1, ..., 0 starting with zero gradients from the future.")
    return ""


def check_lstm_step_backward(lstm_step_backward, B: int, D: int, H: int, seed: int) -> None:
    """Compare lstm_step_backward with tf.GradientTape on a one-step float64 keras.layers.LSTM."""
    p = lstm_problem(B, 1, D, H, seed)
    x, K, U, b, h0, c0 = p["x"], p["K"], p["U"], p["b"], p["h0"], p["c0"]
    rng = np.random.default_rng(seed + 100)
    dh_t, dc_t = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    want = keras_rnn_gradients("LSTM", x, [K, U, b], [h0, c0], dh_t[:, None],
                               d_final_state=[None, dc_t])
    got = as_tuple(call_student(lstm_step_backward, dh_t, dc_t, x[:, 0], h0, c0, K, U, b),
                   "lstm_step_backward", STEP_NAMES)
    check_gradients(
        got,
        dict(zip(STEP_NAMES, [want["dx"][:, 0], want["dh0"], want["dc0"], want["dK"], want["dU"],
                              want["db"]])),
        context=f"lstm_step_backward with B={B}, D={D}, H={H}", hint=step_hint, **FLOAT64_TOL,
    )


def check_lstm_backward(lstm_backward, B: int, T: int, D: int, H: int, seed: int,
                        names: list[str]) -> None:
    """Compare the named gradients of lstm_backward with tf.GradientTape's on a float64 problem."""
    p = lstm_problem(B, T, D, H, seed)
    x, K, U, b, h0, c0 = p["x"], p["K"], p["U"], p["b"], p["h0"], p["c0"]
    dh = np.random.default_rng(seed + 100).normal(size=(B, T, H))
    want = keras_rnn_gradients("LSTM", x, [K, U, b], [h0, c0], dh)
    got = as_tuple(call_student(lstm_backward, dh, x, h0, c0, K, U, b), "lstm_backward", NAMES)
    check_sequence_gradients(got, want, names, f"lstm_backward with B={B}, T={T}, D={D}, H={H}",
                             sequence_hint)

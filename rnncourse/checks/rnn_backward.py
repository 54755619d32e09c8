"""Checks for the rnn_backward assignment: backpropagation through time for a simple RNN,
and clipping by global norm.

References are ``tf.GradientTape`` gradients of a float64 ``keras.layers.SimpleRNN`` with
the same weights; the hints read the pattern of right and wrong gradients.
"""

from __future__ import annotations

import numpy as np

from rnncourse.checks.shared import as_tuple, check_sequence_gradients
from rnncourse.grading import (
    FLOAT64_TOL,
    call_student,
    check_array,
    check_gradients,
    keras_rnn,
    keras_rnn_gradients,
    random_rnn_problem,
)

STEP_NAMES = ["dx_t", "dh_prev", "dK", "dU", "db"]
NAMES = ["dx", "dh0", "dK", "dU", "db"]


def step_hint(wrong: set[str], first_bad_step) -> str:
    """Advice from which of one step's gradients are wrong."""
    if wrong == {"dh_prev"}:
        return "only dh_prev is wrong: it flows back through the recurrent kernel (which side, transposed?)."
    if wrong == {"dU"}:
        return "only dU is wrong: which state multiplies U in the forward pass of this step?"
    if wrong >= set(STEP_NAMES):
        return "every gradient is wrong: check da = dh_t * tanh'(a_t), written with h_t."
    return ""


def sequence_hint(all_wrong: set[str], dx_last_step_right: bool, T: int) -> str:
    """Advice from the pattern of right and wrong gradients (all five, not only those checked)."""
    if all_wrong == {"dK", "dU", "db"}:
        return ("dx and dh0 are right, so each step's gradients are right: dK, dU and db must be "
                "summed over all time steps (+=), not overwritten.")
    if all_wrong == {"dU"}:
        return "only dU is wrong: at each step, dU gets h_prev.T @ da, the state *before* the step."
    if "dx" in all_wrong and dx_last_step_right:
        return ("dx is right at the last step but wrong before it: the total gradient of h_t is "
                "dh[:, t] plus what comes back from step t+1 (its dh_prev).")
    if "dx" in all_wrong and T > 1:
        return ("dx is already wrong at the last step, where the only gradient is dh[:, T-1]: "
                "check rnn_step_backward, and walk t = T-1, ..., 0 starting with nothing from the future.")
    return ""


def check_rnn_step_backward(rnn_step_backward, B: int, D: int, H: int, seed: int) -> None:
    """Compare rnn_step_backward with tf.GradientTape on a one-step float64 SimpleRNN."""
    p = random_rnn_problem(B=B, T=1, D=D, H=H, seed=seed)
    x_t, h_prev, K, U, b = p["x"][:, 0], p["h0"], p["K"], p["U"], p["b"]
    h_t = np.tanh(x_t @ K + h_prev @ U + b)
    dh_t = np.random.default_rng(seed + 100).normal(size=(B, H))
    want = keras_rnn_gradients("SimpleRNN", p["x"], [K, U, b], [h_prev], dh_t[:, None])
    got = as_tuple(call_student(rnn_step_backward, dh_t, x_t, h_prev, h_t, K, U),
                   "rnn_step_backward", STEP_NAMES)
    check_gradients(
        got,
        {"dx_t": want["dx"][:, 0], "dh_prev": want["dh0"], "dK": want["dK"], "dU": want["dU"],
         "db": want["db"]},
        context=f"rnn_step_backward with B={B}, D={D}, H={H}", hint=step_hint, **FLOAT64_TOL,
    )


def check_rnn_backward(rnn_backward, B: int, T: int, D: int, H: int, seed: int,
                       names: list[str]) -> None:
    """Compare the named gradients of rnn_backward with tf.GradientTape's on a float64 problem."""
    p = random_rnn_problem(B=B, T=T, D=D, H=H, seed=seed)
    x, K, U, b, h0 = p["x"], p["K"], p["U"], p["b"], p["h0"]
    h = keras_rnn("SimpleRNN", x, [K, U, b], [h0])[0]
    dh = np.random.default_rng(seed + 100).normal(size=(B, T, H))
    want = keras_rnn_gradients("SimpleRNN", x, [K, U, b], [h0], dh)
    got = as_tuple(call_student(rnn_backward, dh, x, h, h0, K, U), "rnn_backward", NAMES)
    check_sequence_gradients(got, want, names, f"rnn_backward with B={B}, T={T}, D={D}, H={H}",
                             sequence_hint)


def check_clip(clip_by_global_norm, shapes: list[tuple[int, ...]], scale: float, max_norm: float,
               seed: int) -> None:
    """Compare clip_by_global_norm with the rescaling by the global norm, on random arrays."""
    rng = np.random.default_rng(seed)
    grads = [scale * rng.normal(size=s) for s in shapes]
    norm = np.sqrt(sum(np.sum(g ** 2) for g in grads))
    want = [g * min(1.0, max_norm / norm) for g in grads]
    got = call_student(clip_by_global_norm, grads, max_norm)
    assert isinstance(got, (list, tuple)) and len(got) == len(grads), (
        f"clip_by_global_norm should return a list of {len(grads)} arrays, one per gradient")
    for i, (g, w) in enumerate(zip(got, want)):
        check_array(
            f"clip_by_global_norm(...)[{i}] (global norm {norm:.3g}, max_norm {max_norm})", g, w,
            **FLOAT64_TOL, suspects={
                "element-wise clipping (clip by value) where the global norm was asked for":
                    np.clip(grads[i], -max_norm, max_norm),
                "each array clipped by its own norm instead of the global norm of all arrays":
                    grads[i] * min(1.0, max_norm / np.sqrt(np.sum(grads[i] ** 2))),
            })


def check_clip_like_tensorflow(clip_by_global_norm) -> None:
    """Compare clip_by_global_norm with tf.clip_by_global_norm on arrays of constant values."""
    import tensorflow as tf

    grads = [np.full((2, 3), 2.0), np.full((4,), -3.0)]
    reference, _ = tf.clip_by_global_norm([tf.constant(g) for g in grads], 2.5)
    for i, (g, r) in enumerate(zip(call_student(clip_by_global_norm, grads, 2.5), reference)):
        check_array(f"clip_by_global_norm(...)[{i}] against tf.clip_by_global_norm", g, r.numpy(),
                    **FLOAT64_TOL)

"""Checks for the lstm_forward assignment: an LSTM's step, forward pass and parameter count
in NumPy, against a float64 ``keras.layers.LSTM`` with the same weights."""

from __future__ import annotations

import numpy as np

from rnncourse.checks.shared import as_tuple, lstm_mistakes, lstm_problem
from rnncourse.grading import FLOAT64_TOL, call_student, check_outputs, keras_rnn


def step_hint(wrong: set[str], first_bad_step) -> str:
    """Advice from which of h_t and c_t is wrong."""
    if wrong == {"h_t"}:
        return "c_t is right but h_t is wrong: the output is h_t = o * tanh(c_t)."
    return ("c_t is wrong: the new cell state is f ⊙ c_prev + i ⊙ g, the forget gate scales the old cell state; "
            "check which columns of K, U and b hold each gate (Keras: i, f, c, o).")


def sequence_hint(wrong: set[str], first_bad_step) -> str:
    """Advice when only the steps after the first go wrong."""
    if first_bad_step.get("h") == 1:
        return "the first step is right but the next are not: carry both h and c from step to step."
    return ""


def check_lstm_step(lstm_step, B: int, D: int, H: int, seed: int) -> None:
    """Compare lstm_step with a float64 keras.layers.LSTM on one random step."""
    p = lstm_problem(B, 1, D, H, seed)
    x, K, U, b, h0, c0 = p["x"], p["K"], p["U"], p["b"], p["h0"], p["c0"]
    _, keras_h, keras_c = keras_rnn("LSTM", x, [K, U, b], [h0, c0])
    got = as_tuple(call_student(lstm_step, x[:, 0], h0, c0, K, U, b), "lstm_step", ["h_t", "c_t"])
    check_outputs(
        got, {"h_t": keras_h, "c_t": keras_c},
        context=f"lstm_step with B={B}, D={D}, H={H}", hint=step_hint, **FLOAT64_TOL,
        suspects=lambda: {m: {"h_t": r[1], "c_t": r[2]} for m, r in lstm_mistakes(x, K, U, b, [h0, c0]).items()},
    )


def check_lstm_forward_shapes(lstm_forward, B: int, T: int, D: int, H: int, seed: int,
                              with_initial_state: bool = False) -> None:
    """lstm_forward returns (h, c_T) with shapes (B, T, H) and (B, H)."""
    p = lstm_problem(B, T, D, H, seed)
    states = (p["h0"], p["c0"]) if with_initial_state else ()
    h, c_T = as_tuple(call_student(lstm_forward, p["x"], p["K"], p["U"], p["b"], *states),
                      "lstm_forward", ["h", "c_T"]).values()
    sizes = f"for B={B}, T={T}, D={D}, H={H}" + (" with h0 and c0 given" if with_initial_state else "")
    assert np.shape(h) == (B, T, H), (
        f"{sizes}, h has shape {np.shape(h)}; expected (B, T, H) = {(B, T, H)}: one state per time step")
    assert np.shape(c_T) == (B, H), f"{sizes}, c_T has shape {np.shape(c_T)}; expected (B, H) = {(B, H)}"


def check_lstm_forward(lstm_forward, B: int, T: int, D: int, H: int, seed: int,
                       with_initial_state: bool = False) -> None:
    """Compare lstm_forward with a float64 keras.layers.LSTM on one random sequence."""
    p = lstm_problem(B, T, D, H, seed)
    x, K, U, b = p["x"], p["K"], p["U"], p["b"]
    zeros = np.zeros((B, H))
    h0, c0 = (p["h0"], p["c0"]) if with_initial_state else (zeros, zeros)
    keras_h, _, keras_c = keras_rnn("LSTM", x, [K, U, b], [h0, c0])

    def mistakes():  # only for a wrong answer: a Keras run per mistake
        found = {m: {"h": r[0], "c_T": r[2]} for m, r in lstm_mistakes(x, K, U, b, [h0, c0]).items()}
        if with_initial_state:
            for name, state in [("the initial states h0 and c0 were ignored (zeros used)", [zeros, zeros]),
                                ("the initial cell state c0 was ignored (zeros used)", [h0, zeros]),
                                ("the initial hidden state h0 was ignored (zeros used)", [zeros, c0])]:
                r = keras_rnn("LSTM", x, [K, U, b], state)
                found[name] = {"h": r[0], "c_T": r[2]}
        return found

    args = (x, K, U, b, h0, c0) if with_initial_state else (x, K, U, b)
    got = as_tuple(call_student(lstm_forward, *args), "lstm_forward", ["h", "c_T"])
    check_outputs(
        got, {"h": keras_h, "c_T": keras_c},
        context=f"lstm_forward({'x, K, U, b, h0, c0' if with_initial_state else 'x, K, U, b'}) "
                f"with B={B}, T={T}, D={D}, H={H}",
        hint=sequence_hint, suspects=mistakes, **FLOAT64_TOL,
    )


def keras_lstm_params(D: int, H: int) -> int:
    """count_params() of keras.layers.LSTM(H) built for D features."""
    import keras

    layer = keras.layers.LSTM(H)
    layer.build((None, None, D))
    return layer.count_params()


def check_lstm_param_count(lstm_param_count, D: int, H: int) -> None:
    """Compare lstm_param_count(D, H) with keras.layers.LSTM(H)'s count_params()."""
    got, want = lstm_param_count(D, H), keras_lstm_params(D, H)
    assert got == want, (
        f"lstm_param_count({D}, {H}) = {got}; keras.layers.LSTM({H}) on {D} features has "
        f"{want}: count K, U and b, for all four blocks")

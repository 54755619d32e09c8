"""Checks for the rnn_forward assignment: a simple RNN's step and forward pass in NumPy.

References come from a float64 ``keras.layers.SimpleRNN`` with the same weights; known
mistakes are computed so that a failing check can name the student's.
"""

from __future__ import annotations

import numpy as np

from rnncourse.grading import FLOAT64_TOL, call_student, check_array, keras_rnn, random_rnn_problem


def check_rnn_step(rnn_step, B: int, D: int, H: int, seed: int) -> None:
    """Compare rnn_step with a float64 keras.layers.SimpleRNN on one random step."""
    p = random_rnn_problem(B=B, T=1, D=D, H=H, seed=seed)
    x_t, h_prev, K, U, b = p["x"][:, 0], p["h0"], p["K"], p["U"], p["b"]
    keras_h = keras_rnn("SimpleRNN", p["x"], [K, U, b], [h_prev])[0][:, 0]
    z = x_t @ K + h_prev @ U + b
    check_array(
        f"rnn_step(...) with B={B}, D={D}, H={H}", call_student(rnn_step, x_t, h_prev, K, U, b),
        keras_h, shape_names="B, H", **FLOAT64_TOL,
        suspects={  # common mistakes, so that the message can name yours
            "the recurrent kernel used transposed (h_prev @ U.T instead of h_prev @ U)":
                np.tanh(x_t @ K + h_prev @ U.T + b),
            "the bias b was left out": np.tanh(z - b),
            "a sigmoid where the simple RNN uses tanh": 1 / (1 + np.exp(-z)),
            "the activation was left out (tanh is missing)": z,
            "the previous state h_prev was ignored": np.tanh(x_t @ K + b),
        },
    )


def check_rnn_forward_shape(rnn_forward, B: int, T: int, D: int, H: int, seed: int,
                            with_h0: bool = False) -> None:
    """rnn_forward returns one hidden state per time step: shape (B, T, H)."""
    p = random_rnn_problem(B=B, T=T, D=D, H=H, seed=seed)
    args = (p["x"], p["K"], p["U"], p["b"]) + ((p["h0"],) if with_h0 else ())
    h = call_student(rnn_forward, *args)
    assert h is not None, "rnn_forward returned None: did you forget `return`?"
    assert np.shape(h) == (B, T, H), (
        f"rnn_forward returned shape {np.shape(h)} for B={B}, T={T}, D={D}, H={H}"
        f"{' with h0 given' if with_h0 else ''}; expected (B, T, H) = {(B, T, H)}: "
        "one state per time step")


def check_rnn_forward(rnn_forward, B: int, T: int, D: int, H: int, seed: int,
                      with_h0: bool = False) -> None:
    """Compare rnn_forward with a float64 keras.layers.SimpleRNN on one random sequence."""
    p = random_rnn_problem(B=B, T=T, D=D, H=H, seed=seed)
    x, K, U, b = p["x"], p["K"], p["U"], p["b"]
    h0 = p["h0"] if with_h0 else None
    start = p["h0"] if with_h0 else np.zeros((B, H))
    keras_h = keras_rnn("SimpleRNN", x, [K, U, b], [start])[0]

    def suspects():  # common mistakes, so that the message can name yours (for a wrong answer)
        found = {
            "the state is not carried from one step to the next (every step starts again from h0)":
                np.stack([np.tanh(x[:, t] @ K + start @ U + b) for t in range(T)], axis=1),
            "an off-by-one in time: h[:, t] holds the state *before* reading x[:, t], not after":
                np.concatenate([start[:, None], keras_h[:, :-1]], axis=1),
        }
        if with_h0:
            found["the initial state h0 was ignored (the sequence starts from zeros)"] = keras_rnn(
                "SimpleRNN", x, [K, U, b])[0]
        return found

    args = (x, K, U, b, h0) if with_h0 else (x, K, U, b)
    check_array(
        f"rnn_forward({'x, K, U, b, h0' if with_h0 else 'x, K, U, b'}) with B={B}, T={T}, D={D}, H={H}",
        call_student(rnn_forward, *args), keras_h,
        shape_names="B, T, H", time_axis=1, suspects=suspects, **FLOAT64_TOL,
    )

"""What several assignments' checks share: the logistic function, the LSTM and GRU test
problems, the LSTM's known mistakes, a tuple unpacker and the backward-through-time check.

The assignments' setup cells import :func:`sigmoid` from here, so the students' code and
the checks use one definition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rnncourse.grading import FLOAT64_TOL, check_gradients, keras_rnn, matches, random_rnn_problem


def sigmoid(z):
    """The logistic function, Keras 3's default recurrent_activation."""
    return 1.0 / (1.0 + np.exp(-z))


def lstm_problem(B: int, T: int, D: int, H: int, seed: int) -> dict[str, np.ndarray]:
    """Random float64 inputs, Keras-layout LSTM weights and initial states (h0, c0)."""
    p = random_rnn_problem(B=B, T=T, D=D, H=H, gates=4, seed=seed)
    p["c0"] = np.random.default_rng(seed + 1).normal(size=(B, H))
    return p


def gru_problem(B: int, T: int, D: int, H: int, seed: int, reset_after: bool) -> dict[str, np.ndarray]:
    """Random float64 inputs and Keras-layout GRU weights for one variant."""
    return random_rnn_problem(B=B, T=T, D=D, H=H, gates=3, seed=seed,
                              bias_shape=(2, 3 * H) if reset_after else (3 * H,))


def block_columns(H: int, order: Sequence[int]) -> np.ndarray:
    """Column indices that put the weights' H-wide blocks in ``order``."""
    return np.concatenate([np.arange(k * H, (k + 1) * H) for k in order])


def lstm_mistakes(x, K, U, b, initial_state) -> dict[str, list[np.ndarray]]:
    """What keras.layers.LSTM computes for common mistakes, so that a message can name yours."""
    H = U.shape[0]

    def blocks(order):  # the weights with Keras's [i|f|c|o] column blocks reordered
        columns = block_columns(H, order)
        return [K[:, columns], U[:, columns], b[columns]]

    return {
        "the input and forget gates swapped (your forget gate uses the input gate's columns): "
        "Keras orders the blocks i, f, c, o": keras_rnn("LSTM", x, blocks([1, 0, 2, 3]), initial_state),
        "the blocks read in the order i, f, o, g (as in CS231n): Keras orders them i, f, c, o":
            keras_rnn("LSTM", x, blocks([0, 1, 3, 2]), initial_state),
        "tanh where the gates i, f, o need a sigmoid":
            keras_rnn("LSTM", x, [K, U, b], initial_state, recurrent_activation="tanh"),
    }


def as_tuple(result: Any, function: str, names: Sequence[str]) -> dict[str, Any]:
    """The tuple a student's function returned, by name; a clear message if it is not one."""
    count = {2: "two", 5: "five", 6: "six"}.get(len(names), str(len(names)))
    assert isinstance(result, tuple) and len(result) == len(names), (
        f"{function} should return a tuple of {count} arrays: ({', '.join(names)})"
        if len(names) > 2 else f"{function} should return a tuple ({', '.join(names)})")
    return dict(zip(names, result))


def check_sequence_gradients(
    got: dict[str, Any], want: dict[str, np.ndarray], names: Sequence[str], context: str,
    sequence_hint: Callable[[set[str], bool, int], str],
) -> None:
    """Check the ``names`` gradients of a backward pass through time against ``want``.

    The hint sees all gradients, not only those checked: ``sequence_hint(all_wrong,
    dx_last_step_right, T)`` (at the last step dx depends on nothing from the future).
    """
    T = want["dx"].shape[1]
    all_wrong = {n for n in want if not matches(got[n], want[n], **FLOAT64_TOL)}
    dx_last_step_right = np.shape(got["dx"]) == want["dx"].shape and matches(
        np.asarray(got["dx"])[:, -1], want["dx"][:, -1], **FLOAT64_TOL)
    check_gradients(
        {n: got[n] for n in names}, {n: want[n] for n in names}, context=context,
        hint=lambda wrong, first_bad_step: sequence_hint(all_wrong, dx_last_step_right, T),
        backward=True, **FLOAT64_TOL,
    )

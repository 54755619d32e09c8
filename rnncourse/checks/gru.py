"""Checks for the gru assignment: a GRU's step (both reset_after variants), forward pass,
parameter count and one step backwards, against a float64 ``keras.layers.GRU``."""

from __future__ import annotations

import numpy as np

from rnncourse.checks.shared import as_tuple, block_columns, gru_problem
from rnncourse.grading import (
    FLOAT64_TOL,
    call_student,
    check_array,
    check_gradients,
    keras_rnn,
    keras_rnn_gradients,
    matches,
)

STEP_NAMES = ["dx_t", "dh_prev", "dK", "dU", "db"]


def gru_mistakes(x, K, U, b, initial_state, reset_after: bool) -> dict[str, np.ndarray]:
    """What Keras computes for common mistakes (whole sequences), so a message can name yours."""
    H = U.shape[0]

    def blocks(weights, order):  # the weights with Keras's [z|r|h] column blocks reordered
        columns = block_columns(H, order)
        return [w[..., columns] for w in weights]

    z_negated = [w.copy() for w in (K, U, b)]
    for w in z_negated:
        w[..., :H] *= -1
    mistakes = {
        "the mirror-image z convention, h_t = (1 - z) * h_prev + z * h_hat (Chung et al., colah); "
        "Keras keeps the old state where z is close to 1: h_t = z * h_prev + (1 - z) * h_hat":
            keras_rnn("GRU", x, z_negated, initial_state, reset_after=reset_after)[0],
        "the update and reset gates swapped: Keras orders the blocks z, r, h":
            keras_rnn("GRU", x, blocks([K, U, b], [1, 0, 2]), initial_state, reset_after=reset_after)[0],
    }
    if reset_after:
        mistakes.update({
            "the reset gate applied before the matrix product, (r * h_prev) @ U_h: with "
            "reset_after=True it multiplies the product, r * (h_prev @ U_h + b[1])":
                keras_rnn("GRU", x, [K, U, b[0] + b[1]], initial_state, reset_after=False)[0],
            "the recurrent bias b[1] left out":
                keras_rnn("GRU", x, [K, U, np.stack([b[0], 0 * b[0]])], initial_state)[0],
            "one bias row, b[0], used for both products: b[1] belongs to h_prev @ U":
                keras_rnn("GRU", x, [K, U, np.stack([b[0], b[0]])], initial_state)[0],
        })
    else:
        mistakes["the reset gate applied after the matrix product, r * (h_prev @ U_h): with "
                 "reset_after=False it multiplies the state first, (r * h_prev) @ U_h"] = \
            keras_rnn("GRU", x, [K, U, np.stack([b, 0 * b])], initial_state, reset_after=True)[0]
    return mistakes


def check_gru_step(gru_step, B: int, D: int, H: int, seed: int, reset_after: bool) -> None:
    """Compare gru_step with a float64 keras.layers.GRU on one random step."""
    p = gru_problem(B, 1, D, H, seed, reset_after)
    x, K, U, b, h0 = p["x"], p["K"], p["U"], p["b"], p["h0"]
    want = keras_rnn("GRU", x, [K, U, b], [h0], reset_after=reset_after)[0][:, 0]
    hint = f"with reset_after={reset_after}, compare each line with the equations above."
    got = call_student(gru_step, x[:, 0], h0, K, U, b, reset_after=reset_after,
                       hint=hint + f" With reset_after={reset_after}, b has shape "
                       + ("(2, 3H)." if reset_after else "(3H,)."))
    def suspects():  # only for a wrong answer: a Keras run per mistake
        return {m: r[:, 0] for m, r in gru_mistakes(x, K, U, b, [h0], reset_after).items()}

    check_array("h_t", got, want, shape_names="B, H", suspects=suspects, **FLOAT64_TOL, hint=hint)


def check_gru_forward(gru_forward, B: int, T: int, D: int, H: int, seed: int, reset_after: bool,
                      with_initial_state: bool = False) -> None:
    """Compare gru_forward with a float64 keras.layers.GRU on one random sequence."""
    p = gru_problem(B, T, D, H, seed, reset_after)
    x, K, U, b = p["x"], p["K"], p["U"], p["b"]
    h0 = p["h0"] if with_initial_state else np.zeros((B, H))
    want = keras_rnn("GRU", x, [K, U, b], [h0], reset_after=reset_after)[0]

    def suspects():  # only for a wrong answer: a Keras run per mistake
        mistakes = gru_mistakes(x, K, U, b, [h0], reset_after)
        if with_initial_state:
            mistakes["the initial state h0 ignored (zeros used)"] = keras_rnn(
                "GRU", x, [K, U, b], [np.zeros((B, H))], reset_after=reset_after)[0]
        return mistakes

    kwargs = {"reset_after": reset_after} | ({"h0": h0} if with_initial_state else {})
    got = call_student(gru_forward, x, K, U, b, **kwargs, hint=(
        "with reset_after=False, b has shape (3H,): pass reset_after on to gru_step, whose "
        "default (True) expects b of shape (2, 3H)." if not reset_after else
        "with reset_after=True, b has shape (2, 3H): compare gru_step with the equations above."))
    hint = ("the first step is right but not the next: carry h from step to step, and pass "
            "reset_after on to gru_step.")
    check_array("h", got, want, shape_names="B, T, H", suspects=suspects, time_axis=1,
                hint=hint, **FLOAT64_TOL)


def keras_gru_params(D: int, H: int, reset_after: bool) -> int:
    """count_params() of keras.layers.GRU(H, reset_after=...) built for D features."""
    import keras

    layer = keras.layers.GRU(H, reset_after=reset_after)
    layer.build((None, None, D))
    return layer.count_params()


def check_gru_param_count(gru_param_count, D: int, H: int) -> None:
    """Compare gru_param_count(D, H, reset_after) with Keras's count, both variants."""
    for reset_after in (True, False):
        got, want = gru_param_count(D, H, reset_after=reset_after), keras_gru_params(D, H, reset_after)
        assert got == want, (
            f"gru_param_count({D}, {H}, reset_after={reset_after}) = {got}; Keras has {want}. "
            "Count K (D, 3H), U (H, 3H) and the bias, whose shape depends on reset_after: "
            "(2, 3H) with reset_after=True (one row for x_t @ K, one for h_prev @ U), "
            "(3H,) with reset_after=False")


def backward_hint(all_wrong: set[str]) -> str:
    """Advice from the pattern of right and wrong gradients (all five, not only those checked)."""
    if all_wrong == {"dh_prev"}:
        return ("only dh_prev is wrong: h_prev reaches h_t twice, directly (z * h_prev, "
                "gradient dh_t * z) and through h_prev @ U.")
    if {"dK", "dx_t"}.isdisjoint(all_wrong) and "dU" in all_wrong:
        return ("dK and dx_t are right but dU is not: the candidate's recurrent part is "
                "r * (h_prev @ U_h + b[1]), so its gradient is scaled by r.")
    return ("check dz = dh_t * (h_prev - h_hat) * z * (1 - z) (Keras's z convention) and each "
            "gate's derivative, block by block (z, r, h).")


def check_gru_step_backward(gru_step_backward, B: int, D: int, H: int, seed: int,
                            names: list[str]) -> None:
    """Compare the named gradients of gru_step_backward with tf.GradientTape's (float64)."""
    p = gru_problem(B, 1, D, H, seed, reset_after=True)
    x, K, U, b, h0 = p["x"], p["K"], p["U"], p["b"], p["h0"]
    dh_t = np.random.default_rng(seed + 100).normal(size=(B, H))
    want = keras_rnn_gradients("GRU", x, [K, U, b], [h0], dh_t[:, None])
    want = dict(zip(STEP_NAMES, [want["dx"][:, 0], want["dh0"], want["dK"], want["dU"], want["db"]]))
    got = as_tuple(call_student(gru_step_backward, dh_t, x[:, 0], h0, K, U, b),
                   "gru_step_backward", STEP_NAMES)
    all_wrong = {n for n in STEP_NAMES if not matches(got[n], want[n], **FLOAT64_TOL)}
    check_gradients({n: got[n] for n in names}, {n: want[n] for n in names},
                    context=f"gru_step_backward with B={B}, D={D}, H={H}",
                    hint=lambda wrong, first_bad_step: backward_hint(all_wrong), **FLOAT64_TOL)

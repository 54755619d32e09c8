"""Checks for the lstm_cell assignment: an LSTM cell from TensorFlow ops in keras.layers.RNN.

The student's class is passed in (``check_weights(LSTMCell, ...)``); references are a
float64 ``keras.layers.LSTM`` with the same weights and its ``tf.GradientTape`` gradients.
"""

from __future__ import annotations

import numpy as np

from rnncourse.checks.shared import lstm_mistakes, lstm_problem
from rnncourse.grading import (
    FLOAT64_TOL,
    call_student,
    check_gradients,
    check_outputs,
    keras_rnn,
    keras_rnn_gradients,
    matches,
)

#: Keras's own recurrent layers: a cell "from TensorFlow ops" may not run their code.
FROM_SCRATCH = ("keras.src.layers.rnn.lstm", "keras.src.layers.rnn.gru", "keras.src.layers.rnn.simple_rnn")
OUTPUTS = ["h", "h_T", "c_T"]
NAMES = ["dx", "dK", "dU", "db", "dh0", "dc0"]


def built_cell(LSTMCell, D: int, H: int, **kwargs):
    """Your cell inside keras.layers.RNN, built for inputs with D features."""
    import keras

    cell = LSTMCell(H, **kwargs)
    layer = keras.layers.RNN(cell, return_sequences=True, return_state=True, dtype=kwargs.get("dtype"))

    def build_your_LSTMCell():
        layer.build((None, None, D))

    call_student(build_your_LSTMCell, numpy_only=False, forbidden=FROM_SCRATCH)
    return cell, layer


def check_weights(LSTMCell, D: int, H: int) -> None:
    """build creates kernel (D, 4H), recurrent_kernel (H, 4H) and bias (4H,), in that order."""
    import keras

    cell, _ = built_cell(LSTMCell, D, H)
    reference = keras.layers.LSTM(H)
    reference.build((None, None, D))
    want = [tuple(w.shape) for w in reference.cell.trainable_weights]
    got = [tuple(w.shape) for w in cell.trainable_weights]
    assert len(got) == 3, (
        f"your cell has {len(got)} trainable weights; it should create three: kernel, "
        "recurrent_kernel and bias (self.add_weight)")
    assert got == want, (
        f"with D={D}, H={H} your weights have shapes {got}; keras.layers.LSTM's are {want} "
        "(kernel (D, 4H), recurrent_kernel (H, 4H), bias (4H,), created in that order)")
    for name in ("kernel", "recurrent_kernel", "bias"):
        assert hasattr(cell, name), f"keep each weight as an attribute: self.{name} = self.add_weight(...)"


def check_initial_bias(LSTMCell, D: int, H: int, unit_forget_bias: bool) -> None:
    """The initial bias equals keras.layers.LSTM(H, unit_forget_bias=...)'s."""
    import keras

    cell, _ = built_cell(LSTMCell, D, H, unit_forget_bias=unit_forget_bias)
    reference = keras.layers.LSTM(H, unit_forget_bias=unit_forget_bias)
    reference.build((None, None, D))
    want = keras.ops.convert_to_numpy(reference.cell.bias)
    got = keras.ops.convert_to_numpy(cell.bias)
    assert got.shape == want.shape, f"bias has shape {got.shape}; expected {want.shape}"
    if not np.array_equal(got, want):
        blocks = {name: got[k * H:(k + 1) * H].round(3).tolist()
                  for k, name in enumerate(["i", "f", "c", "o"])}
        raise AssertionError(
            f"with unit_forget_bias={unit_forget_bias} the initial bias should be "
            f"{'1 in the forget block (columns H:2H) and 0 elsewhere' if unit_forget_bias else 'all zeros'}; "
            f"yours, block by block: {blocks}")


def cell_with_weights(LSTMCell, weights, D: int, H: int):
    """Your cell in a float64 keras.layers.RNN holding the given [K, U, b]."""
    cell, layer = built_cell(LSTMCell, D, H, dtype="float64")
    try:
        layer.set_weights(weights)
    except ValueError as error:
        raise AssertionError(
            f"set_weights([K, U, b]) fails on your cell ({error}): create kernel (D, 4H), "
            "recurrent_kernel (H, 4H) and bias (4H,), in that order") from None
    return cell, layer


def run_cell(layer, x, state) -> dict[str, np.ndarray]:
    """Your cell over x from the given states: h, h_T, c_T as NumPy arrays."""
    import keras
    import tensorflow as tf

    def run_your_LSTMCell():
        return layer(tf.constant(x), initial_state=[tf.constant(s) for s in state])

    result = call_student(run_your_LSTMCell, numpy_only=False, forbidden=FROM_SCRATCH)
    return dict(zip(OUTPUTS, [keras.ops.convert_to_numpy(r) for r in result]))


def cell_hint(first_step_wrong: set[str]):
    """Advice from the pattern of wrong arrays, over the whole sequence and over one step."""

    def hint(wrong, first_bad_step):
        if first_bad_step.get("h") == 1:
            return "the first step is right but not the next: return the new states [h_t, c_t]."
        if first_step_wrong == {"h", "h_T"}:
            return "after one step c_t is right but h_t is not: the output is h_t = o * tanh(c_t)."
        return "compare call with the equations above, block by block (i, f, c, o)."

    return hint


def check_cell_forward(LSTMCell, B: int, T: int, D: int, H: int, seed: int,
                       with_initial_state: bool = False) -> None:
    """Compare your cell in keras.layers.RNN with a float64 keras.layers.LSTM."""
    p = lstm_problem(B, T, D, H, seed)
    x, K, U, b = p["x"], p["K"], p["U"], p["b"]
    zeros = np.zeros((B, H))
    state = [p["h0"], p["c0"]] if with_initial_state else [zeros, zeros]
    keras_h, keras_h_T, keras_c_T = keras_rnn("LSTM", x, [K, U, b], state)
    _, layer = cell_with_weights(LSTMCell, [K, U, b], D, H)
    got = run_cell(layer, x, state)
    want_1 = dict(zip(OUTPUTS, keras_rnn("LSTM", x[:, :1], [K, U, b], state)))
    got_1 = run_cell(layer, x[:, :1], state)
    first_step_wrong = {n for n in want_1 if not matches(got_1[n], want_1[n], **FLOAT64_TOL)}
    def mistakes():  # only for a wrong answer: a Keras run per mistake
        return {m: dict(zip(OUTPUTS, r)) for m, r in lstm_mistakes(x, K, U, b, state).items()}

    check_outputs(got, {"h": keras_h, "h_T": keras_h_T, "c_T": keras_c_T},
                  context=f"RNN(LSTMCell({H})) with B={B}, T={T}, D={D}"
                          + (", initial_state=[h0, c0]" if with_initial_state else ""),
                  hint=cell_hint(first_step_wrong), suspects=mistakes, **FLOAT64_TOL)


def your_cell_gradients(LSTMCell, x, weights, state, dh, dc_T) -> dict[str, np.ndarray]:
    """Gradients of sum(h * dh) + sum(c_T * dc_T) through your cell, by tf.GradientTape."""
    import keras
    import tensorflow as tf

    cell, layer = cell_with_weights(LSTMCell, weights, x.shape[-1], weights[1].shape[0])
    x_var = tf.constant(x)
    states = [tf.constant(s) for s in state]

    def differentiate_your_LSTMCell():
        with tf.GradientTape() as tape:
            tape.watch([x_var, *states])
            h, _, c_T = layer(x_var, initial_state=states)
            loss = tf.reduce_sum(h * dh) + tf.reduce_sum(c_T * dc_T)
        return tape.gradient(loss, [x_var, cell.kernel, cell.recurrent_kernel, cell.bias, *states])

    grads = call_student(differentiate_your_LSTMCell, numpy_only=False, forbidden=FROM_SCRATCH)
    lost = [name for name, g in zip(NAMES, grads) if g is None]
    assert not lost, (
        f"tf.GradientTape finds no path from the loss to {', '.join(lost)}: something in call "
        "leaves TensorFlow (a NumPy function, .numpy(), tf.stop_gradient), so the gradient is lost")
    return dict(zip(NAMES, [keras.ops.convert_to_numpy(g) for g in grads]))


def gradient_hint(outputs_right: bool):
    """Advice that depends on whether the cell's outputs are right."""
    def hint(wrong, first_bad_step):
        if outputs_right:
            return ("your outputs are right, so the gradients are lost on the way back: something "
                    "in call leaves TensorFlow's tape (a NumPy function such as np.tanh, .numpy(), "
                    "tf.stop_gradient). Use TensorFlow operations only.")
        return "your outputs are wrong too: make the outputs right first (the check above)."
    return hint


def check_cell_gradients(LSTMCell, B: int, T: int, D: int, H: int, seed: int) -> None:
    """Compare tf.GradientTape's gradients through your cell with those through keras.layers.LSTM."""
    p = lstm_problem(B, T, D, H, seed)
    x, K, U, b, h0, c0 = p["x"], p["K"], p["U"], p["b"], p["h0"], p["c0"]
    rng = np.random.default_rng(seed + 100)
    dh, dc_T = rng.normal(size=(B, T, H)), rng.normal(size=(B, H))
    want = keras_rnn_gradients("LSTM", x, [K, U, b], [h0, c0], dh, d_final_state=[None, dc_T])
    got = your_cell_gradients(LSTMCell, x, [K, U, b], [h0, c0], dh, dc_T)
    _, layer = cell_with_weights(LSTMCell, [K, U, b], D, H)
    outputs = run_cell(layer, x, [h0, c0])
    reference = keras_rnn("LSTM", x, [K, U, b], [h0, c0])
    outputs_right = all(matches(outputs[n], r, **FLOAT64_TOL) for n, r in zip(OUTPUTS, reference))
    check_gradients(got, {n: want[n] for n in NAMES},
                    context=f"gradients of RNN(LSTMCell({H})) with B={B}, T={T}, D={D}",
                    hint=gradient_hint(outputs_right), **FLOAT64_TOL)

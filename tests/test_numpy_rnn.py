"""The fast NumPy forward passes equal the Keras layers (float64, tight tolerance)."""

from __future__ import annotations

import numpy as np
import pytest

from rnncourse import numpy_rnn
from rnncourse.grading import FLOAT64_TOL, keras_rnn, random_rnn_problem

SHAPES = [(1, 1, 1, 1), (3, 7, 4, 5), (2, 30, 3, 2)]


@pytest.mark.parametrize("B, T, D, H", SHAPES)
def test_simple_rnn_forward_equals_keras(B, T, D, H):
    p = random_rnn_problem(B=B, T=T, D=D, H=H, seed=T)
    want = keras_rnn("SimpleRNN", p["x"], [p["K"], p["U"], p["b"]], [p["h0"]])[0]
    got = numpy_rnn.simple_rnn_forward(p["x"], p["K"], p["U"], p["b"], p["h0"])
    np.testing.assert_allclose(got, want, **FLOAT64_TOL)


@pytest.mark.parametrize("B, T, D, H", SHAPES)
def test_lstm_forward_equals_keras(B, T, D, H):
    p = random_rnn_problem(B=B, T=T, D=D, H=H, gates=4, seed=T)
    c0 = np.random.default_rng(1).normal(size=(B, H))
    want_h, _, want_c = keras_rnn("LSTM", p["x"], [p["K"], p["U"], p["b"]], [p["h0"], c0])
    got_h, got_c = numpy_rnn.lstm_forward(p["x"], p["K"], p["U"], p["b"], p["h0"], c0)
    np.testing.assert_allclose(got_h, want_h, **FLOAT64_TOL)
    np.testing.assert_allclose(got_c, want_c, **FLOAT64_TOL)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("B, T, D, H", SHAPES)
def test_gru_forward_equals_keras(B, T, D, H, reset_after):
    p = random_rnn_problem(B=B, T=T, D=D, H=H, gates=3, seed=T,
                           bias_shape=(2, 3 * H) if reset_after else (3 * H,))
    want = keras_rnn("GRU", p["x"], [p["K"], p["U"], p["b"]], [p["h0"]], reset_after=reset_after)[0]
    got = numpy_rnn.gru_forward(p["x"], p["K"], p["U"], p["b"], p["h0"], reset_after=reset_after)
    np.testing.assert_allclose(got, want, **FLOAT64_TOL)


def test_zero_initial_state_is_the_default():
    p = random_rnn_problem(B=2, T=4, D=3, H=3, gates=4, seed=5)
    zeros = np.zeros((2, 3))
    default, _ = numpy_rnn.lstm_forward(p["x"], p["K"], p["U"], p["b"])
    explicit, _ = numpy_rnn.lstm_forward(p["x"], p["K"], p["U"], p["b"], zeros, zeros)
    np.testing.assert_array_equal(default, explicit)


def test_float32_stays_float32():
    p = random_rnn_problem(B=2, T=4, D=3, H=3, seed=5, dtype=np.float32)
    assert numpy_rnn.simple_rnn_forward(p["x"], p["K"], p["U"], p["b"]).dtype == np.float32

"""Fast from-scratch NumPy forward passes for the three Keras recurrent layers.

The chapters write each cell step by step, for reading. These versions compute the same
thing (Keras 3 layouts: SimpleRNN; LSTM blocks [i|f|c|o]; GRU blocks [z|r|h], both
``reset_after`` variants) written for speed, for the benchmark and the comparison
chapter: batch-first, the input projection ``x @ K + b`` for all time steps in one matrix
product before the loop, one fused ``h @ U`` per step for all gates, and no Python work
per unit. ``tests/test_numpy_rnn.py`` checks each against the Keras layer.
"""

from __future__ import annotations

import numpy as np


def _sigmoid(a: np.ndarray) -> np.ndarray:
    # the logistic function without overflow warnings for large negative a
    return 0.5 * (np.tanh(0.5 * a) + 1.0)


def _input_projection(x: np.ndarray, K: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x @ K + b`` for every step at once: (B, T, D) -> (T, B, k·H), time-major for the loop."""
    B, T, D = x.shape
    projected = np.swapaxes(x, 0, 1).reshape(T * B, D) @ K
    projected += b
    return projected.reshape(T, B, K.shape[1])


def _initial(h0: np.ndarray | None, B: int, H: int, dtype) -> np.ndarray:
    return np.zeros((B, H), dtype=dtype) if h0 is None else np.asarray(h0, dtype=dtype)


def simple_rnn_forward(x, K, U, b, h0=None):
    """Every hidden state (B, T, H) of ``keras.layers.SimpleRNN`` with weights [K, U, b]."""
    B, T, _ = x.shape
    H = U.shape[0]
    xs = _input_projection(x, K, b)
    out = np.empty((T, B, H), dtype=xs.dtype)
    h = _initial(h0, B, H, xs.dtype)
    for t in range(T):
        h = np.tanh(xs[t] + h @ U)
        out[t] = h
    return np.swapaxes(out, 0, 1)


def lstm_forward(x, K, U, b, h0=None, c0=None):
    """Every hidden state (B, T, H) and the final cell state (B, H) of ``keras.layers.LSTM``."""
    B, T, _ = x.shape
    H = U.shape[0]
    # Reorder the blocks once, [i|f|c|o] -> [i|f|o|c], so the three sigmoid gates are one
    # contiguous slice at every step.
    order = np.r_[0:2 * H, 3 * H:4 * H, 2 * H:3 * H]
    xs = _input_projection(x, K[:, order], np.asarray(b)[order])
    U = np.ascontiguousarray(U[:, order])
    out = np.empty((T, B, H), dtype=xs.dtype)
    h = _initial(h0, B, H, xs.dtype)
    c = _initial(c0, B, H, xs.dtype)
    for t in range(T):
        z = xs[t] + h @ U
        ifo = _sigmoid(z[:, :3 * H])
        g = np.tanh(z[:, 3 * H:])
        c = ifo[:, H:2 * H] * c + ifo[:, :H] * g
        h = ifo[:, 2 * H:] * np.tanh(c)
        out[t] = h
    return np.swapaxes(out, 0, 1), c


def gru_forward(x, K, U, b, h0=None, reset_after=True):
    """Every hidden state (B, T, H) of ``keras.layers.GRU(reset_after=...)`` with [K, U, b]."""
    B, T, _ = x.shape
    H = U.shape[0]
    b = np.asarray(b)
    xs = _input_projection(x, K, b[0] if reset_after else b)
    out = np.empty((T, B, H), dtype=xs.dtype)
    h = _initial(h0, B, H, xs.dtype)
    U_zr, U_h = U[:, :2 * H], U[:, 2 * H:]
    for t in range(T):
        if reset_after:
            hz = h @ U + b[1]
            zr = _sigmoid(xs[t, :, :2 * H] + hz[:, :2 * H])
            h_hat = np.tanh(xs[t, :, 2 * H:] + zr[:, H:] * hz[:, 2 * H:])
        else:
            zr = _sigmoid(xs[t, :, :2 * H] + h @ U_zr)
            h_hat = np.tanh(xs[t, :, 2 * H:] + (zr[:, H:] * h) @ U_h)
        z = zr[:, :H]
        h = z * h + (1.0 - z) * h_hat
        out[t] = h
    return np.swapaxes(out, 0, 1)

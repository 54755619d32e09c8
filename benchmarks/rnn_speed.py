"""How fast are the from-scratch NumPy forward passes beside Keras? Prints numbers, asserts nothing.

    .venv/bin/python benchmarks/rnn_speed.py            # B=64, T=100, H=128 and a larger size
    .venv/bin/python benchmarks/rnn_speed.py --quick    # one small size, for a smoke run

For each cell type (SimpleRNN, LSTM, GRU with reset_after=True) and size it measures, on
float32 and in the same run:

* Keras forward: ``layer(x)`` inside a ``tf.function`` (compiled once, then timed);
* Keras forward + backward: loss, ``tf.GradientTape``, gradients for every weight and x;
* NumPy forward: :mod:`rnncourse.numpy_rnn` (input projection for all steps in one product,
  one fused ``h @ U`` per step);
* NumPy, unfused: the same cell with a separate product per gate and the input product
  inside the loop, the way the chapters write it for reading: the baseline the fused
  version is measured against;

and prints, for each, what the book's pages report: the CPU time of the process
(:data:`rnncourse.analysis.TIMING_CLOCK`), the smallest of several repeats
(:data:`rnncourse.analysis.TIMING_STATISTIC`), with the calls taking turns, and the ratios.
The aim:
the fused NumPy forward within 2x of Keras's forward on a CPU.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np

import rnncourse  # noqa: F401  (quiets TensorFlow before it loads)
from rnncourse import numpy_rnn
from rnncourse.analysis import TIMING_STATISTIC, time_calls


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def unfused(cell, x, K, U, b):
    """The readable version: one product per gate, the input product inside the loop."""
    B, T, _ = x.shape
    H = U.shape[0]
    h = np.zeros((B, H), x.dtype)
    c = np.zeros((B, H), x.dtype)
    blocks = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}[cell]
    Ks = [K[:, k * H:(k + 1) * H] for k in range(blocks)]
    Us = [U[:, k * H:(k + 1) * H] for k in range(blocks)]
    bs = [b[..., k * H:(k + 1) * H] for k in range(blocks)]
    out = []
    for t in range(T):
        x_t = x[:, t]
        if cell == "SimpleRNN":
            h = np.tanh(x_t @ Ks[0] + h @ Us[0] + bs[0])
        elif cell == "LSTM":
            i = sigmoid(x_t @ Ks[0] + h @ Us[0] + bs[0])
            f = sigmoid(x_t @ Ks[1] + h @ Us[1] + bs[1])
            g = np.tanh(x_t @ Ks[2] + h @ Us[2] + bs[2])
            o = sigmoid(x_t @ Ks[3] + h @ Us[3] + bs[3])
            c = f * c + i * g
            h = o * np.tanh(c)
        else:
            z = sigmoid(x_t @ Ks[0] + bs[0][0] + h @ Us[0] + bs[0][1])
            r = sigmoid(x_t @ Ks[1] + bs[1][0] + h @ Us[1] + bs[1][1])
            h_hat = np.tanh(x_t @ Ks[2] + bs[2][0] + r * (h @ Us[2] + bs[2][1]))
            h = z * h + (1 - z) * h_hat
        out.append(h)
    return np.stack(out, axis=1)


def fused(cell, x, K, U, b):
    if cell == "SimpleRNN":
        return numpy_rnn.simple_rnn_forward(x, K, U, b)
    if cell == "LSTM":
        return numpy_rnn.lstm_forward(x, K, U, b)[0]
    return numpy_rnn.gru_forward(x, K, U, b)


def measure(cell, B, T, D, H, repeats):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    layer = getattr(keras.layers, cell)(H, return_sequences=True)
    layer.build((None, T, D))
    K, U, b = [np.asarray(w) for w in layer.get_weights()]
    b = (b + 0.1 * np.random.default_rng(0).normal(size=b.shape)).astype(np.float32)
    layer.set_weights([K, U, b])
    x_np = np.random.default_rng(1).normal(size=(B, T, D)).astype(np.float32)
    x = tf.constant(x_np)

    forward = tf.function(lambda x: layer(x))

    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(layer(x)))
        return tape.gradient(loss, [x, *layer.trainable_weights])

    mine = fused(cell, x_np, K, U, b)
    np.testing.assert_allclose(mine, forward(x).numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(unfused(cell, x_np, K, U, b), mine, rtol=1e-4, atol=1e-4)
    calls = {
        "keras_forward": lambda: forward(x).numpy(),
        "keras_forward_backward": lambda: [g.numpy() for g in forward_backward(x)],
        "numpy_fused": lambda: fused(cell, x_np, K, U, b),
        "numpy_unfused": lambda: unfused(cell, x_np, K, U, b),
    }
    return time_calls(calls, repeats, warmup=1)[0]   # warm-up: tf.function tracing, caches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one small size, few repeats")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sizes = [(16, 20, 8, 32)] if args.quick else [(64, 100, 32, 128), (128, 200, 64, 256)]
    repeats = 2 if args.quick else args.repeats
    print(f"{'cell':>9} {'B':>4} {'T':>4} {'D':>3} {'H':>4} | {'Keras fwd':>10} {'Keras f+b':>10} "
          f"{'NumPy':>10} {'unfused':>10} | {'NumPy/Keras fwd':>15} {'unfused/NumPy':>13}")
    for B, T, D, H in sizes:
        for cell in ("SimpleRNN", "LSTM", "GRU"):
            r = measure(cell, B, T, D, H, repeats)
            print(f"{cell:>9} {B:4d} {T:4d} {D:3d} {H:4d} | "
                  f"{r['keras_forward'] * 1e3:8.1f}ms {r['keras_forward_backward'] * 1e3:8.1f}ms "
                  f"{r['numpy_fused'] * 1e3:8.1f}ms {r['numpy_unfused'] * 1e3:8.1f}ms | "
                  f"{r['numpy_fused'] / r['keras_forward']:15.2f} "
                  f"{r['numpy_unfused'] / r['numpy_fused']:13.2f}")
    print(f"({TIMING_STATISTIC} CPU time of {repeats} calls each, taking turns, float32, after one "
          "warm-up call; times per batch)")


if __name__ == "__main__":
    main()

"""The course's running example: two seeded synthetic long-range tasks.

Both are generated in code (no download), batch-first like Keras: ``x`` has shape
(B, T, D).

* The **adding problem**, in the simplified form of Le, Jaitly and Hinton (2015) that
  later work uses: each step carries a random number in [0, 1) and a marker bit;
  exactly two steps are marked, one in each half of the sequence; the target is the
  sum of the two marked numbers. Predicting the mean (1.0) gives a mean squared error
  of 1/6, the baseline a model must beat. (Hochreiter & Schmidhuber's original
  experiment 4 draws the values from [-1, 1] and asks for 0.5 + (X1 + X2) / 4.)
* **Remember the first symbol**: every step is a one-hot symbol drawn at random;
  the label is the symbol at step 0, seen ``lag`` steps before the end. Chance
  accuracy is ``1 / n_symbols``.
"""

from __future__ import annotations

import numpy as np

#: MSE of always predicting 1.0 on the adding problem: Var(U1 + U2) = 2/12.
ADDING_BASELINE_MSE = 1.0 / 6.0


def adding_problem(n: int, T: int, seed: int = 0, dtype=np.float32):
    """Return ``x`` of shape (n, T, 2) and ``y`` of shape (n, 1).

    ``x[..., 0]`` holds the numbers, ``x[..., 1]`` the two markers (one in
    ``[0, T//2)``, one in ``[T//2, T)``); ``y`` is the sum of the marked numbers.
    """
    if T < 2:
        raise ValueError(f"the adding problem needs T >= 2 steps, got T={T}")
    if n < 1:
        raise ValueError(f"need at least one sequence, got n={n}")
    rng = np.random.default_rng(seed)
    values = rng.random((n, T))
    first = rng.integers(0, T // 2, size=n)
    second = rng.integers(T // 2, T, size=n)
    markers = np.zeros((n, T))
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1).astype(dtype)
    y = (values[rows, first] + values[rows, second])[:, None].astype(dtype)
    return x, y


def first_symbol(n: int, lag: int, n_symbols: int = 4, seed: int = 0, dtype=np.float32):
    """Return one-hot ``x`` of shape (n, lag + 1, n_symbols) and integer labels ``y`` (n,).

    The label is the symbol at step 0; ``lag`` further random symbols follow it, so
    the model must carry one symbol across ``lag`` steps of distraction.
    """
    if lag < 0:
        raise ValueError(f"lag must be >= 0, got {lag}")
    if n_symbols < 2:
        raise ValueError(f"need at least 2 symbols, got {n_symbols}")
    rng = np.random.default_rng(seed)
    symbols = rng.integers(0, n_symbols, size=(n, lag + 1))
    x = np.eye(n_symbols, dtype=dtype)[symbols]
    return x, symbols[:, 0].astype(np.int64)

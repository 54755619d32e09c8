"""Small, seeded training runs that several chapters share (the running example).

``lag_sweep`` trains a one-layer recurrent classifier on *remember the first symbol*
for every (cell type, lag, seed) and reports held-out accuracy. The simple-RNN
chapters, the LSTM and GRU chapters and the comparison chapter all call it, so
their numbers are comparable: same data, same budget, same seeds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from rnncourse.data import first_symbol
from rnncourse.seeding import seed_everything

CELLS = ("SimpleRNN", "LSTM", "GRU")


@dataclass(frozen=True)
class Run:
    cell: str
    lag: int
    seed: int
    units: int
    params: int
    accuracy: float      # held-out accuracy after training
    chance: float        # 1 / n_symbols
    seconds: float
    val_accuracy_per_epoch: tuple[float, ...]

    def as_dict(self) -> dict:
        return asdict(self)


def first_symbol_model(cell: str, lag: int, units: int = 16, n_symbols: int = 4, **layer_kwargs):
    """``Input (lag+1, n_symbols)`` → ``keras.layers.<cell>(units)`` → softmax over symbols."""
    import keras

    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
    inputs = keras.Input(shape=(lag + 1, n_symbols))
    state = getattr(keras.layers, cell)(units, **layer_kwargs)(inputs)
    outputs = keras.layers.Dense(n_symbols, activation="softmax")(state)
    return keras.Model(inputs, outputs)


def train_first_symbol(
    cell: str, lag: int, *, seed: int = 0, units: int = 16, n_symbols: int = 4,
    n_train: int = 2000, n_val: int = 500, epochs: int = 15, batch_size: int = 64,
    learning_rate: float = 1e-2, **layer_kwargs,
) -> Run:
    """Train one model on *remember the first symbol* at ``lag``; return its held-out accuracy."""
    import keras

    seed_everything(seed)
    x, y = first_symbol(n_train, lag, n_symbols, seed=seed)
    x_val, y_val = first_symbol(n_val, lag, n_symbols, seed=10_000 + seed)
    model = first_symbol_model(cell, lag, units, n_symbols, **layer_kwargs)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, global_clipnorm=1.0),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(x, y, validation_data=(x_val, y_val), epochs=epochs,
                        batch_size=batch_size, verbose=0)
    seconds = time.perf_counter() - start
    accuracy = float(history.history["val_accuracy"][-1])
    return Run(cell, lag, seed, units, model.count_params(), accuracy, 1.0 / n_symbols, seconds,
               tuple(float(a) for a in history.history["val_accuracy"]))


def lag_sweep(cells=CELLS, lags=(5, 10, 20, 40), seeds=(0, 1), **kwargs) -> list[Run]:
    """``train_first_symbol`` for every cell type, lag and seed (same data and budget for all)."""
    return [train_first_symbol(cell, lag, seed=seed, **kwargs)
            for cell in cells for lag in lags for seed in seeds]


def summarise(runs: list[Run]) -> dict[tuple[str, int], tuple[float, float]]:
    """Mean and standard deviation of the accuracy per (cell, lag), over seeds."""
    groups: dict[tuple[str, int], list[float]] = {}
    for run in runs:
        groups.setdefault((run.cell, run.lag), []).append(run.accuracy)
    return {key: (float(np.mean(v)), float(np.std(v))) for key, v in groups.items()}

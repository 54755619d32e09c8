"""Small, seeded training runs that several chapters share (the running example).

``lag_sweep`` trains a one-layer recurrent classifier on a remember-a-symbol task for
every (cell type, lag, seed) and reports held-out accuracy. The simple-RNN chapters,
the LSTM and GRU chapters and the comparison chapter all call it with its defaults,
so their numbers are comparable: same data, same budget (:data:`BUDGET`), same seeds.

Two tasks, both with chance accuracy ``1 / n_symbols``:

* ``"marked_symbol"`` (the default): every step carries a random one-hot symbol and
  one step, somewhere in the first half of the sequence, is marked by an extra input
  channel; the label is the marked symbol. The model has to decide *when* to store
  (at the marker) and then ignore between ``lag // 2`` and ``lag`` distracting steps,
  like the first marker of the adding problem (Hochreiter & Schmidhuber 1997).
* ``"first_symbol"``: :func:`rnncourse.data.first_symbol`, the symbol at step 0,
  exactly ``lag`` steps before the end. Easier to describe, but the first step is
  special for free (the state starts at zero), and with Keras's orthogonal recurrent
  initialisation a simple RNN often solves it at lags where it fails the marked task.

Measured with the defaults on a 2-core CPU (pages quote their own runs): on the marked
task a SimpleRNN solves lags 10 and 20, is seed-dependent at lag 30 and stays at chance
at lag 50 (seeds 0-3); an LSTM reaches accuracy 1.0 at lag 50 (seeds 0-3) and a GRU in
2 of 4 seeds; at lag 100 all three stay at chance (seed 0) within this budget.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import numpy as np

from rnncourse import runcache
from rnncourse.data import first_symbol
from rnncourse.seeding import seed_everything

CELLS = ("SimpleRNN", "LSTM", "GRU")
TASKS = ("marked_symbol", "first_symbol")

#: The shared training budget: every chapter's lag sweep uses these values unless it
#: says otherwise. Chosen so that, at lag 50, the SimpleRNN stays at chance while the
#: LSTM and GRU learn the task (a few seconds to ~15 s per run on one CPU core).
BUDGET = {"units": 32, "n_train": 4096, "n_val": 512, "epochs": 20, "batch_size": 128,
          "learning_rate": 5e-3, "global_clipnorm": 1.0}


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
    task: str = "marked_symbol"

    def as_dict(self) -> dict:
        return asdict(self)


def marked_symbol(n: int, lag: int, n_symbols: int = 4, seed: int = 0, dtype=np.float32):
    """Return ``x`` of shape (n, lag + 1, n_symbols + 1) and integer labels ``y`` (n,).

    Channels ``0 .. n_symbols - 1`` hold a random one-hot symbol at every step; the
    last channel is 1 at exactly one step, drawn uniformly from the first half of the
    sequence (``[0, max(1, (lag + 1) // 2))``). The label is the symbol at that marked
    step, which lies between about ``lag / 2`` and ``lag`` steps before the end.
    """
    if lag < 0:
        raise ValueError(f"lag must be >= 0, got {lag}")
    if n_symbols < 2:
        raise ValueError(f"need at least 2 symbols, got {n_symbols}")
    if n < 1:
        raise ValueError(f"need at least one sequence, got n={n}")
    rng = np.random.default_rng(seed)
    T = lag + 1
    symbols = rng.integers(0, n_symbols, size=(n, T))
    position = rng.integers(0, max(1, T // 2), size=n)
    x = np.zeros((n, T, n_symbols + 1), dtype=dtype)
    x[..., :n_symbols] = np.eye(n_symbols, dtype=dtype)[symbols]
    rows = np.arange(n)
    x[rows, position, n_symbols] = 1.0
    return x, symbols[rows, position].astype(np.int64)


def make_task(task: str, n: int, lag: int, n_symbols: int = 4, seed: int = 0):
    """``(x, y)`` for ``task`` (one of :data:`TASKS`)."""
    if task == "marked_symbol":
        return marked_symbol(n, lag, n_symbols, seed=seed)
    if task == "first_symbol":
        return first_symbol(n, lag, n_symbols, seed=seed)
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def n_features(task: str, n_symbols: int) -> int:
    """Input features D of ``task``: the one-hot symbols, plus the marker channel."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return n_symbols + (task == "marked_symbol")


def first_symbol_model(cell: str, lag: int, units: int = BUDGET["units"], n_symbols: int = 4,
                       *, task: str = "marked_symbol", **layer_kwargs):
    """``Input (lag+1, D)`` → ``keras.layers.<cell>(units)`` → softmax over the symbols.

    ``D`` is ``n_features(task, n_symbols)``.
    """
    import keras

    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
    inputs = keras.Input(shape=(lag + 1, n_features(task, n_symbols)))
    state = getattr(keras.layers, cell)(units, **layer_kwargs)(inputs)
    outputs = keras.layers.Dense(n_symbols, activation="softmax")(state)
    return keras.Model(inputs, outputs)


def compile_for_runs(model, learning_rate: float, global_clipnorm: float | None) -> None:
    """Compile ``model`` as every run of this module trains: Adam with ``global_clipnorm``,
    cross-entropy on the symbol's index, accuracy."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate, global_clipnorm=global_clipnorm),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])


#: Compiled models that later runs in this process reuse (see :func:`ready_model`): for each
#: key, the model and its optimizer's state before its first step.
_COMPILED: dict[str, tuple] = {}


def ready_model(cell: str, lag: int, units: int, n_symbols: int, *, task: str,
                learning_rate: float, global_clipnorm: float | None, layer_kwargs: dict):
    """A model compiled by :func:`compile_for_runs`, ready for ``fit``: the initial weights a
    new model gets at this point of the random streams, and a new optimizer's state.

    Keras traces a model's training and evaluation steps on its first ``fit``, about 1 s of a
    run's 10 on a CPU core. When an earlier run in this process compiled a model with the
    same graph (the same arguments), that model is returned instead, with the new model's
    weights and its optimizer reset, so its traced steps are reused. A new model is still
    built, so the random streams advance exactly as without the reuse, and training gives
    the same numbers to the last bit (``tests/test_experiments.py``). Arguments that cannot
    be keyed (a plain function as ``activation``) get a new model every time.
    """
    model = first_symbol_model(cell, lag, units, n_symbols, task=task, **layer_kwargs)
    try:
        key = json.dumps(runcache._canonical(
            {"cell": cell, "lag": lag, "units": units, "n_symbols": n_symbols, "task": task,
             "learning_rate": learning_rate, "global_clipnorm": global_clipnorm,
             "layer_kwargs": layer_kwargs}), sort_keys=True)
    except TypeError:
        key = None
    if key in _COMPILED:
        kept, optimizer_state = _COMPILED[key]
        kept.set_weights(model.get_weights())
        for variable, value in zip(kept.optimizer.variables, optimizer_state):
            variable.assign(value)
        return kept
    compile_for_runs(model, learning_rate, global_clipnorm)
    if key is not None:
        model.optimizer.build(model.trainable_variables)
        _COMPILED[key] = (model, [variable.numpy() for variable in model.optimizer.variables])
    return model


def train_first_symbol(
    cell: str, lag: int, *, seed: int = 0, task: str = "marked_symbol",
    units: int = BUDGET["units"], n_symbols: int = 4, n_train: int = BUDGET["n_train"],
    n_val: int = BUDGET["n_val"], epochs: int = BUDGET["epochs"],
    batch_size: int = BUDGET["batch_size"], learning_rate: float = BUDGET["learning_rate"],
    global_clipnorm: float | None = BUDGET["global_clipnorm"], return_model: bool = False,
    **layer_kwargs,
):
    """Train one model on ``task`` at ``lag``; return its :class:`Run` (held-out accuracy).

    Adam with ``global_clipnorm``; training and validation data come from different
    seeds (``seed`` and ``10_000 + seed``). ``layer_kwargs`` go to the recurrent layer.
    With ``return_model`` the result is ``(run, trained_keras_model)``.

    When the run cache is on (:mod:`rnncourse.runcache`, as in the book build), an
    identical earlier run is loaded instead of trained again: its :class:`Run` (including
    the seconds it took) and its trained weights.
    """
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
    arguments = {"cell": cell, "lag": lag, "seed": seed, "task": task, "units": units,
                 "n_symbols": n_symbols, "n_train": n_train, "n_val": n_val, "epochs": epochs,
                 "batch_size": batch_size, "learning_rate": learning_rate,
                 "global_clipnorm": global_clipnorm, "layer_kwargs": layer_kwargs}
    run, weights = runcache.cached("train_first_symbol", arguments,
                                   lambda: _train(**arguments))
    model = None
    if return_model:  # the same uncompiled model whether the run was trained or loaded
        model = first_symbol_model(cell, lag, units, n_symbols, task=task, **layer_kwargs)
        model.set_weights(weights)
    # Leave the random generators in a state that depends on the arguments only, so that
    # what a page draws next is the same whether this run was trained or loaded.
    seed_everything(seed)
    return (run, model) if return_model else run


def _train(*, cell, lag, seed, task, units, n_symbols, n_train, n_val, epochs, batch_size,
           learning_rate, global_clipnorm, layer_kwargs):
    """Train as :func:`train_first_symbol` says; return the ``Run`` and the trained weights."""
    seed_everything(seed)
    x, y = make_task(task, n_train, lag, n_symbols, seed=seed)
    x_val, y_val = make_task(task, n_val, lag, n_symbols, seed=10_000 + seed)
    model = ready_model(cell, lag, units, n_symbols, task=task, learning_rate=learning_rate,
                        global_clipnorm=global_clipnorm, layer_kwargs=layer_kwargs)
    start = time.perf_counter()
    history = model.fit(x, y, validation_data=(x_val, y_val), epochs=epochs,
                        batch_size=batch_size, verbose=0)
    seconds = time.perf_counter() - start
    accuracy = float(history.history["val_accuracy"][-1])
    run = Run(cell, lag, seed, units, model.count_params(), accuracy, 1.0 / n_symbols, seconds,
              tuple(float(a) for a in history.history["val_accuracy"]), task)
    return run, model.get_weights()


def lag_sweep(cells=CELLS, lags=(10, 20, 30, 50), seeds=(0, 1), *,
              keep_models: dict | None = None, **kwargs) -> list[Run]:
    """``train_first_symbol`` for every cell type, lag and seed (same data and budget for all).

    Pass a dict as ``keep_models`` to look inside the trained models afterwards: it
    receives ``keep_models[(cell, lag, seed)] = model`` for every run.
    """
    runs = []
    for cell in cells:
        for lag in lags:
            for seed in seeds:
                run, model = train_first_symbol(cell, lag, seed=seed, return_model=True, **kwargs)
                if keep_models is not None:
                    keep_models[(cell, lag, seed)] = model
                runs.append(run)
    return runs


def summarise(runs: list[Run]) -> dict[tuple[str, int], tuple[float, float]]:
    """Mean and standard deviation of the accuracy per (cell, lag), over seeds."""
    groups: dict[tuple[str, int], list[float]] = {}
    for run in runs:
        groups.setdefault((run.cell, run.lag), []).append(run.accuracy)
    return {key: (float(np.mean(v)), float(np.std(v))) for key, v in groups.items()}

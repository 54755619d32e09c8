"""Analysis helpers that several pages share: Jacobian products, learning curves, timing,
and the gradient study behind "why gates help".

Teaching code (a cell's step Jacobian, its forward pass) stays in the page that teaches it;
what lives here is what two pages, or a page and a benchmark, would otherwise each write.

* :func:`products_to_last`, :func:`log_norms`, :func:`per_step_factor`: the size of a
  product of step Jacobians ``d state_T / d state_t`` against the distance ``T - t``.
* :func:`plot_learning_curves`: held-out accuracy per epoch of several runs, one axis.
* :func:`time_calls`: time zero-argument calls that take turns, with one statistic
  (:data:`TIMING_STATISTIC`) for the pages and the benchmark alike.
* :func:`gradient_study`: train one model exactly like
  :func:`rnncourse.experiments.train_first_symbol` and record, at initialisation and after
  every epoch, how large the gradient of the loss is with respect to the input at the
  marked step and at the other steps. Everything that determines the result is an
  argument, and the run cache (:mod:`rnncourse.runcache`) serves an identical earlier study.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from rnncourse import runcache
from rnncourse.experiments import (
    BUDGET,
    CELLS,
    Run,
    compile_for_runs,
    first_symbol_model,
    make_task,
    ready_model,
)
from rnncourse.seeding import seed_everything

#: How pages and ``benchmarks/rnn_speed.py`` summarise repeated timings of one call. The
#: machine the book is built on is shared; interference only ever adds time, so the
#: smallest of several calls is the steadier estimate of the cost itself.
TIMING_STATISTIC = "min"
#: The clock they read: the CPU time of this process (all its threads), which counts what a
#: call cost and not the time other programs held the cores while it waited: on a busy
#: machine wall-clock minima can come out several times too large and in the wrong order.
TIMING_CLOCK = time.process_time


# --------------------------------------------------------------------------- Jacobians
def products_to_last(J):
    """``P[:, k] = J[:, T-1] @ J[:, T-2] @ ... @ J[:, T-k]``, with ``P[:, 0] = I``.

    ``J`` has shape (B, T, S, S): the step Jacobians ``d state_s / d state_{s-1}`` for every
    sample and step (rows are outputs). ``P[:, k]`` is then ``d state_{T-1} / d
    state_{T-1-k}``, the product that carries a loss at the last step back ``k`` steps.
    """
    J = np.asarray(J)
    if J.ndim != 4 or J.shape[-1] != J.shape[-2]:
        raise ValueError(f"J must have shape (B, T, S, S), got {J.shape}")
    B, T, S, _ = J.shape
    P = np.empty((B, T, S, S), dtype=np.result_type(J, np.float64))
    P[:, 0] = np.eye(S)
    for k in range(1, T):
        P[:, k] = P[:, k - 1] @ J[:, T - k]
    return P


def log_norms(P):
    """Mean over the batch of ``log ||P[:, k]||_2`` for every distance ``k`` (a geometric
    mean of spectral norms); ``P`` has shape (B, T, S, S)."""
    return np.log(np.linalg.norm(np.asarray(P), ord=2, axis=(-2, -1))).mean(axis=0)


def per_step_factor(log_norm):
    """``exp(slope)`` of a least-squares line through ``log_norm`` against the distance
    0, 1, 2, ...: the factor by which the size changes per step, on average."""
    log_norm = np.asarray(log_norm, dtype=float)
    if log_norm.ndim != 1 or len(log_norm) < 2:
        raise ValueError("need a 1-d sequence of at least two log-norms")
    return float(np.exp(np.polyfit(np.arange(len(log_norm)), log_norm, 1)[0]))


# --------------------------------------------------------------------------- plots
def plot_learning_curves(ax, curves, *, chance=None, colors=None, styles=None, labels=None,
                         ylabel="held-out accuracy", legend=True, **legend_kwargs):
    """Draw one line per run of per-epoch values on ``ax`` and return ``ax``.

    ``curves`` is either a list of :class:`rnncourse.experiments.Run` (their
    ``val_accuracy_per_epoch``) or a dict ``{label: sequence of per-epoch values}``.
    ``colors``, ``styles`` and ``labels`` are functions of the run (or of the dict's key)
    returning a colour, a line style and a legend label (``None``: not in the legend).
    Epochs are counted from 1; a dotted line marks ``chance`` if given.
    """
    if isinstance(curves, dict):
        items = list(curves.items())
    else:
        items = [(run, run.val_accuracy_per_epoch) for run in curves]
    for n, (key, values) in enumerate(items):
        values = np.asarray(values, dtype=float)
        if labels is not None:
            label = labels(key)
        else:
            label = key if isinstance(key, str) else f"{key.cell}, seed {key.seed}"
        ax.plot(np.arange(1, len(values) + 1), values,
                color=colors(key) if colors else f"C{n}",
                ls=styles(key) if styles else "-", label=label)
    if chance is not None:
        ax.axhline(chance, color="k", ls=":", lw=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(**{"fontsize": 8, **legend_kwargs})
    return ax



def plot_gradient_study(axes, studies, *, chance=None):
    """The two panels of a :func:`gradient_study` figure: on ``axes[0]`` each seed's held-out
    accuracy per epoch, on ``axes[1]`` (log scale) each seed's ratio of the gradient on the
    marked input to the gradient on the other inputs, before training (epoch 0) and after
    every epoch, with a dotted line at 1 (above it the marked input stands out)."""
    plot_learning_curves(axes[0], [st.run for st in studies], chance=chance,
                         labels=lambda r: f"seed {r.seed}", fontsize=6)
    axes[0].set_ylim(0, 1.05)
    for n, st in enumerate(studies):
        r = st.ratio()
        axes[1].plot(np.arange(len(r)), r, color=f"C{n}")
    axes[1].axhline(1.0, color="k", ls=":", lw=1)
    axes[1].set_yscale("log")
    axes[1].set_xlabel("epoch (0: before training)")
    axes[1].set_ylabel("marked / other inputs")
    axes[1].grid(alpha=0.3)
    return axes

# --------------------------------------------------------------------------- timing
def time_calls(calls, repeats, *, warmup=1, statistic=TIMING_STATISTIC, clock=TIMING_CLOCK):
    """Time every zero-argument call in ``calls`` (a dict) ``repeats`` times, in turns.

    Each call runs ``warmup`` times first (compilation, caches). The calls then take turns,
    one call of each per round, so that a busy moment of the machine falls on all of them
    alike. Returns ``(summary, samples)``: ``summary[name]`` is the ``statistic``
    (``"min"`` or ``"median"``) of ``samples[name]``, the list of seconds.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    reducers = {"min": min, "median": lambda v: float(np.median(v))}
    if statistic not in reducers:
        raise ValueError(f"statistic must be one of {sorted(reducers)}, got {statistic!r}")
    for call in calls.values():
        for _ in range(warmup):
            call()
    samples = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            tic = clock()
            call()
            samples[name].append(clock() - tic)
    return {name: reducers[statistic](v) for name, v in samples.items()}, samples


# --------------------------------------------------------------------------- gradient study
@dataclass(frozen=True)
class GradientStudy:
    """One training run with the size of the input gradient recorded along the way.

    ``marked[e]`` is the mean over the probe sequences of ``||dL/dx_m||``, the gradient of
    the loss with respect to the input at the marked step ``m``, measured at initialisation
    (``e = 0``) and after every epoch ``e``. ``distractor[e]`` is the same for the unmarked
    steps of the first half of the sequence (where markers can be: the same distances).
    ``by_distance[e, d]`` is the mean of ``||dL/dx_t||`` over the probe sequences at distance
    ``d = T - 1 - t`` from the last step.
    """

    run: Run
    marked: tuple[float, ...]
    distractor: tuple[float, ...]
    by_distance: tuple[tuple[float, ...], ...]

    def ratio(self):
        """``marked / distractor`` per probe (initialisation, then every epoch)."""
        return np.asarray(self.marked) / np.asarray(self.distractor)


def input_gradients(model, x, y, *, gradient=None):
    """``||dL_n/dx_{n,t}||`` for every sequence ``n`` and step ``t``, shape (n, T), where
    ``L_n`` is the cross-entropy of sequence ``n`` (not averaged over the batch).

    ``gradient`` is ``input_gradient_function(model)`` when the caller probes the same model
    many times (compiled once); without it the gradient is computed eagerly."""
    import tensorflow as tf

    x, y = tf.constant(x), tf.constant(y)
    g = _input_gradient(model, x, y) if gradient is None else gradient(x, y)
    return np.linalg.norm(np.asarray(g), axis=-1)


def _input_gradient(model, x, y):
    """``dL/dx`` with ``L`` the summed cross-entropy of ``model(x)`` against labels ``y``."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(x)
        p = model(x, training=False)
        loss = tf.reduce_sum(tf.keras.losses.sparse_categorical_crossentropy(y, p))
    return tape.gradient(loss, x)


def input_gradient_function(model):
    """``dL/dx`` of :func:`input_gradients` as one compiled ``tf.function`` of ``(x, y)``:
    the model's weights are variables, so it stays right while the model trains."""
    import tensorflow as tf

    return tf.function(lambda x, y: _input_gradient(model, x, y), reduce_retracing=True)


def _probe(model, x, y, marker, gradient=None):
    g = input_gradients(model, x, y, gradient=gradient)                # (n, T)
    n, T = g.shape
    rows = np.arange(n)
    first_half = np.arange(T)[None, :] < max(1, T // 2)
    others = first_half & (np.arange(T)[None, :] != marker[:, None])
    return float(g[rows, marker].mean()), float(g[others].mean()), g[:, ::-1].mean(axis=0)


def gradient_study(cell: str, lag: int, *, seed: int = 0, units: int = BUDGET["units"],
                   n_symbols: int = 4, n_train: int = BUDGET["n_train"],
                   n_val: int = BUDGET["n_val"], epochs: int = BUDGET["epochs"],
                   batch_size: int = BUDGET["batch_size"],
                   learning_rate: float = BUDGET["learning_rate"],
                   global_clipnorm: float | None = BUDGET["global_clipnorm"],
                   n_probe: int = 256, keep_models: dict | None = None,
                   **layer_kwargs) -> GradientStudy:
    """Train like ``train_first_symbol(cell, lag, seed=seed, task="marked_symbol", ...)``
    and record the input gradient on ``n_probe`` held-out sequences before training and
    after every epoch (see :class:`GradientStudy`). The probes only read the model, so the
    run's accuracies are those ``train_first_symbol`` reports for the same arguments.
    Pass a dict as ``keep_models`` to receive ``keep_models[(cell, lag, seed)] = model``
    (compiled, with the trained weights).

    All that determines the result is in ``arguments`` below: when the run cache is on
    (:mod:`rnncourse.runcache`, as in the book build), an identical earlier study is loaded
    (the study, including the seconds its training took, and the trained weights) instead of
    trained again, so pages that show the same study share one run.
    """
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
    arguments = {"cell": cell, "lag": lag, "seed": seed, "units": units, "n_symbols": n_symbols,
                 "n_train": n_train, "n_val": n_val, "epochs": epochs, "batch_size": batch_size,
                 "learning_rate": learning_rate, "global_clipnorm": global_clipnorm,
                 "n_probe": n_probe, "layer_kwargs": layer_kwargs}
    study, weights = runcache.cached("gradient_study", arguments, lambda: _study(**arguments))
    if keep_models is not None:
        keep_models[(cell, lag, seed)] = _compiled_model(cell, lag, units, n_symbols,
                                                         learning_rate, global_clipnorm,
                                                         layer_kwargs, weights)
    seed_everything(seed)           # the generators' state depends on the arguments only
    return study


def _compiled_model(cell, lag, units, n_symbols, learning_rate, global_clipnorm, layer_kwargs,
                    weights=None):
    model = first_symbol_model(cell, lag, units, n_symbols, task="marked_symbol", **layer_kwargs)
    compile_for_runs(model, learning_rate, global_clipnorm)
    if weights is not None:
        model.set_weights(weights)
    return model


def _study(*, cell, lag, seed, units, n_symbols, n_train, n_val, epochs, batch_size,
           learning_rate, global_clipnorm, n_probe, layer_kwargs):
    """Train and probe as :func:`gradient_study` says; return the study and the weights."""
    import keras

    seed_everything(seed)
    task = "marked_symbol"
    x, y = make_task(task, n_train, lag, n_symbols, seed=seed)
    x_val, y_val = make_task(task, n_val, lag, n_symbols, seed=10_000 + seed)
    x_probe, y_probe = x_val[:n_probe], y_val[:n_probe]
    marker = x_probe[:, :, -1].argmax(axis=1)
    model = ready_model(cell, lag, units, n_symbols, task=task, learning_rate=learning_rate,
                        global_clipnorm=global_clipnorm, layer_kwargs=layer_kwargs)
    # compiled once per model, and it reads the live weights: a model that ready_model hands
    # out again keeps its function
    gradient = getattr(model, "_rnncourse_input_gradient", None)
    if gradient is None:
        gradient = model._rnncourse_input_gradient = input_gradient_function(model)
    probes = [_probe(model, x_probe, y_probe, marker, gradient)]

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            probes.append(_probe(model, x_probe, y_probe, marker, gradient))

    start = time.perf_counter()
    history = model.fit(x, y, validation_data=(x_val, y_val), epochs=epochs,
                        batch_size=batch_size, verbose=0, callbacks=[Probe()])
    seconds = time.perf_counter() - start
    accuracies = tuple(float(a) for a in history.history["val_accuracy"])
    run = Run(cell, lag, seed, units, model.count_params(), accuracies[-1], 1.0 / n_symbols,
              seconds, accuracies, task)
    study = GradientStudy(run, tuple(p[0] for p in probes), tuple(p[1] for p in probes),
                          tuple(tuple(float(v) for v in p[2]) for p in probes))
    return study, model.get_weights()


def initial_probe(cell: str, lag: int, *, seed: int = 0, units: int = BUDGET["units"],
                  n_symbols: int = 4, n_val: int = BUDGET["n_val"], n_probe: int = 256,
                  **layer_kwargs):
    """The probe of :func:`gradient_study` at initialisation only, without training (the
    same seed, so the same initial weights and probe sequences): ``(marked, distractor,
    by_distance)``. Cheap: one forward and backward pass."""
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
    seed_everything(seed)
    x_val, y_val = make_task("marked_symbol", n_val, lag, n_symbols, seed=10_000 + seed)
    x_probe, y_probe = x_val[:n_probe], y_val[:n_probe]
    model = first_symbol_model(cell, lag, units, n_symbols, task="marked_symbol", **layer_kwargs)
    return _probe(model, x_probe, y_probe, x_probe[:, :, -1].argmax(axis=1))


def geometric_interval(values):
    """:func:`interval` on a log scale: the geometric mean and its 95 % interval."""
    return tuple(float(np.exp(v)) for v in interval(np.log(values)))


#: Two-sided 95 % quantiles of Student's t distribution, t_{0.975}(df), df = 1 .. 10
#: (standard table values); beyond 10 degrees of freedom the normal 1.96 is used.
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def interval(values):
    """Mean and 95 % confidence interval (Student t) of the mean of ``values``:
    ``(mean, low, high)``. With one value the interval is that value."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    n = len(values)
    if n < 2:
        return mean, mean, mean
    t = T_975[n - 2] if n - 1 <= len(T_975) else 1.96
    half = t * float(values.std(ddof=1)) / np.sqrt(n)
    return mean, mean - half, mean + half

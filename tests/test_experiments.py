"""Fast unit tests of rnncourse.experiments (the shared lag-sweep runs)."""

from __future__ import annotations

import numpy as np
import pytest

import rnncourse  # first: quiets TensorFlow before anything imports it
from rnncourse.experiments import (
    BUDGET,
    CELLS,
    TASKS,
    Run,
    first_symbol_model,
    lag_sweep,
    make_task,
    marked_symbol,
    n_features,
    summarise,
    train_first_symbol,
)


# --- the marked-symbol task -----------------------------------------------------------------
@pytest.mark.parametrize("lag", [0, 1, 2, 7, 50])
def test_marked_symbol_marks_one_step_in_the_first_half_and_labels_it(lag):
    x, y = marked_symbol(400, lag, n_symbols=5, seed=3)
    T = lag + 1
    assert x.shape == (400, T, 6) and y.shape == (400,) and x.dtype == np.float32
    np.testing.assert_array_equal(x[..., :5].sum(axis=-1), 1.0)       # one symbol per step
    markers = x[..., 5]
    np.testing.assert_array_equal(markers.sum(axis=1), 1.0)           # exactly one marker
    position = markers.argmax(axis=1)
    assert position.max() < max(1, T // 2)                             # in the first half
    np.testing.assert_array_equal(x[np.arange(400), position, :5].argmax(axis=-1), y)


def test_marked_symbol_is_seeded_and_uses_every_symbol_and_position():
    a, ya = marked_symbol(300, 20, seed=1)
    b, yb = marked_symbol(300, 20, seed=1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a, marked_symbol(300, 20, seed=2)[0])
    assert set(np.unique(ya)) == {0, 1, 2, 3}
    assert set(np.unique(a[..., 4].argmax(axis=1))) == set(range(10))


@pytest.mark.parametrize("call", [lambda: marked_symbol(3, -1), lambda: marked_symbol(3, 2, 1),
                                  lambda: marked_symbol(0, 2), lambda: make_task("copy", 3, 2),
                                  lambda: n_features("copy", 4)])
def test_bad_task_arguments_raise_value_error(call):
    with pytest.raises(ValueError, match="must|need"):
        call()


def test_make_task_dispatches_and_n_features_matches():
    for task in TASKS:
        x, y = make_task(task, 10, 6, n_symbols=3, seed=0)
        assert x.shape == (10, 7, n_features(task, 3)) and y.shape == (10,)
    assert n_features("first_symbol", 4) == 4 and n_features("marked_symbol", 4) == 5


# --- models ---------------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("cell", CELLS)
def test_model_shapes_and_parameter_counts_follow_the_formulas(cell, task):
    H, n_symbols, lag = 7, 4, 5
    D = n_features(task, n_symbols)
    model = first_symbol_model(cell, lag, units=H, n_symbols=n_symbols, task=task)
    assert model.input_shape == (None, lag + 1, D)
    assert model.output_shape == (None, n_symbols)
    recurrent = {"SimpleRNN": H * (D + H + 1), "LSTM": 4 * H * (D + H + 1),
                 "GRU": 3 * H * (D + H + 2)}[cell]          # GRU: reset_after=True, 2 biases
    assert model.layers[1].count_params() == recurrent
    assert model.count_params() == recurrent + H * n_symbols + n_symbols


def test_bad_cell_name_raises_value_error():
    with pytest.raises(ValueError, match="cell must be one of"):
        first_symbol_model("Transformer", 3)
    with pytest.raises(ValueError, match="cell must be one of"):
        train_first_symbol("RNN", 3)


# --- summarise ------------------------------------------------------------------------------
def _run(cell, lag, seed, accuracy):
    return Run(cell, lag, seed, 4, 10, accuracy, 0.25, 0.0, (accuracy,))


def test_summarise_gives_mean_and_population_std_per_cell_and_lag():
    runs = [_run("SimpleRNN", 10, 0, 1.0), _run("SimpleRNN", 10, 1, 0.5),
            _run("SimpleRNN", 50, 0, 0.25), _run("LSTM", 10, 0, 0.75),
            _run("LSTM", 10, 1, 0.75), _run("LSTM", 10, 2, 1.0)]
    summary = summarise(runs)
    assert set(summary) == {("SimpleRNN", 10), ("SimpleRNN", 50), ("LSTM", 10)}
    assert summary[("SimpleRNN", 10)] == pytest.approx((0.75, 0.25))
    assert summary[("SimpleRNN", 50)] == pytest.approx((0.25, 0.0))
    assert summary[("LSTM", 10)] == pytest.approx((np.mean([0.75, 0.75, 1.0]),
                                                   np.std([0.75, 0.75, 1.0])))
    assert summarise([]) == {}


def test_run_as_dict_and_default_task():
    run = _run("GRU", 3, 1, 0.5)
    assert run.task == "marked_symbol"
    assert run.as_dict()["accuracy"] == 0.5 and run.as_dict()["cell"] == "GRU"


# --- training (tiny) ------------------------------------------------------------------------
def test_budget_is_what_train_first_symbol_uses_by_default():
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(train_first_symbol).parameters.items()}
    for key, value in BUDGET.items():
        assert defaults[key] == value, key


@pytest.mark.parametrize("task", TASKS)
def test_a_tiny_run_returns_a_run_with_an_accuracy(task):
    run = train_first_symbol("SimpleRNN", 2, seed=0, task=task, units=4, n_train=64, n_val=32,
                             epochs=2, batch_size=32)
    assert isinstance(run, Run)
    assert (run.cell, run.lag, run.seed, run.units, run.task) == ("SimpleRNN", 2, 0, 4, task)
    assert 0.0 <= run.accuracy <= 1.0 and run.chance == 0.25
    assert len(run.val_accuracy_per_epoch) == 2 and run.accuracy == run.val_accuracy_per_epoch[-1]
    assert run.params == 4 * (n_features(task, 4) + 4 + 1) + 4 * 4 + 4
    assert run.seconds > 0


def test_tiny_runs_are_repeatable_and_the_sweep_covers_every_combination():
    kwargs = {"units": 3, "n_train": 32, "n_val": 16, "epochs": 1, "batch_size": 16}
    runs = lag_sweep(cells=("SimpleRNN",), lags=(1, 2), seeds=(0, 1), **kwargs)
    assert [(r.cell, r.lag, r.seed) for r in runs] == [
        ("SimpleRNN", 1, 0), ("SimpleRNN", 1, 1), ("SimpleRNN", 2, 0), ("SimpleRNN", 2, 1)]
    again = train_first_symbol("SimpleRNN", 2, seed=1, **kwargs)
    assert again.val_accuracy_per_epoch == runs[3].val_accuracy_per_epoch


def test_the_sweep_can_keep_its_trained_models():
    kwargs = {"units": 3, "n_train": 32, "n_val": 16, "epochs": 1, "batch_size": 16}
    kept = {}
    runs = lag_sweep(cells=("GRU",), lags=(2,), seeds=(0, 1), keep_models=kept, **kwargs)
    assert sorted(kept) == [("GRU", 2, 0), ("GRU", 2, 1)]
    x, y = make_task("marked_symbol", 16, 2, seed=10_000 + 1)
    accuracy = float(np.mean(kept[("GRU", 2, 1)].predict(x, verbose=0).argmax(axis=-1) == y))
    assert accuracy == pytest.approx(runs[1].accuracy)


# --- compiled models reused across runs -----------------------------------------------------
def _runs_and_weights(reuse: bool, monkeypatch):
    """A mixed sequence of small runs and studies, as a page makes them: GRU, LSTM, GRU again
    (its compiled model reused when ``reuse``), an LSTM with other layer arguments (another
    model), and the gradient study of the first GRU's architecture."""
    from rnncourse import analysis, experiments, runcache

    monkeypatch.delenv(runcache.ENV, raising=False)               # every run here is trained
    experiments._COMPILED.clear()
    small = {"units": 6, "n_train": 300, "n_val": 100, "epochs": 3}
    results = []
    for cell, seed, kwargs in [("GRU", 0, {}), ("LSTM", 0, {}), ("GRU", 1, {}),
                               ("LSTM", 1, {"unit_forget_bias": False}), ("GRU", 2, {})]:
        if not reuse:
            experiments._COMPILED.clear()
        run, model = train_first_symbol(cell, 9, seed=seed, return_model=True, **small, **kwargs)
        results.append((run.val_accuracy_per_epoch, model.get_weights()))
    if not reuse:
        experiments._COMPILED.clear()
    study = analysis.gradient_study("GRU", 9, seed=3, n_probe=32, **small)
    results.append(((study.run.val_accuracy_per_epoch, study.marked, study.distractor), []))
    return results, len(experiments._COMPILED)


def test_reused_compiled_models_train_to_the_same_numbers_to_the_last_bit(monkeypatch):
    fresh, _ = _runs_and_weights(False, monkeypatch)
    reused, n_models = _runs_and_weights(True, monkeypatch)
    assert n_models == 3             # GRU, LSTM, LSTM without the forget bias: 6 runs, 3 models
    for (fresh_numbers, fresh_weights), (reused_numbers, reused_weights) in zip(fresh, reused):
        assert reused_numbers == fresh_numbers
        assert len(reused_weights) == len(fresh_weights)
        for a, b in zip(reused_weights, fresh_weights):
            np.testing.assert_array_equal(a, b)
    assert len({numbers for numbers, _ in fresh[:3]}) == 3       # the runs differ from each other


def test_a_reused_model_starts_from_this_run_s_weights_and_a_new_optimizer():
    from rnncourse import experiments

    experiments._COMPILED.clear()
    arguments = {"task": "marked_symbol", "learning_rate": 0.01, "global_clipnorm": 1.0,
                 "layer_kwargs": {}}
    rnncourse.seed_everything(0)
    first = experiments.ready_model("GRU", 5, 4, 3, **arguments)
    first.fit(*make_task("marked_symbol", 64, 5, 3, seed=0), epochs=1, verbose=0)
    assert int(first.optimizer.iterations.numpy()) > 0
    rnncourse.seed_everything(1)
    expected = first_symbol_model("GRU", 5, 4, 3).get_weights()
    rnncourse.seed_everything(1)
    again = experiments.ready_model("GRU", 5, 4, 3, **arguments)
    assert again is first                                            # the traced model, reused
    for a, b in zip(again.get_weights(), expected):
        np.testing.assert_array_equal(a, b)
    assert int(again.optimizer.iterations.numpy()) == 0
    slots = [v for v in again.optimizer.variables if v.path.endswith(("momentum", "velocity"))]
    assert len(slots) == 2 * len(again.trainable_variables)
    assert not any(np.any(v.numpy()) for v in slots)
    other = experiments.ready_model("GRU", 5, 4, 3, **{**arguments, "learning_rate": 0.02})
    assert other is not first                                        # another optimizer: its own
    unkeyed = experiments.ready_model("GRU", 5, 4, 3, **{**arguments,
                                                         "layer_kwargs": {"activation": np.tanh}})
    assert experiments.ready_model("GRU", 5, 4, 3, **{
        **arguments, "layer_kwargs": {"activation": np.tanh}}) is not unkeyed

"""Fast tests of rnncourse.analysis (no training except one tiny run)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from rnncourse import analysis
from rnncourse.experiments import Run


def test_products_to_last_multiplies_the_last_steps_first():
    rng = np.random.default_rng(0)
    J = rng.normal(size=(2, 4, 3, 3))
    P = analysis.products_to_last(J)
    np.testing.assert_array_equal(P[:, 0], np.broadcast_to(np.eye(3), (2, 3, 3)))
    np.testing.assert_allclose(P[:, 1], J[:, 3])
    np.testing.assert_allclose(P[:, 3], J[:, 3] @ J[:, 2] @ J[:, 1])
    with pytest.raises(ValueError):
        analysis.products_to_last(np.zeros((2, 4, 3, 2)))


def test_per_step_factor_of_a_geometric_sequence():
    # a scaled identity multiplied k times has spectral norm 0.8**k
    J = np.broadcast_to(0.8 * np.eye(2), (3, 6, 2, 2))
    log_norm = analysis.log_norms(analysis.products_to_last(J))
    np.testing.assert_allclose(log_norm, np.arange(6) * np.log(0.8), atol=1e-12)
    assert analysis.per_step_factor(log_norm) == pytest.approx(0.8, rel=1e-12)
    assert analysis.per_step_factor(np.log([1.0, 2.0, 4.0])) == pytest.approx(2.0)


def test_time_calls_takes_turns_and_summarises():
    ticks = iter(range(100))
    order = []
    calls = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    summary, samples = analysis.time_calls(calls, repeats=3, warmup=1,
                                           clock=lambda: next(ticks))
    assert order == ["a", "b"] + ["a", "b"] * 3          # warm-up, then turns
    assert samples == {"a": [1, 1, 1], "b": [1, 1, 1]}
    assert summary == {"a": 1, "b": 1}
    fake = iter([0, 5, 5, 6, 6, 9])                       # durations 5, 1, 3
    summary, _ = analysis.time_calls({"a": lambda: None}, 3, warmup=0, statistic="median",
                                     clock=lambda: next(fake))
    assert summary == {"a": 3}
    with pytest.raises(ValueError):
        analysis.time_calls(calls, 1, statistic="mean")


def test_interval_is_the_t_interval():
    mean, low, high = analysis.interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean == 3.0
    # sd = sqrt(2.5), t(0.975, 4) = 2.776
    assert high - mean == pytest.approx(2.776 * np.sqrt(2.5) / np.sqrt(5), rel=1e-6)
    assert mean - low == pytest.approx(high - mean)
    assert analysis.interval([7.0]) == (7.0, 7.0, 7.0)


def test_plot_learning_curves_draws_one_line_per_run():
    runs = [Run("LSTM", 50, s, 32, 100, 0.5, 0.25, 1.0, (0.25, 0.5, 0.9)) for s in (0, 1)]
    _, ax = plt.subplots()
    analysis.plot_learning_curves(ax, runs, chance=0.25)
    lines = ax.get_lines()
    assert len(lines) == 3                                # two runs and the chance line
    np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["LSTM, seed 0", "LSTM, seed 1"]
    _, ax2 = plt.subplots()
    analysis.plot_learning_curves(ax2, {"a": [0.1, 0.2]}, legend=False)
    assert len(ax2.get_lines()) == 1 and ax2.get_legend() is None
    plt.close("all")


def test_gradient_study_probes_before_and_after_every_epoch():
    kept = {}
    study = analysis.gradient_study("SimpleRNN", 6, seed=0, units=4, n_train=64, n_val=32,
                                    epochs=2, batch_size=32, n_probe=16, keep_models=kept)
    assert len(study.marked) == len(study.distractor) == 3          # init + 2 epochs
    assert len(study.by_distance) == 3 and len(study.by_distance[0]) == 7
    assert study.run.cell == "SimpleRNN" and len(study.run.val_accuracy_per_epoch) == 2
    assert all(v > 0 for v in study.marked)
    assert ("SimpleRNN", 6, 0) in kept
    # the probe equals a direct computation on the kept (trained) model
    from rnncourse.experiments import marked_symbol
    x, y = marked_symbol(32, 6, seed=10_000)
    g = analysis.input_gradients(kept[("SimpleRNN", 6, 0)], x[:16], y[:16])
    marker = x[:16, :, -1].argmax(axis=1)
    assert study.marked[-1] == pytest.approx(g[np.arange(16), marker].mean(), rel=1e-5)


def test_initial_probe_is_the_studys_first_probe():
    study = analysis.gradient_study("GRU", 5, seed=3, units=3, n_train=32, n_val=16,
                                    epochs=1, batch_size=16, n_probe=8)
    marked, distractor, by_distance = analysis.initial_probe("GRU", 5, seed=3, units=3,
                                                             n_val=16, n_probe=8)
    assert marked == pytest.approx(study.marked[0], rel=1e-6)
    assert distractor == pytest.approx(study.distractor[0], rel=1e-6)
    np.testing.assert_allclose(by_distance, study.by_distance[0], rtol=1e-6)
    mean, low, high = analysis.geometric_interval([1.0, 100.0])
    assert mean == pytest.approx(10.0) and low < mean < high


def test_plot_gradient_study_draws_accuracy_and_the_ratio_per_seed():
    runs = [Run("GRU", 50, s, 32, 100, 0.5, 0.25, 1.0, (0.25, 0.9)) for s in (0, 1)]
    studies = [analysis.GradientStudy(run, (1.0, 2.0, 8.0), (1.0, 1.0, 2.0), ((0.0,),) * 3)
               for run in runs]
    _, axes = plt.subplots(1, 2)
    analysis.plot_gradient_study(axes, studies, chance=0.25)
    assert len(axes[0].get_lines()) == 3                  # two seeds and chance
    ratio_lines = axes[1].get_lines()
    assert len(ratio_lines) == 3                          # two seeds and the line at 1
    np.testing.assert_allclose(ratio_lines[0].get_ydata(), [1.0, 2.0, 4.0])
    np.testing.assert_array_equal(ratio_lines[0].get_xdata(), [0, 1, 2])
    assert axes[1].get_yscale() == "log"
    plt.close("all")


def test_gradient_study_trains_exactly_like_train_first_symbol():
    """The probes only read the model: same arguments, same trained weights (so a page may
    show a study's run beside train_first_symbol's runs)."""
    from rnncourse.experiments import train_first_symbol

    kwargs = {"units": 3, "n_train": 64, "n_val": 32, "epochs": 2, "batch_size": 32}
    kept = {}
    study = analysis.gradient_study("LSTM", 5, seed=1, n_probe=8, keep_models=kept, **kwargs)
    run, model = train_first_symbol("LSTM", 5, seed=1, return_model=True, **kwargs)
    assert study.run.val_accuracy_per_epoch == run.val_accuracy_per_epoch
    for ours, theirs in zip(kept[("LSTM", 5, 1)].get_weights(), model.get_weights()):
        np.testing.assert_array_equal(ours, theirs)


def test_input_gradients_compiled_equals_eager():
    from rnncourse.experiments import first_symbol_model, marked_symbol

    model = first_symbol_model("GRU", 6, units=3)
    x, y = marked_symbol(8, 6, seed=2)
    eager = analysis.input_gradients(model, x, y)
    compiled = analysis.input_gradients(model, x, y,
                                        gradient=analysis.input_gradient_function(model))
    assert eager.shape == (8, 7) and eager.min() > 0
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-9)


def test_gradient_study_is_served_from_the_run_cache(tmp_path, monkeypatch):
    from rnncourse import runcache

    monkeypatch.setenv(runcache.ENV, str(tmp_path))
    kwargs = {"units": 3, "n_train": 32, "n_val": 16, "epochs": 1, "batch_size": 16,
              "n_probe": 8}
    first = analysis.gradient_study("SimpleRNN", 5, seed=0, **kwargs)
    assert len(list(tmp_path.glob("gradient_study-*.pkl"))) == 1
    kept = {}
    again = analysis.gradient_study("SimpleRNN", 5, seed=0, keep_models=kept, **kwargs)
    assert again == first                                  # loaded, the seconds included
    assert len(list(tmp_path.glob("gradient_study-*.pkl"))) == 1
    assert ("SimpleRNN", 5, 0) in kept                     # the stored weights, compiled
    other = analysis.gradient_study("SimpleRNN", 5, seed=0, **{**kwargs, "n_probe": 4})
    assert len(list(tmp_path.glob("gradient_study-*.pkl"))) == 2 and other != first

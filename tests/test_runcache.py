"""The run cache: off by default, one computation per key, keys that tell runs apart, and a
loaded run equal to the one a page would have trained itself."""

import json
import os
import subprocess
import sys
import textwrap
from multiprocessing import get_context

import keras
import pytest

from rnncourse import runcache


def counting(calls, value):
    def compute():
        calls.append(1)
        return value
    return compute


def test_off_unless_the_environment_names_a_folder(monkeypatch):
    monkeypatch.delenv(runcache.ENV, raising=False)
    calls = []
    for _ in range(2):
        assert runcache.cached("demo", {"a": 1}, counting(calls, 5)) == 5
    assert len(calls) == 2


def test_second_identical_call_loads(monkeypatch, tmp_path):
    monkeypatch.setenv(runcache.ENV, str(tmp_path))
    calls = []
    assert runcache.cached("demo", {"a": 1, "b": (2, 3)}, counting(calls, [1.5])) == [1.5]
    assert runcache.cached("demo", {"b": (2, 3), "a": 1}, counting(calls, "other")) == [1.5]
    assert len(calls) == 1


@pytest.mark.parametrize("other", [
    {"a": 2, "b": (2, 3)},                       # another value
    {"a": 1, "b": (2, 3), "c": None},            # one more argument
    {"a": 1.0000001, "b": (2, 3)},               # a float that differs in the 7th digit
])
def test_different_arguments_are_different_runs(monkeypatch, tmp_path, other):
    monkeypatch.setenv(runcache.ENV, str(tmp_path))
    calls = []
    runcache.cached("demo", {"a": 1, "b": (2, 3)}, counting(calls, 1))
    assert runcache.cached("demo", other, counting(calls, 2)) == 2
    assert len(calls) == 2


def test_keras_objects_are_keyed_by_their_configuration(monkeypatch, tmp_path):
    monkeypatch.setenv(runcache.ENV, str(tmp_path))
    calls = []
    zeros = {"bias_initializer": keras.initializers.Zeros()}
    ones = {"bias_initializer": keras.initializers.Constant(1.0)}
    runcache.cached("demo", zeros, counting(calls, "zeros"))
    assert runcache.cached("demo", {"bias_initializer": keras.initializers.Zeros()},
                           counting(calls, "again")) == "zeros"
    assert runcache.cached("demo", ones, counting(calls, "ones")) == "ones"
    assert len(calls) == 2


def test_arguments_it_cannot_key_are_never_cached(monkeypatch, tmp_path):
    monkeypatch.setenv(runcache.ENV, str(tmp_path))
    calls = []
    for _ in range(2):
        runcache.cached("demo", {"f": object()}, counting(calls, 0))
    assert len(calls) == 2
    assert list(tmp_path.iterdir()) == []


def test_a_change_to_the_code_is_a_new_key(monkeypatch):
    before = runcache.key("demo", {"a": 1})
    monkeypatch.setattr(runcache, "SOURCES", (*runcache.SOURCES, "__init__.py"))
    assert runcache.key("demo", {"a": 1}) != before


def _slow_compute(folder, marker):
    """Run in a child process: ask for one key; the computation leaves a marker file."""
    os.environ[runcache.ENV] = folder

    def compute():
        with open(marker, "a") as handle:
            handle.write("computed\n")
        import time
        time.sleep(1.0)
        return "result"

    return runcache.cached("concurrent", {"k": 1}, compute)


@pytest.mark.slow
def test_two_processes_asking_at_once_compute_once(tmp_path):
    marker = tmp_path / "marker.txt"
    with get_context("spawn").Pool(2) as pool:
        results = pool.starmap(_slow_compute, [(str(tmp_path / "cache"), str(marker))] * 2)
    assert results == ["result", "result"]
    assert marker.read_text().count("computed") == 1


TRAIN = textwrap.dedent("""
    import json, sys
    import numpy as np
    import rnncourse
    from rnncourse.experiments import train_first_symbol
    run, model = train_first_symbol("GRU", 6, seed=3, units=4, n_train=256, n_val=64,
                                    epochs=2, batch_size=64, return_model=True)
    after = float(np.random.random())          # what a page would draw next
    print(json.dumps({"accuracy": run.accuracy, "curve": run.val_accuracy_per_epoch,
                      "params": run.params, "after": after,
                      "weights": [w.tolist() for w in model.get_weights()]}))
""")


def train_in_a_new_process(cache_folder):
    env = {k: v for k, v in os.environ.items() if k != runcache.ENV}
    if cache_folder is not None:
        env[runcache.ENV] = str(cache_folder)
    done = subprocess.run([sys.executable, "-c", TRAIN], env=env, capture_output=True,
                          text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_loaded_run_equals_the_run_trained_without_the_cache(tmp_path):
    """Three processes: no cache; cache empty (trains, stores); cache full (loads)."""
    plain = train_in_a_new_process(None)
    stored = train_in_a_new_process(tmp_path)
    assert len(list(tmp_path.glob("train_first_symbol-*.pkl"))) == 1
    loaded = train_in_a_new_process(tmp_path)
    assert plain == stored == loaded

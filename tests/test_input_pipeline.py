"""One-thread input pipelines (the book build's): applied only when asked, once, and training
gives the same numbers to the last bit with them as without."""

import numpy as np
import pytest
from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

import rnncourse
from rnncourse import input_pipeline, runcache
from rnncourse.experiments import train_first_symbol


@pytest.fixture(autouse=True)
def keras_default(monkeypatch):
    monkeypatch.delenv(input_pipeline.ENV, raising=False)
    monkeypatch.delenv(runcache.ENV, raising=False)  # every run here is trained
    input_pipeline.keras_default_input_pipelines()
    yield
    input_pipeline.keras_default_input_pipelines()


def threading_of_a_fit_dataset():
    x = np.zeros((10, 3, 2), "float32")
    adapter = ArrayDataAdapter(x, np.zeros(10, "int64"), batch_size=4, shuffle=True)
    options = adapter.get_tf_dataset().options()
    return (options.threading.private_threadpool_size,
            options.threading.max_intra_op_parallelism, options.autotune.enabled)


def test_seed_everything_applies_the_options_only_when_asked(monkeypatch):
    rnncourse.seed_everything(0)
    assert threading_of_a_fit_dataset() != (1, 1, False)
    monkeypatch.setenv(input_pipeline.ENV, "0")
    rnncourse.seed_everything(0)
    assert threading_of_a_fit_dataset() != (1, 1, False)
    monkeypatch.setenv(input_pipeline.ENV, "1")
    rnncourse.seed_everything(0)
    assert threading_of_a_fit_dataset() == (1, 1, False)


def test_idempotent_and_undone():
    plain = ArrayDataAdapter.get_tf_dataset
    assert input_pipeline.one_thread_input_pipelines()
    patched = ArrayDataAdapter.get_tf_dataset
    assert patched is not plain and patched.__wrapped__ is plain
    assert input_pipeline.one_thread_input_pipelines()
    assert ArrayDataAdapter.get_tf_dataset is patched  # not wrapped twice
    input_pipeline.keras_default_input_pipelines()
    assert ArrayDataAdapter.get_tf_dataset is plain


def test_a_keras_without_the_adapter_warns_and_changes_nothing(monkeypatch):
    monkeypatch.delattr(ArrayDataAdapter, "get_tf_dataset")
    with pytest.warns(RuntimeWarning, match="keeping its default"):
        assert not input_pipeline.one_thread_input_pipelines()
    assert "get_tf_dataset" not in vars(ArrayDataAdapter)


def train(monkeypatch, one_thread):
    monkeypatch.setenv(input_pipeline.ENV, "1" if one_thread else "0")
    if not one_thread:
        input_pipeline.keras_default_input_pipelines()
    # shuffled batches with a partial last one (600 = 18 x 32 + 24), validation every epoch
    run, model = train_first_symbol("GRU", 12, seed=3, units=8, n_train=600, n_val=200,
                                    epochs=4, return_model=True)
    assert (threading_of_a_fit_dataset() == (1, 1, False)) == one_thread
    return run, model.get_weights()


def test_training_gives_the_same_numbers_to_the_last_bit(monkeypatch):
    default_run, default_weights = train(monkeypatch, one_thread=False)
    one_run, one_weights = train(monkeypatch, one_thread=True)
    assert one_run.val_accuracy_per_epoch == default_run.val_accuracy_per_epoch
    assert len(set(default_run.val_accuracy_per_epoch)) > 1  # it learned: the epochs differ
    assert len(one_weights) == len(default_weights)
    for one, default in zip(one_weights, default_weights):
        np.testing.assert_array_equal(one, default)

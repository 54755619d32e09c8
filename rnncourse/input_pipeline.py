"""Keras's input pipeline for NumPy arrays on one thread, for kernels that run one per core.

``model.fit(x, y)`` with NumPy arrays feeds the model through a tf.data pipeline
(``ArrayDataAdapter.get_tf_dataset``) whose ``map`` runs with ``AUTOTUNE`` on its own
private thread pool, autotuned. When two training runs share two cores (the book's pages in a
parallel build), those extra threads hand every batch between threads and leave the cores
20-38 % idle: a GRU run on lag-50 sequences, 10 epochs, took 8.7-9.8 s with another run beside
it and 6.0-6.2 s with the pipeline on one thread and autotuning off (8.4 s against 6.2 s alone).

:func:`one_thread_input_pipelines` adds those tf.data options to every such dataset. They
change where the pipeline runs, not what it yields: the batches, their order (the shuffle's
seeds are the same ops') and so the trained weights are the same to the last bit
(``tests/test_input_pipeline.py``).

:func:`rnncourse.seed_everything` calls it when the environment variable :data:`ENV` is
``1``; the book's build sets it for every page (``_ext/parallel_pages.py``). A reader or a
student keeps Keras's default, which suits a machine with more cores than runs.
"""

from __future__ import annotations

import os
import warnings

ENV = "RNNCOURSE_ONE_THREAD_INPUT"
_MARK = "_rnncourse_one_thread"


def requested() -> bool:
    """Whether this process was asked (by :data:`ENV`) for one-thread input pipelines."""
    return os.environ.get(ENV, "").strip() == "1"


def one_thread_options():
    """The tf.data options: one private thread, no intra-op parallelism, no autotuning."""
    import tensorflow as tf

    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    options.autotune.enabled = False
    return options


def one_thread_input_pipelines() -> bool:
    """Make Keras's NumPy-array pipelines use :func:`one_thread_options`; return whether they do.

    Idempotent. If this Keras has no ``ArrayDataAdapter.get_tf_dataset`` (its internals
    moved), it warns and changes nothing: training then runs as Keras does by default.
    """
    try:
        from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

        plain = vars(ArrayDataAdapter)["get_tf_dataset"]  # its own, not a base class's
    except (ImportError, KeyError) as error:
        warnings.warn(f"one_thread_input_pipelines: Keras's input pipeline not found ({error}); "
                      "keeping its default", RuntimeWarning, stacklevel=2)
        return False
    if getattr(plain, _MARK, False):
        return True

    def get_tf_dataset(self):
        return plain(self).with_options(one_thread_options())

    setattr(get_tf_dataset, _MARK, True)
    get_tf_dataset.__wrapped__ = plain
    get_tf_dataset.__doc__ = plain.__doc__
    ArrayDataAdapter.get_tf_dataset = get_tf_dataset
    return True


def keras_default_input_pipelines() -> None:
    """Undo :func:`one_thread_input_pipelines` (for tests)."""
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    current = vars(ArrayDataAdapter).get("get_tf_dataset")
    if getattr(current, _MARK, False):
        ArrayDataAdapter.get_tf_dataset = current.__wrapped__

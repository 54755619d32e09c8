"""One call that makes a page's or a test's run repeatable."""

import random

import numpy as np


def seed_everything(seed: int, *, deterministic_ops: bool = True) -> np.random.Generator:
    """Seed Python, NumPy and Keras/TensorFlow; return a NumPy ``Generator`` for new code.

    ``deterministic_ops`` also asks TensorFlow for deterministic kernels, so two runs
    of a training loop on the same machine give the same numbers.

    When the environment variable ``RNNCOURSE_ONE_THREAD_INPUT`` is ``1`` (the book's build
    sets it for every page), ``model.fit`` on NumPy arrays also feeds the model on one thread
    (:mod:`rnncourse.input_pipeline`): faster when runs share the cores, the same numbers.
    """
    random.seed(seed)
    np.random.seed(seed)
    import keras  # imported here so that importing rnncourse stays cheap

    keras.utils.set_random_seed(seed)
    if deterministic_ops:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    from rnncourse import input_pipeline

    if input_pipeline.requested():
        input_pipeline.one_thread_input_pipelines()
    return np.random.default_rng(seed)

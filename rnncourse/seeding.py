"""One call that makes a page's or a test's run repeatable."""

import random

import numpy as np


def seed_everything(seed: int, *, deterministic_ops: bool = True) -> np.random.Generator:
    """Seed Python, NumPy and Keras/TensorFlow; return a NumPy ``Generator`` for new code.

    ``deterministic_ops`` also asks TensorFlow for deterministic kernels, so two runs
    of a training loop on the same machine give the same numbers.
    """
    random.seed(seed)
    np.random.seed(seed)
    import keras  # imported here so that importing rnncourse stays cheap

    keras.utils.set_random_seed(seed)
    if deterministic_ops:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    return np.random.default_rng(seed)

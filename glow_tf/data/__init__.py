"""Input pipelines of glow_tf: every problem of the original, offline-safe, with clear errors.

    from glow_tf import data
    ds = data.make_datasets(data.DataConfig(problem="digits"))
    x, y = next(iter(ds.train))   # uint8 [64, 16, 16, 3], int32 [64]

Modules: ``config`` (DataConfig, per-problem defaults), ``pipeline`` (make_datasets),
``problems`` (which source serves a problem) and one module per source: ``digits``, ``idx``
(MNIST idx files), ``keras_cache`` (the original's Keras-downloaded mnist and cifar10),
``folder``, ``tfrecords`` (the original's), ``tfds_source``; ``images`` and ``augment`` hold
the pixel arithmetic. Each module's docstring states its rules.
"""
from glow_tf.data.config import PROBLEM_DEFAULTS, PROBLEMS, DataConfig
from glow_tf.data.errors import DataError
from glow_tf.data.idx import read_idx, read_mnist
from glow_tf.data.pipeline import Datasets, DatasetInfo, make_datasets

__all__ = ["PROBLEMS", "PROBLEM_DEFAULTS", "DataConfig", "DataError", "Datasets", "DatasetInfo",
           "make_datasets", "read_idx", "read_mnist"]

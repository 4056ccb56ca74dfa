"""make_datasets: batched tf.data pipelines of (x uint8 [B, H, W, 3], y int32 [B]).

Train: shuffled (seeded by ``seed``), repeated forever, batched by the GLOBAL batch with
drop_remainder, augmented per ``dal``, prefetched. In-memory splits shuffle image indices
(so an iterator checkpoint holds indices, not images); streamed splits shuffle records
across files and in a buffer, as the original's tfrecord reader. Every random choice
(shuffle, shift, crop) is seeded or stateless, so two pipelines with one seed agree batch for
batch, and ``tf.train.Checkpoint(iterator=iter(ds.train))`` resumes mid-epoch exactly. As any
seeded tf.data shuffle with reshuffle_each_iteration, the FIRST iterator over a freshly made
``train`` is the seed's stream; a second ``iter()`` over the same object continues with new
shuffles (make the datasets again, or restore a checkpoint, to replay).

Test: the first ``n_test`` held-out examples in a fixed order, one pass, batches of
global_batch_test (the last one may be smaller), never augmented.

Init batch: the first init_batch examples of the training stream (same order, same
augmentation as ``train`` starts with), as numpy.

Streamed data meet a bad record only when the pipeline reaches it: iterate ``train`` and
``test`` within ``Datasets.reading()``, which makes that a DataError naming the file.
"""
import dataclasses
import functools
from typing import Callable, ContextManager, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from glow_tf.data import augment
from glow_tf.data import images as image_ops
from glow_tf.data.config import DEFAULT_EPOCH_SIZE, DataConfig
from glow_tf.data import errors
from glow_tf.data.errors import DataError
from glow_tf.data.source import ArraySplit, Source
from glow_tf.data.problems import load_source

N_CHANNELS = 3
# The original's tfrecord reader shuffles a buffer of n_batch * _SHUFFLE_FACTOR records.
SHUFFLE_FACTOR = 4
# Salts that keep the stateless seeds of different random choices apart.
_CROP_SALT, _AUGMENT_SALT, _TEST_CROP_SEED = 1, 2, (0, 3)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the model and the training loop need to know about the data.

    Attributes:
      problem: the problem name.
      image_size: H = W of every batch.
      n_channels: C, always 3 (grayscale data are tiled to RGB, as the original's MNIST).
      n_y: number of classes; labels are in [0, n_y).
      n_train: epoch size in images (``DataConfig.n_train`` resolved).
      n_test: held-out images in one pass of ``Datasets.test``.
      source: one line saying where the data came from and how it was split.
    """
    problem: str
    image_size: int
    n_channels: int
    n_y: int
    n_train: int
    n_test: int
    source: str


@dataclasses.dataclass(frozen=True)
class Datasets:
    """train: endless batches; test: one pass; init_batch: (x, y) numpy; info: DatasetInfo;
    reading: ``with datasets.reading():`` around iterating train or test (module docstring)."""
    train: tf.data.Dataset
    test: tf.data.Dataset
    init_batch: Tuple[np.ndarray, np.ndarray]
    info: DatasetInfo
    reading: Callable[[], ContextManager]


def make_datasets(config: DataConfig) -> Datasets:
    """Loads ``config.problem``'s source (see ``problems``) and builds the three pipelines.

    Raises DataError (a ValueError) naming the file or folder when the data are missing or bad.
    """
    source = load_source(config)
    image_size = config.resolved_image_size
    if source.image_size % image_size:
        raise DataError(f"{config.problem}: image_size {image_size} must divide the data's size "
                        f"{source.image_size} (area-downsampled by an integer factor, as the "
                        f"original)")
    n_test = _resolve_n_test(config, source.test.num_examples)
    info = DatasetInfo(problem=config.problem, image_size=image_size, n_channels=N_CHANNELS,
                       n_y=source.n_y, n_train=_resolve_n_train(config, source.train.num_examples),
                       n_test=n_test, source=source.description)
    reading = functools.partial(errors.reading, source.description, source.find_damage)
    with reading():
        init_x, init_y = next(iter(_train_batches(source, config, config.init_batch)))
    logging.info("data: %s", info)
    return Datasets(train=_train_batches(source, config, config.global_batch_train),
                    test=_test_batches(source, config, n_test),
                    init_batch=(init_x.numpy(), init_y.numpy()), info=info, reading=reading)


def _resolve_n_train(config: DataConfig, available):
    if config.n_train != -1:
        return config.n_train
    if available is None:
        logging.info("%s: train split size unknown; epoch size n_train=%d (the original's "
                     "default)", config.problem, DEFAULT_EPOCH_SIZE)
        return DEFAULT_EPOCH_SIZE
    return available


def _resolve_n_test(config: DataConfig, available):
    """-1: the problem's default capped at the split; explicit: must fit the split."""
    if config.n_test == -1:
        default = config.defaults.n_test
        if default == -1 or (available is not None and available < default):
            return available
        return default
    if available is not None and config.n_test > available:
        raise DataError(f"{config.problem}: n_test={config.n_test} but the held-out split has "
                        f"{available} examples")
    return config.n_test


def _train_batches(source: Source, config: DataConfig, batch_size: int) -> tf.data.Dataset:
    split = source.train
    if config.shuffle_buffer != -1:
        buffer = config.shuffle_buffer
    elif isinstance(split, ArraySplit):
        buffer = split.num_examples
    else:
        buffer = SHUFFLE_FACTOR * config.global_batch_train
    if isinstance(split, ArraySplit):
        indices = tf.data.Dataset.range(split.num_examples)
        indices = indices.shuffle(buffer, seed=config.seed, reshuffle_each_iteration=True).repeat()
        batches = _gather(split, indices.batch(batch_size, drop_remainder=True), config)
    else:
        elements = split.read(True, config.seed)
        elements = elements.shuffle(buffer, seed=config.seed, reshuffle_each_iteration=True).repeat()
        batches = _parse(split, elements, (config.seed, _CROP_SALT), config).batch(
            batch_size, drop_remainder=True)
    return _finish(batches, source, config, config.augmentation_level)


def _test_batches(source: Source, config: DataConfig, n_test: int) -> tf.data.Dataset:
    split = source.test
    if isinstance(split, ArraySplit):
        batches = _gather(split, tf.data.Dataset.range(n_test).batch(config.global_batch_test), config)
    else:
        elements = split.read(False, config.seed).take(n_test)
        batches = _parse(split, elements, _TEST_CROP_SEED, config).batch(config.global_batch_test)
    return _finish(batches, source, config, augmentation_level=0)


def _gather(split: ArraySplit, index_batches, config):
    images, labels = tf.constant(split.images), tf.constant(split.labels)
    return index_batches.map(lambda i: (tf.gather(images, i), tf.gather(labels, i)),
                             num_parallel_calls=_parallel_calls(config), deterministic=True)


def _parse(split, elements, seed, config):
    """Parses each element with its own stateless seed: fold_in(seed, element index)."""
    seed = tf.constant(seed, tf.int64)
    return elements.enumerate().map(
        lambda index, element: split.parse(
            element, tf.random.experimental.stateless_fold_in(seed, index)),
        num_parallel_calls=_parallel_calls(config), deterministic=True)


def _finish(batches, source: Source, config: DataConfig, augmentation_level: int):
    """Augments (stateless, per batch index) and area-downsamples to image_size; prefetches."""
    image_size = config.resolved_image_size
    if augmentation_level or source.image_size != image_size:
        seed = tf.constant([config.seed, _AUGMENT_SALT], tf.int64)

        def finish(step, batch):
            x, y = batch
            x = tf.cast(x, tf.float32)  # [B, S, S, 3]
            if augmentation_level:
                step_seed = tf.random.experimental.stateless_fold_in(seed, step)
                x = augment.random_affine(x, augmentation_level, step_seed)
            return image_ops.to_uint8(image_ops.area_downsample(x, image_size)), y

        batches = batches.enumerate().map(finish, num_parallel_calls=_parallel_calls(config),
                                          deterministic=True)
    options = tf.data.Options()
    options.deterministic = True
    return batches.prefetch(tf.data.AUTOTUNE).with_options(options)


def _parallel_calls(config: DataConfig) -> int:
    return tf.data.AUTOTUNE if config.pmap == -1 else config.pmap

"""Which source serves a problem, decided by ``problem`` and what ``data_dir`` holds.

  * digits: scikit-learn's bundled digits (``data_dir`` is ignored).
  * folder: the image folder ``data_dir`` (required).
  * mnist: idx files when ``data_dir`` holds them, else Keras' ``mnist.npz`` (``keras_cache``)
    in ``data_dir`` or, when it is "", in the Keras cache, else tfds 'mnist' (``data_dir`` as
    its data dir).
  * cifar10: Keras' CIFAR-10 batches (``keras_cache``) in ``data_dir`` or, when it is "", in the
    Keras cache, else tfds 'cifar10'. The Keras files come first because they are what the
    original read, in the original's order.
  * imagenet-oord, imagenet, celeba, lsun_realnvp, lsun: the original's tfrecords when
    ``data_dir[/category]/train`` holds *.tfrecords, else tfds (``data_dir`` as its data dir).
A ``data_dir`` that is given but does not exist is a DataError.
"""
import os

from absl import logging

from glow_tf.data import keras_cache
from glow_tf.data.config import TFRECORD_PROBLEMS, DataConfig
from glow_tf.data.digits import load_digits
from glow_tf.data.errors import DataError
from glow_tf.data.folder import load_folder
from glow_tf.data.idx import has_mnist_files, load_mnist_idx
from glow_tf.data.source import Source
from glow_tf.data.tfds_source import load_tfds
from glow_tf.data.tfrecords import has_tfrecords, load_tfrecords

_IDX_HINT = ("or pass --data_dir holding MNIST idx files ({train,t10k}-images-idx3-ubyte[.gz] "
             "and {train,t10k}-labels-idx1-ubyte[.gz]); ")
_OFFLINE_HINT = "; or train offline on --problem digits or --problem folder --data_dir DIR."
_TFRECORDS_HINT = ("or pass --data_dir holding the original's tfrecords "
                   "(DIR[/category]/train/train-rNN-s-SSSS-of-NNNN.tfrecords and validation/...).")


def load_source(config: DataConfig) -> Source:
    problem, image_size = config.problem, config.resolved_image_size
    if problem == "digits":
        if config.data_dir:
            logging.warning("digits: --data_dir %s ignored (the data ship with scikit-learn)",
                            config.data_dir)
        return load_digits(image_size)
    if problem == "folder":
        return load_folder(config.data_dir, image_size, config.n_test, workers=max(config.pmap, 1))
    if config.data_dir and not os.path.isdir(config.data_dir):
        raise DataError(f"--data_dir {config.data_dir}: folder does not exist")
    if problem == "mnist" and config.data_dir and has_mnist_files(config.data_dir):
        return load_mnist_idx(config.data_dir)
    if problem in keras_cache.PROBLEMS:
        found = keras_cache.find(problem, config.data_dir or keras_cache.cache_dir())
        if found:
            return keras_cache.load(problem, found)
    if problem in TFRECORD_PROBLEMS and config.data_dir:
        tfrecord_dir = os.path.join(config.data_dir, config.category) if config.category else config.data_dir
        if has_tfrecords(tfrecord_dir):
            return load_tfrecords(tfrecord_dir, problem, image_size, config.defaults.n_y, config.fmap)
    return load_tfds(problem, config.data_dir, image_size, config.category, config.defaults.n_y, config.fmap,
                     _not_found_hint(problem))


def _not_found_hint(problem: str) -> str:
    """The other ways to give ``problem``'s data, for the error when tfds does not have it."""
    if problem == "mnist":
        return _IDX_HINT + keras_cache.not_found_hint(problem) + "."
    if problem == "cifar10":
        return keras_cache.not_found_hint(problem) + _OFFLINE_HINT
    return _TFRECORDS_HINT

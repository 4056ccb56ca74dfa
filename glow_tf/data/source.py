"""What every data source hands the pipeline: a train split, a held-out split, and labels.

A split is either in memory (``ArraySplit``: all images as one uint8 array, shuffled by index)
or streamed from files (``StreamSplit``: a tf.data.Dataset of records and a parse function).
"""
import dataclasses
from typing import Callable, Optional, Union

import numpy as np
import tensorflow as tf

from glow_tf.data.errors import DataError


@dataclasses.dataclass(frozen=True)
class ArraySplit:
    """Images held in memory.

    Attributes:
      images: uint8 [N, S, S, 3]; S may be an integer multiple of the output image size (the
        original's mnist/cifar10 area-downsample after augmentation).
      labels: int32 [N].
    """
    images: np.ndarray
    labels: np.ndarray

    @property
    def num_examples(self) -> int:
        return len(self.labels)


@dataclasses.dataclass(frozen=True)
class StreamSplit:
    """Examples streamed from files.

    Attributes:
      read: ``read(shuffle_files, seed)`` -> tf.data.Dataset of raw elements in file order
        (shuffled across files when ``shuffle_files``).
      parse: ``parse(element, seed)`` -> (x uint8 [S, S, 3], y int32 []); ``seed`` is a
        stateless seed [2] unique to the element, for random crops.
      num_examples: the split's size when known without reading it, else None.
    """
    read: Callable[[bool, int], tf.data.Dataset]
    parse: Callable[..., tuple]
    num_examples: Optional[int]


Split = Union[ArraySplit, StreamSplit]


@dataclasses.dataclass(frozen=True)
class Source:
    """A loaded data source.

    Attributes:
      train, test: the train split and the held-out split.
      n_y: number of classes; every label is in [0, n_y).
      image_size: the size S of the split's images (before any area-downsampling).
      description: one line saying where the data came from and how it was split.
      find_damage: for streamed files, ``find_damage()`` -> a message naming a file that is cut
        short, or None; called when TensorFlow's reader fails on a damaged file without naming it.
    """
    train: Split
    test: Split
    n_y: int
    image_size: int
    description: str
    find_damage: Optional[Callable[[], Optional[str]]] = None


def check_labels(labels: np.ndarray, n_y: int, where: str) -> np.ndarray:
    """Returns labels as int32 [N], or raises DataError if any is outside [0, n_y)."""
    labels = np.asarray(labels).reshape(-1)  # [N]
    bad = np.flatnonzero((labels < 0) | (labels >= n_y))
    if bad.size:
        raise DataError(f"{where}: {bad.size} labels outside [0, {n_y}), first at index "
                        f"{bad[0]}: {labels[bad[0]]}")
    return labels.astype(np.int32)

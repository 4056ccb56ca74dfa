"""MNIST from idx files (LeCun's format), gzip-compressed or not.

File names: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` with or without ``.gz`` (the
uncompressed file wins when both are there). Compression is detected from the content, not
the name.

Split rule: with the train files, train = the 60,000 train images and held out = the 10,000
t10k images (as the original). With only the t10k files, the
first 9,000 t10k images train and the last 1,000 are held out, and the log says so.

Every image is padded to 32x32 ('minimum' mode) and tiled to 3 channels, as the original.
"""
import gzip
import os
import zlib

import numpy as np
from absl import logging

from glow_tf.data import images as image_ops
from glow_tf.data.errors import DataError
from glow_tf.data.source import ArraySplit, Source, check_labels

T10K_TRAIN_EXAMPLES = 9000

# idx type codes -> big-endian numpy dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str) -> np.ndarray:
    """Reads one idx file (gzipped or not) into an array of its stored shape and type.

    Raises DataError naming the file when it is missing, its gzip stream is corrupt or
    truncated, its magic number is wrong (first two bytes not 0, unknown type code, no
    dimensions), or its data are shorter or longer than the header's dimensions say.
    """
    try:
        with open(path, "rb") as f:
            content = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read idx file ({e.strerror})") from None
    if content[:2] == _GZIP_MAGIC:
        try:
            content = gzip.decompress(content)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from None
    if len(content) < 4:
        raise DataError(f"{path}: {len(content)} bytes, too short for an idx header")
    zero, type_code, ndim = content[:2], content[2], content[3]
    if zero != b"\0\0" or type_code not in _IDX_DTYPES or ndim == 0:
        raise DataError(f"{path}: bad idx magic number 0x{content[:4].hex()} (expected "
                        f"0x0000TTDD: type code TT in {[hex(t) for t in _IDX_DTYPES]}, "
                        f"DD >= 1 dimensions; MNIST images are 0x00000803, labels 0x00000801)")
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise DataError(f"{path}: truncated idx header ({len(content)} of {header_size} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(content, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(content) - header_size != expected:
        raise DataError(f"{path}: {len(content) - header_size} data bytes, expected {expected} "
                        f"for shape {shape} of {dtype.name} (truncated or corrupt file)")
    return np.frombuffer(content, dtype, offset=header_size).reshape(shape)


def find_idx_file(data_dir: str, split: str, kind: str):
    """Path of ``{split}-{kind}-ubyte`` or its ``.gz`` in data_dir, or None."""
    name = os.path.join(data_dir, f"{split}-{kind}-ubyte")
    return next((p for p in (name, name + ".gz") if os.path.isfile(p)), None)


def has_mnist_files(data_dir: str) -> bool:
    return any(find_idx_file(data_dir, split, "images-idx3") for split in ("train", "t10k"))


def read_mnist(data_dir: str, split: str):
    """Raw ``split`` ('train' or 't10k') of MNIST: (images uint8 [N, 28, 28], labels int32 [N]).

    Checks the files' shapes and types, that both hold N examples, and labels in [0, 10).
    """
    paths = {kind: find_idx_file(data_dir, split, kind) for kind in ("images-idx3", "labels-idx1")}
    for kind, path in paths.items():
        if path is None:
            raise DataError(f"{data_dir}: missing MNIST file {split}-{kind}-ubyte[.gz]")
    digits, labels = read_idx(paths["images-idx3"]), read_idx(paths["labels-idx1"])
    if digits.dtype != np.uint8 or digits.ndim != 3 or digits.shape[1:] != (28, 28):
        raise DataError(f"{paths['images-idx3']}: expected uint8 images [N, 28, 28], got "
                        f"{digits.dtype.name} {list(digits.shape)}")
    if labels.ndim != 1 or len(labels) != len(digits):
        raise DataError(f"{paths['labels-idx1']}: expected {len(digits)} labels (one per image "
                        f"in {paths['images-idx3']}), got shape {list(labels.shape)}")
    return digits, check_labels(labels, 10, paths["labels-idx1"])


def load_mnist_idx(data_dir: str) -> Source:
    """The mnist source from idx files, split and padded by the module's rules."""
    if find_idx_file(data_dir, "t10k", "images-idx3") is None:
        raise DataError(f"{data_dir}: missing MNIST file t10k-images-idx3-ubyte[.gz] (the held-out "
                        f"split)")
    test_digits, test_labels = read_mnist(data_dir, "t10k")
    if find_idx_file(data_dir, "train", "images-idx3") is not None:
        train_digits, train_labels = read_mnist(data_dir, "train")
        description = (f"MNIST idx files in {data_dir}: train {len(train_labels):,} / held out "
                       f"t10k {len(test_labels):,}")
    else:
        n = T10K_TRAIN_EXAMPLES
        train_digits, train_labels = test_digits[:n], test_labels[:n]
        test_digits, test_labels = test_digits[n:], test_labels[n:]
        description = (f"MNIST idx files in {data_dir}, t10k only: first {n:,} train / last "
                       f"{len(test_labels):,} held out")
    logging.info("mnist: %s", description)
    return Source(train=ArraySplit(image_ops.pad_and_tile_mnist(train_digits), train_labels),
                  test=ArraySplit(image_ops.pad_and_tile_mnist(test_digits), test_labels),
                  n_y=10, image_size=32, description=description)

"""The original's own tfrecords (imagenet-oord, imagenet, celeba, lsun_realnvp, lsun).

Layout (the original's get_data.py and generate_tfr/): for split in {train, validation},
``{data_dir}[/{category}]/{split}/{split}-r{log2(image_size):02d}-s-{shard:04d}-of-{n:04d}.tfrecords``
with all n shards present. Each record is a tf.train.Example with features ``shape`` (int64
[3]: H, W, C), ``data`` (bytes: the uint8 HWC pixels), ``label`` (int64 [1]) and, for celeba,
``attr`` (int64 [40]), which the original's training ignores and so do we.

Rules:
  * image_size must be a power of two (the file names carry its log2, as the original).
  * Images must be image_size x image_size, except for lsun_realnvp whose stored images
    (shortest side 96) are randomly cropped to image_size, as the original; the held-out
    split is cropped too (as the original) but with fixed seeds, the same crops every pass.
  * 1-channel records are tiled to RGB, a 4th channel is dropped (the package's channel rule).
  * Labels must be in [0, n_y).
The first record of each split is checked when the source is loaded (a DataError naming the
file); a later bad record stops the pipeline with a DataError naming its file (through
``errors.reading``). A shard cut short (a copy or download that stopped) or damaged stops the
pipeline where it is met; ``find_damage`` then walks the record framing of every shard (an
8-byte length, its checksum, the data, its checksum) to name the one cut short. It is not done
when the source loads: on large data sets it reads a page of every record (ImageNet-64's 1.28 M
records: about 4 s from the page cache, a read of the whole data set from a cold disk).
"""
import glob
import math
import os
import re
import struct

import numpy as np
import tensorflow as tf

from glow_tf.data import images as image_ops
from glow_tf.data.errors import DataError, checked
from glow_tf.data.source import Source, StreamSplit

SPLITS = ("train", "validation")
_FEATURES = {"shape": tf.io.FixedLenFeature([3], tf.int64),
             "data": tf.io.FixedLenFeature([], tf.string),
             "label": tf.io.FixedLenFeature([1], tf.int64)}
_SHARD = re.compile(r"-s-(\d+)-of-(\d+)\.tfrecords$")


def has_tfrecords(data_dir: str) -> bool:
    return bool(glob.glob(os.path.join(data_dir, "train", "*.tfrecords")))


def shard_files(data_dir: str, split: str, image_size: int):
    """Sorted shard paths of ``split``, checked complete; DataError naming what is missing."""
    log2 = int(math.log2(image_size))
    folder = os.path.join(data_dir, split)
    pattern = os.path.join(folder, f"{split}-r{log2:02d}-s-*-of-*.tfrecords")
    files = sorted(glob.glob(pattern))
    if not files:
        present = sorted(os.path.basename(f) for f in glob.glob(os.path.join(folder, "*.tfrecords")))
        raise DataError(f"{folder}: no tfrecords matching {os.path.basename(pattern)} for "
                        f"image_size {image_size}; present: {present[:4] or 'none'}")
    expected = int(_SHARD.search(files[0]).group(2))
    if len(files) != expected:
        raise DataError(f"{folder}: {len(files)} of the {expected} shards of "
                        f"{os.path.basename(pattern)} present (not all tfrecords files)")
    return files


def load_tfrecords(data_dir: str, problem: str, image_size: int, n_y: int, fmap: int) -> Source:
    if image_size != 2 ** int(math.log2(image_size)):
        raise DataError(f"{problem}: the original's tfrecords exist for powers of two only, "
                        f"got image_size {image_size}")
    random_crop = problem == "lsun_realnvp"
    splits = []
    for split in SPLITS:
        files = shard_files(data_dir, split, image_size)
        _check_first_record(files[0], image_size, n_y, random_crop)
        splits.append(StreamSplit(read=_reader(files, fmap),
                                  parse=_parser(image_size, n_y, random_crop),
                                  num_examples=None))
    every_shard = [path for split in SPLITS for path in shard_files(data_dir, split, image_size)]
    return Source(train=splits[0], test=splits[1], n_y=n_y, image_size=image_size,
                  description=f"the original's tfrecords in {data_dir} (train / validation)",
                  find_damage=lambda: next(filter(None, map(_framing_fault, every_shard)), None))


def _reader(files, fmap):
    def read(shuffle_files: bool, seed: int):
        names = tf.data.Dataset.from_tensor_slices(files)
        if shuffle_files:
            names = names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        return names.interleave(  # elements: (file name, serialized example)
            lambda name: tf.data.TFRecordDataset(name).map(lambda record: (name, record)),
            cycle_length=fmap, num_parallel_calls=fmap, deterministic=True)
    return read


def _parser(image_size, n_y, random_crop):
    def parse(element, seed):
        name, record = element
        features = tf.io.parse_single_example(record, _FEATURES)
        shape = tf.cast(features["shape"], tf.int32)
        pixels = tf.io.decode_raw(features["data"], tf.uint8)
        pixels = checked(pixels, tf.equal(tf.size(pixels), tf.reduce_prod(shape)), name,
                         "a record's data size differs from its shape")
        image = image_ops.to_rgb(tf.reshape(pixels, shape), name)  # [H, W, 3]
        if random_crop:
            image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], seed)
        else:
            height_by_width = tf.strings.reduce_join(tf.strings.as_string(shape[:2]), separator="x")
            image = checked(image, tf.reduce_all(tf.equal(shape[:2], image_size)), name,
                            [f"expected every record's image {image_size}x{image_size}, got one", height_by_width])
            image = tf.reshape(image, [image_size, image_size, 3])
        label = tf.cast(features["label"][0], tf.int32)
        label = checked(label, tf.logical_and(label >= 0, label < n_y), name,
                        [f"expected labels in [0, {n_y}), got", label])
        return image, label
    return parse


def _framing_fault(path):
    """None if the records of ``path`` fill it exactly, else a message naming the file and where it ends."""
    size, offset, count = os.path.getsize(path), 0, 0
    with open(path, "rb") as f:
        while offset + 8 <= size:
            f.seek(offset)
            (length,) = struct.unpack("<Q", f.read(8))
            offset += 8 + 4 + length + 4  # length, its checksum, the data, its checksum
            count += 1
    if offset == size:
        return None
    return (f"{path}: expected whole tfrecords, got a file cut short or damaged: record {count} (from 1) ends at "
            f"byte {offset}, the file has {size} bytes (copy the file again)")


def _check_first_record(path, image_size, n_y, random_crop):
    """DataError naming ``path`` if its first record breaks the module's rules."""
    try:
        record = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
    except tf.errors.OpError as e:
        raise DataError(f"{path}: unreadable tfrecords file ({e.message})") from None
    if record is None:
        raise DataError(f"{path}: empty tfrecords file")
    try:
        feature = tf.train.Example.FromString(record.numpy()).features.feature
    except Exception as e:  # protobuf's DecodeError is not exported under one stable name
        raise DataError(f"{path}: first record is not a tf.train.Example ({e})") from None
    missing = [k for k in _FEATURES if k not in feature]
    if missing:
        raise DataError(f"{path}: first record lacks features {missing} (the original's layout: "
                        f"shape, data, label[, attr])")
    shape = list(feature["shape"].int64_list.value)
    data = feature["data"].bytes_list.value
    labels = list(feature["label"].int64_list.value)
    if len(shape) != 3 or len(data) != 1 or len(data[0]) != int(np.prod(shape)):
        raise DataError(f"{path}: first record's data ({len(data[0]) if data else 0} bytes) does "
                        f"not match its shape {shape}")
    if shape[2] not in (1, 3, 4):
        raise DataError(f"{path}: first record has {shape[2]} channels (expected 1, 3 or 4)")
    too_small = min(shape[:2]) < image_size
    if (random_crop and too_small) or (not random_crop and shape[:2] != [image_size] * 2):
        raise DataError(f"{path}: first record is {shape[0]}x{shape[1]}, expected "
                        f"{'at least ' if random_crop else ''}{image_size}x{image_size}")
    if len(labels) != 1 or not 0 <= labels[0] < n_y:
        raise DataError(f"{path}: first record's label {labels} is not one int in [0, {n_y})")

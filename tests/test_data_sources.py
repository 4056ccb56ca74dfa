"""Tests of glow_tf.data's sources and their bad-data rules: idx files, image folders, the
original's tfrecords, and tfds (mocked: no data set is downloaded)."""
import gzip
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from conftest import REPO_ROOT
from glow_tf import data


def batches_of(dataset, n=100):
    """All (x, y) of the first n batches, concatenated to numpy."""
    pairs = list(dataset.take(n).as_numpy_iterator())
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


def assert_batch(x, y, batch, size, n_y):
    assert x.shape == (batch, size, size, 3) and x.dtype == np.uint8
    assert y.shape == (batch,) and y.dtype == np.int32
    assert y.min() >= 0 and y.max() < n_y


# --- idx --------------------------------------------------------------------------------------

def idx_bytes(array, type_code=0x08):
    header = bytes([0, 0, type_code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(">u1").tobytes()


def write_mnist(folder, split, digits, labels, compress):
    for kind, array in (("images-idx3", digits), ("labels-idx1", labels)):
        content = idx_bytes(array)
        path = os.path.join(folder, f"{split}-{kind}-ubyte" + (".gz" if compress else ""))
        with open(path, "wb") as f:
            f.write(gzip.compress(content) if compress else content)
    return folder


@pytest.fixture
def small_mnist(tmp_path):
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 256, [150, 28, 28], np.uint8)
    labels = np.arange(150) % 10
    write_mnist(tmp_path, "train", digits[:100], labels[:100], compress=False)
    write_mnist(tmp_path, "t10k", digits[100:], labels[100:], compress=True)
    return tmp_path, digits, labels


def test_idx_train_and_t10k_files_give_the_originals_split(small_mnist):
    folder, digits, labels = small_mnist
    ds = data.make_datasets(data.DataConfig(problem="mnist", data_dir=str(folder), dal=0,
                                            global_batch_train=10, init_batch=4, global_batch_test=20))
    assert (ds.info.n_train, ds.info.n_test) == (100, 50)
    assert "train 100 / held out t10k 50" in ds.info.source
    x, y = batches_of(ds.test)
    np.testing.assert_array_equal(x[:, 2:30, 2:30, 1], digits[100:])
    np.testing.assert_array_equal(y, labels[100:])
    x, y = next(ds.train.as_numpy_iterator())
    assert_batch(x, y, 10, 32, 10)


def write_file(path, content):
    with open(path, "wb") as f:
        f.write(content)
    return str(path)


@pytest.mark.parametrize("content, message", [
    (bytes([0, 0, 8, 3]) + np.asarray([2, 28, 28], ">u4").tobytes() + bytes(100), "expected 1568"),
    (bytes([8, 3, 0, 0]) + bytes(100), "bad idx magic number 0x08030000"),
    (bytes([0, 0, 0x42, 3]) + bytes(100), "bad idx magic number"),
    (bytes([0, 0, 8, 3, 0, 0]), "truncated idx header"),
    (bytes([0, 0]), "too short"),
    (gzip.compress(bytes(50), mtime=0)[:-12], "corrupt or truncated gzip"),
])
def test_bad_idx_files_name_the_file_and_the_fault(tmp_path, content, message):
    path = write_file(tmp_path / "t10k-images-idx3-ubyte", content)
    with pytest.raises(data.DataError, match=message) as error:
        data.read_idx(path)
    assert path in str(error.value)


def test_idx_label_faults(tmp_path):
    digits = np.zeros([4, 28, 28], np.uint8)
    write_mnist(tmp_path, "t10k", digits, np.array([0, 1, 12, 3]), compress=True)
    with pytest.raises(data.DataError, match=r"labels-idx1-ubyte.gz: 1 labels outside \[0, 10\)"):
        data.make_datasets(data.DataConfig(problem="mnist", data_dir=str(tmp_path)))
    write_mnist(tmp_path, "t10k", digits, np.array([0, 1, 2]), compress=True)
    with pytest.raises(data.DataError, match="expected 4 labels"):
        data.read_mnist(str(tmp_path), "t10k")
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(data.DataError, match="missing MNIST file t10k-labels-idx1-ubyte"):
        data.read_mnist(str(tmp_path), "t10k")


def test_idx_wrong_image_shape(tmp_path):
    write_mnist(tmp_path, "t10k", np.zeros([3, 27, 28], np.uint8), np.zeros(3), compress=False)
    with pytest.raises(data.DataError, match=r"expected uint8 images \[N, 28, 28\], got uint8 "
                                             r"\[3, 27, 28\]"):
        data.read_mnist(str(tmp_path), "t10k")


def test_missing_data_dir(tmp_path):
    missing = str(tmp_path / "nowhere")
    for problem in ("mnist", "celeba", "folder"):
        with pytest.raises(data.DataError, match="does not exist"):
            data.make_datasets(data.DataConfig(problem=problem, data_dir=missing))
    with pytest.raises(data.DataError, match="--data_dir is required"):
        data.make_datasets(data.DataConfig(problem="folder"))


# --- image folder -----------------------------------------------------------------------------

def save(path, array, **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


@pytest.fixture
def image_folder(tmp_path):
    """cats/ (5 good RGB PNGs + 1 corrupt + 1 truncated), dogs/ (grayscale, RGBA, JPEG)."""
    rng = np.random.default_rng(0)
    for i in range(5):
        save(tmp_path / "cats" / f"{i}.png", rng.integers(0, 256, [20, 30, 3], np.uint8))
    write_file(tmp_path / "cats" / "corrupt.png", b"\x89PNG\r\n\x1a\n not really a png")
    save(tmp_path / "cats" / "whole.png", rng.integers(0, 256, [64, 64, 3], np.uint8))
    content = open(tmp_path / "cats" / "whole.png", "rb").read()
    write_file(tmp_path / "cats" / "truncated.png", content[:len(content) // 2])
    os.remove(tmp_path / "cats" / "whole.png")
    save(tmp_path / "dogs" / "gray.png", np.full([16, 16], 200, np.uint8))
    save(tmp_path / "dogs" / "rgba.png", np.full([16, 16, 4], 100, np.uint8))
    save(tmp_path / "dogs" / "deep" / "photo.JPG", np.full([40, 10, 3], 50, np.uint8),
         format="JPEG")
    write_file(tmp_path / "dogs" / "notes.txt", b"not an image")
    save(tmp_path / "loose.png", np.zeros([8, 8, 3], np.uint8))
    return tmp_path


def test_folder_classes_channels_sizes_and_skipped_images(image_folder, caplog):
    caplog.set_level(logging.INFO, logger="absl")
    ds = data.make_datasets(data.DataConfig(problem="folder", data_dir=str(image_folder),
                                            image_size=8, n_test=2, dal=0, global_batch_train=4,
                                            global_batch_test=10, init_batch=6))
    assert "skipped 2 of 10 image files that could not be decoded" in caplog.text
    assert "corrupt.png" in caplog.text and "truncated.png" in caplog.text
    assert "1 images directly in the folder ignored" in caplog.text
    assert (ds.info.n_y, ds.info.n_train, ds.info.n_test, ds.info.image_size) == (2, 6, 2, 8)
    train_x, train_y = batches_of(ds.train, 3)
    test_x, test_y = batches_of(ds.test)
    assert_batch(train_x, train_y, 12, 8, 2)
    assert_batch(test_x, test_y, 2, 8, 2)
    images = np.concatenate([train_x[:6], test_x])
    labels = np.concatenate([train_y[:6], test_y])
    assert sorted(labels.tolist()) == [0, 0, 0, 0, 0, 1, 1, 1]
    dogs = {int(img[0, 0, 0]): img for img in images[labels == 1]}
    assert sorted(dogs) == [50, 100, 200]
    for value in (100, 200):  # RGBA alpha dropped, grayscale replicated, upscaled 16 -> 8
        np.testing.assert_array_equal(dogs[value], value)


def test_folder_without_sub_folders_is_one_class(tmp_path):
    for i in range(20):
        save(tmp_path / f"{i:02d}.jpeg", np.full([12, 12, 3], i * 10, np.uint8), format="JPEG")
    ds = data.make_datasets(data.DataConfig(problem="folder", data_dir=str(tmp_path),
                                            image_size=8, init_batch=4, global_batch_train=4))
    assert (ds.info.n_y, ds.info.n_train, ds.info.n_test) == (1, 18, 2)  # fixed 10% held out
    x, y = batches_of(ds.test)
    assert set(y.tolist()) == {0} and x.shape == (2, 8, 8, 3)


def test_folder_split_is_fixed_whatever_the_seed(tmp_path):
    for i in range(20):
        save(tmp_path / f"{i:02d}.png", np.full([8, 8, 3], i, np.uint8))
    held_out = [batches_of(data.make_datasets(data.DataConfig(
        problem="folder", data_dir=str(tmp_path), image_size=8, seed=seed,
        init_batch=4)).test)[0][:, 0, 0, 0].tolist() for seed in (0, 1)]
    assert held_out[0] == held_out[1]


@pytest.mark.parametrize("files, message", [
    ({}, "no images"),
    ({"a.txt": b"text"}, "no images"),
    ({"a.png": b"garbage", "b.jpg": b"garbage"}, "0 readable images of 2"),
])
def test_folder_without_usable_images_is_an_error(tmp_path, files, message):
    for name, content in files.items():
        write_file(tmp_path / name, content)
    with pytest.raises(data.DataError, match=message):
        data.make_datasets(data.DataConfig(problem="folder", data_dir=str(tmp_path)))


# --- the original's tfrecords -----------------------------------------------------------------

def int64s(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def write_tfrecords(root, split, images, labels, shards, log2_size, attr=True):
    """The original's layout and features (generate_tfr/generate.py's TFRecordExporter)."""
    folder = os.path.join(root, split)
    os.makedirs(folder, exist_ok=True)
    for shard in range(shards):
        path = os.path.join(folder, f"{split}-r{log2_size:02d}-s-{shard:04d}-of-{shards:04d}"
                                    f".tfrecords")
        with tf.io.TFRecordWriter(path) as writer:
            for image, label in list(zip(images, labels))[shard::shards]:
                feature = {"shape": int64s(image.shape),
                           "data": tf.train.Feature(bytes_list=tf.train.BytesList(
                               value=[image.tobytes()])),
                           "label": int64s([label])}
                if attr:
                    feature["attr"] = int64s(np.arange(40) % 2)
                writer.write(tf.train.Example(features=tf.train.Features(
                    feature=feature)).SerializeToString())
    return folder


@pytest.fixture
def celeba_tfrecords(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, [30, 8, 8, 3], np.uint8)
    write_tfrecords(tmp_path, "train", images[:20], np.zeros(20, int), shards=3, log2_size=3)
    write_tfrecords(tmp_path, "validation", images[20:], np.zeros(10, int), shards=1,
                    log2_size=3)
    return tmp_path, images


def test_original_tfrecords_celeba(celeba_tfrecords):
    root, images = celeba_tfrecords
    ds = data.make_datasets(data.DataConfig(problem="celeba", data_dir=str(root), image_size=8,
                                            global_batch_train=8, global_batch_test=4, init_batch=5))
    info = ds.info
    assert (info.n_y, info.n_test, info.n_train, info.image_size) == (1, 3000, 50000, 8)
    assert "the original's tfrecords" in info.source
    test_x, test_y = batches_of(ds.test)
    np.testing.assert_array_equal(test_x, images[20:])  # one shard: stored order, no shuffle
    train_x, train_y = batches_of(ds.train, 5)  # 40 = two epochs of 20
    assert_batch(train_x, train_y, 40, 8, 1)
    stored = sorted(map(bytes, images[:20]))
    assert sorted(map(bytes, train_x[:20])) == stored  # first epoch: every image once
    assert ds.init_batch[0].shape == (5, 8, 8, 3)


def test_tfrecords_iterator_checkpoint_resumes(celeba_tfrecords, tmp_path_factory):
    root, _ = celeba_tfrecords

    def train():
        return data.make_datasets(data.DataConfig(problem="celeba", data_dir=str(root),
                                                  image_size=8, global_batch_train=4,
                                                  init_batch=4)).train
    iterator = iter(train())
    next(iterator), next(iterator)
    path = tf.train.Checkpoint(iterator=iterator).save(
        str(tmp_path_factory.mktemp("ckpt") / "ckpt"))
    expected = [next(iterator)[0].numpy() for _ in range(4)]
    fresh = iter(train())
    tf.train.Checkpoint(iterator=fresh).restore(path)
    for want in expected:
        np.testing.assert_array_equal(next(fresh)[0].numpy(), want)


def test_tfrecords_lsun_realnvp_random_crops_with_category(tmp_path):
    rng = np.random.default_rng(2)
    stored = rng.integers(0, 256, [12, 12, 16, 3], np.uint8)  # shortest side > image size
    root = tmp_path / "tower"
    write_tfrecords(root, "train", stored[:8], np.zeros(8, int), 2, log2_size=3, attr=False)
    write_tfrecords(root, "validation", stored[8:], np.zeros(4, int), 1, log2_size=3,
                    attr=False)
    ds = data.make_datasets(data.DataConfig(problem="lsun_realnvp", data_dir=str(tmp_path),
                                            category="tower", image_size=8, global_batch_test=4,
                                            init_batch=4, global_batch_train=4))
    assert ds.info.n_test == 300
    first, second = batches_of(ds.test)[0], batches_of(ds.test)[0]
    np.testing.assert_array_equal(first, second)  # held-out crops are fixed
    for crop, image in zip(first, stored[8:]):
        windows = [image[r:r + 8, c:c + 8] for r in range(5) for c in range(9)]
        assert any(np.array_equal(crop, w) for w in windows)


def test_tfrecords_grayscale_records_are_tiled(tmp_path):
    gray = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1)
    write_tfrecords(tmp_path, "train", gray, [3, 7], 1, log2_size=2)
    write_tfrecords(tmp_path, "validation", gray, [3, 7], 1, log2_size=2)
    ds = data.make_datasets(data.DataConfig(problem="imagenet", data_dir=str(tmp_path),
                                            image_size=4, init_batch=2))
    x, y = batches_of(ds.test)
    np.testing.assert_array_equal(x, np.repeat(gray, 3, axis=-1))
    np.testing.assert_array_equal(y, [3, 7])
    assert ds.info.n_y == 1000


@pytest.mark.parametrize("fault, message", [
    ("missing_shard", "2 of the 3 shards"),
    ("wrong_size", "first record is 4x4, expected 8x8"),
    ("bad_label", r"label \[1\] is not one int in \[0, 1\)"),
    ("wrong_resolution", "no tfrecords matching validation-r03"),
    ("two_channels", "first record has 2 channels"),
])
def test_tfrecords_faults_name_the_file(tmp_path, fault, message):
    image = np.zeros([1, 8, 8, 3], np.uint8)
    write_tfrecords(tmp_path, "train", image, [0], 1, log2_size=3)
    folder = write_tfrecords(tmp_path, "validation", np.repeat(image, 3, 0), [0] * 3, 3, 3)
    if fault == "missing_shard":
        os.remove(os.path.join(folder, "validation-r03-s-0001-of-0003.tfrecords"))
    elif fault == "wrong_resolution":
        for name in os.listdir(folder):
            os.rename(os.path.join(folder, name), os.path.join(folder, name.replace("r03", "r04")))
    else:
        for name in os.listdir(folder):
            os.remove(os.path.join(folder, name))
        wrong = {"wrong_size": np.zeros([1, 4, 4, 3], np.uint8),
                 "two_channels": np.zeros([1, 8, 8, 2], np.uint8)}.get(fault, image)
        write_tfrecords(tmp_path, "validation", wrong, [1], 1, log2_size=3)
    with pytest.raises(data.DataError, match=message) as error:
        data.make_datasets(data.DataConfig(problem="celeba", data_dir=str(tmp_path),
                                           image_size=8))
    assert os.path.join(str(tmp_path), "validation") in str(error.value)


def test_tfrecords_later_bad_record_stops_with_its_file_name(tmp_path):
    good, bad = np.zeros([8, 8, 3], np.uint8), np.zeros([4, 4, 3], np.uint8)
    write_tfrecords(tmp_path, "train", [good], [0], 1, log2_size=3)
    shard = os.path.join(tmp_path, "validation", "validation-r03-s-0000-of-0001.tfrecords")
    for images, labels, message in (([good, bad], [0, 0], "expected every record's image 8x8, got one 4x4"),
                                    ([good, good], [0, 3], r"expected labels in \[0, 1\), got 3")):
        write_tfrecords(tmp_path, "validation", images, labels, 1, log2_size=3)
        ds = data.make_datasets(data.DataConfig(problem="celeba", data_dir=str(tmp_path), image_size=8,
                                                init_batch=1))
        with pytest.raises(data.DataError, match=f"^{shard}: {message}$"):
            with ds.reading():
                batches_of(ds.test)


@pytest.mark.parametrize("damage, message", [
    ("cut short", "{shard}: expected whole tfrecords, got a file cut short or damaged: record 8 (from 1) ends at "
                  "byte {end}, the file has {size} bytes (copy the file again)"),
    ("a byte flipped", "the original's tfrecords in {root} (train / validation): a file is damaged (corrupted "
                       "record at 12), and TensorFlow's reader does not say which"),
])
def test_a_damaged_tfrecords_shard_is_a_data_error(tmp_path, damage, message):
    images = np.random.default_rng(3).integers(0, 256, [18, 8, 8, 3], np.uint8)
    folder = write_tfrecords(tmp_path, "train", images[:16], [0] * 16, 2, log2_size=3)
    write_tfrecords(tmp_path, "validation", images[16:], [0] * 2, 1, log2_size=3)
    shard = os.path.join(folder, "train-r03-s-0001-of-0002.tfrecords")
    size, end = os.path.getsize(shard), os.path.getsize(shard)
    if damage == "cut short":  # in its last record: the first record, read when the data load, is whole
        size -= 100
        os.truncate(shard, size)
    else:
        with open(shard, "r+b") as f:
            f.seek(20)
            f.write(bytes([f.read(1)[0] ^ 0xFF]))
    config = data.DataConfig(problem="celeba", data_dir=str(tmp_path), image_size=8, global_batch_train=4,
                             init_batch=2, dal=0)
    expected = message.format(shard=shard, end=end, size=size, root=tmp_path)
    with pytest.raises(data.DataError) as error:
        ds = data.make_datasets(config)  # the first record of the split, then its first batches
        with ds.reading():
            batches_of(ds.train, 8)
    assert str(error.value) == expected


def test_a_training_run_that_meets_a_shard_cut_short_stops_with_one_line(tmp_path):
    images = np.random.default_rng(4).integers(0, 256, [40, 8, 8, 3], np.uint8)
    folder = write_tfrecords(tmp_path / "data", "train", images[:32], [0] * 32, 2, log2_size=3)
    write_tfrecords(tmp_path / "data", "validation", images[32:], [0] * 8, 1, log2_size=3)
    shard = os.path.join(folder, "train-r03-s-0001-of-0002.tfrecords")
    os.truncate(shard, os.path.getsize(shard) - 100)  # its last record: met in the first epoch, not at load
    command = [sys.executable, os.path.join(REPO_ROOT, "train.py"), "--problem", "celeba", "--data_dir",
               str(tmp_path / "data"), "--image_size", "8", "--n_levels", "1", "--depth", "1", "--width", "4",
               "--n_batch_train", "4", "--n_batch_init", "4", "--n_train", "32", "--epochs_warmup", "0",
               "--nojit_compile", "--noexport", "--logdir", str(tmp_path / "run")]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"train.py: error: {shard}: expected whole tfrecords, got a file cut short or damaged: record 16 (from 1) ")


# --- tfds (mocked) ----------------------------------------------------------------------------

TFDS_CASES = [  # problem, extra config, n_y, labelled
    ("mnist", {}, 10, True),
    ("cifar10", {}, 10, True),
    ("imagenet-oord", dict(image_size=32), 1000, False),
    ("imagenet", dict(image_size=16), 1000, True),
    ("celeba", dict(image_size=16), 1, False),
    ("lsun", dict(category="tower", image_size=16), 1, False),
    ("lsun_realnvp", dict(category="bedroom", image_size=16), 1, False),
]


@pytest.mark.parametrize("problem, extra, n_y, labelled", TFDS_CASES)
def test_tfds_sources(tmp_path, problem, extra, n_y, labelled):
    with tfds.testing.mock_data(num_examples=12):
        ds = data.make_datasets(data.DataConfig(problem=problem, data_dir=str(tmp_path),
                                                global_batch_train=8, global_batch_test=5,
                                                init_batch=10, **extra))
        size = ds.info.image_size
        assert size == extra.get("image_size", 32)
        assert (ds.info.n_y, ds.info.n_test, ds.info.n_train) == (n_y, 12, 12)
        assert "tfds" in ds.info.source
        x, y = next(ds.train.as_numpy_iterator())
        assert_batch(x, y, 8, size, n_y)
        test_x, test_y = batches_of(ds.test)
        assert_batch(test_x, test_y, 12, size, n_y)
        assert ds.init_batch[0].shape == (10, size, size, 3)
        assert labelled or set(np.concatenate([y, test_y]).tolist()) == {0}
        if problem == "mnist":  # the original's 'minimum' padding (rows first), tiled
            digits = test_x[:, 2:30, 2:30, 0]
            np.testing.assert_array_equal(test_x[:, 0, 2:30, 0], digits.min(axis=1))
            np.testing.assert_array_equal(test_x[..., 0], test_x[..., 2])


def test_tfds_absent_data_is_a_clear_error_without_download(tmp_path):
    for problem, extra, hint in [("cifar10", {}, "tfds build cifar10"),
                                 ("mnist", {}, "MNIST idx files"),
                                 ("celeba", dict(image_size=64), "the original's tfrecords"),
                                 ("imagenet-oord", {}, "downsampled_imagenet/64x64")]:
        with pytest.raises(data.DataError, match="never downloads") as error:
            data.make_datasets(data.DataConfig(problem=problem, data_dir=str(tmp_path), **extra))
        assert hint in str(error.value) and "--data_dir" in str(error.value)
    assert os.listdir(tmp_path) == []  # nothing downloaded, nothing prepared


def test_tfds_argument_errors(tmp_path):
    with pytest.raises(data.DataError, match="--category is required"):
        data.make_datasets(data.DataConfig(problem="lsun", data_dir=str(tmp_path)))
    with pytest.raises(data.DataError, match="32x32 and 64x64 only"):
        data.make_datasets(data.DataConfig(problem="imagenet-oord", image_size=128))

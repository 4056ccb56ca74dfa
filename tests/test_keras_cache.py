"""mnist and cifar10 from the files the original's keras.datasets left on disk, in exactly their
formats (built small here): pixels and labels round-trip, splits are Keras', errors are clear,
and an mnist run from a Keras mnist.npz trains."""
import io
import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from conftest import REPO_ROOT, read_json_lines
from glow_tf import data
from glow_tf.data import keras_cache


@pytest.fixture(autouse=True)
def _empty_keras_home(tmp_path, monkeypatch):
    """No test sees the user's ~/.keras: KERAS_HOME is an empty folder unless a test fills it."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))


def original_mnist_images(digits):
    """The original's get_mnist_cifar.py: 'minimum' padding to 32x32, tiled to 3 channels."""
    padded = np.pad(digits, ((0, 0), (2, 2), (2, 2)), "minimum")
    return np.tile(np.reshape(padded, (-1, 32, 32, 1)), (1, 1, 1, 3))


def write_mnist_npz(folder, n_train=30, n_test=12):
    """mnist.npz as keras.datasets.mnist downloads it; returns its arrays."""
    rng = np.random.default_rng(0)
    arrays = dict(x_train=rng.integers(0, 256, [n_train, 28, 28], np.uint8),
                  y_train=(np.arange(n_train) % 10).astype(np.uint8),
                  x_test=rng.integers(1, 256, [n_test, 28, 28], np.uint8),
                  y_test=(np.arange(n_test)[::-1] % 10).astype(np.uint8))
    arrays["x_test"][3, 5, 7] = 0  # a known pixel, and a 'minimum' pad value for image 3
    os.makedirs(folder, exist_ok=True)
    np.savez(os.path.join(folder, "mnist.npz"), **arrays)
    return arrays


def cifar_batches(n_per_batch=4, n_test=3):
    """{name: dict} of CIFAR-10 batches as the real pickles: bytes keys, data uint8 [N, 3072]."""
    rng = np.random.default_rng(1)
    sizes = {**{f"data_batch_{i}": n_per_batch for i in range(1, 6)}, "test_batch": n_test}
    return {name: {b"batch_label": name.encode(), b"data": rng.integers(0, 256, [n, 3072], np.uint8),
                   b"labels": [int(v) for v in rng.integers(0, 10, n)]} for name, n in sizes.items()}


def write_cifar_folder(folder, batches):
    os.makedirs(folder, exist_ok=True)
    for name, batch in batches.items():
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(batch, f, protocol=2)  # the real files' protocol
    return folder


def write_cifar_archive(path, batches):
    """cifar-10-python.tar.gz as Toronto serves it: members cifar-10-batches-py/<batch>."""
    with tarfile.open(path, "w:gz") as archive:
        for name, batch in batches.items():
            content = pickle.dumps(batch, protocol=2)
            member = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            member.size = len(content)
            archive.addfile(member, io.BytesIO(content))
    return path


def channel_major_pixels(raw):
    """[N, 3072] rows -> [N, 32, 32, 3] by the format's rule: value (r, c, ch) at ch*1024 + r*32 + c."""
    rows, cols, channels = np.indices([32, 32, 3])
    return raw[:, channels * 1024 + rows * 32 + cols]


def assert_cifar_source(source, batches):
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    np.testing.assert_array_equal(source.train.images, channel_major_pixels(np.concatenate([b[b"data"] for b in train])))
    np.testing.assert_array_equal(source.train.labels, np.concatenate([b[b"labels"] for b in train]))
    np.testing.assert_array_equal(source.test.images, channel_major_pixels(batches["test_batch"][b"data"]))
    np.testing.assert_array_equal(source.test.labels, batches["test_batch"][b"labels"])
    # Image 1 of data_batch_3 is train image 9; its pixel (row 5, column 7), red, green, blue.
    raw = batches["data_batch_3"][b"data"][1]
    assert source.train.images[9, 5, 7].tolist() == [raw[5 * 32 + 7], raw[1024 + 5 * 32 + 7], raw[2048 + 5 * 32 + 7]]
    assert source.train.images.dtype == np.uint8 and source.train.labels.dtype == np.int32
    assert (source.n_y, source.image_size) == (10, 32)


# ----------------------------------------------------------------------------------- mnist
def test_keras_mnist_npz_in_data_dir_gives_the_originals_images_and_split(tmp_path):
    arrays = write_mnist_npz(tmp_path)
    ds = data.make_datasets(data.DataConfig(problem="mnist", data_dir=str(tmp_path), dal=0, global_batch_train=8,
                                            global_batch_test=5, init_batch=4))
    assert (ds.info.n_train, ds.info.n_test, ds.info.image_size, ds.info.n_y) == (30, 12, 32, 10)
    assert "Keras" in ds.info.source and "train 30 / held out test 12" in ds.info.source
    pairs = list(ds.test.as_numpy_iterator())  # the held-out split, in file order
    x, y = np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
    np.testing.assert_array_equal(x, original_mnist_images(arrays["x_test"]))
    np.testing.assert_array_equal(y, arrays["y_test"])
    assert x[3, 7, 9].tolist() == [0, 0, 0] and x[3, 0, 9, 0] == 0  # x_test[3, 5, 7] = 0, padded by 2
    source = keras_cache.load("mnist", keras_cache.find("mnist", str(tmp_path)))
    np.testing.assert_array_equal(source.train.images, original_mnist_images(arrays["x_train"]))
    np.testing.assert_array_equal(source.train.labels, arrays["y_train"])


def test_keras_mnist_is_read_from_the_keras_cache_without_data_dir(tmp_path):
    arrays = write_mnist_npz(tmp_path / "keras_home" / "datasets")
    ds = data.make_datasets(data.DataConfig(problem="mnist", dal=0, global_batch_train=8, global_batch_test=12,
                                            init_batch=4))
    assert str(tmp_path / "keras_home" / "datasets" / "mnist.npz") in ds.info.source
    x, y = next(ds.test.as_numpy_iterator())
    np.testing.assert_array_equal(x, original_mnist_images(arrays["x_test"]))
    np.testing.assert_array_equal(y, arrays["y_test"])


def test_a_bad_mnist_npz_is_a_clear_error(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros([2, 28, 28], np.uint8), y_train=np.zeros(2, np.uint8))
    with pytest.raises(data.DataError, match=r"mnist.npz: missing arrays \['x_test', 'y_test'\]"):
        data.make_datasets(data.DataConfig(problem="mnist", data_dir=str(tmp_path)))
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros([2, 28, 27], np.uint8), y_train=np.zeros(2, np.uint8),
             x_test=np.zeros([1, 28, 28], np.uint8), y_test=np.zeros(1, np.uint8))
    with pytest.raises(data.DataError, match=r"x_train: expected uint8 images \[N, 28, 28\], got uint8 \[2, 28, 27\]"):
        data.make_datasets(data.DataConfig(problem="mnist", data_dir=str(tmp_path)))
    (tmp_path / "mnist.npz").write_bytes(b"not an npz")
    with pytest.raises(data.DataError, match="mnist.npz: cannot read it as Keras' mnist.npz"):
        data.make_datasets(data.DataConfig(problem="mnist", data_dir=str(tmp_path)))


# --------------------------------------------------------------------------------- cifar10
def test_keras_cifar10_batches_folder_in_data_dir(tmp_path):
    batches = cifar_batches()
    write_cifar_folder(tmp_path / "cifar-10-batches-py", batches)
    ds = data.make_datasets(data.DataConfig(problem="cifar10", data_dir=str(tmp_path), dal=0, global_batch_train=4,
                                            global_batch_test=3, init_batch=4))
    assert (ds.info.n_train, ds.info.n_test, ds.info.image_size, ds.info.n_y) == (20, 3, 32, 10)
    assert "train data_batch_1..5 20 / held out test_batch 3" in ds.info.source
    x, y = next(ds.test.as_numpy_iterator())
    np.testing.assert_array_equal(x, channel_major_pixels(batches["test_batch"][b"data"]))
    np.testing.assert_array_equal(y, batches["test_batch"][b"labels"])
    assert_cifar_source(keras_cache.load("cifar10", keras_cache.find("cifar10", str(tmp_path))), batches)


@pytest.mark.parametrize("layout", ["cifar-10-python.tar.gz", "cifar-10-batches-py.tar.gz", "keras 3 folder",
                                    "the folder itself"])
def test_keras_cifar10_in_every_layout(tmp_path, layout):
    batches, folder = cifar_batches(), str(tmp_path)
    if layout.endswith(".tar.gz"):
        write_cifar_archive(tmp_path / layout, batches)
    elif layout == "keras 3 folder":
        write_cifar_folder(tmp_path / "cifar-10-batches-py-target" / "cifar-10-batches-py", batches)
    else:
        write_cifar_folder(tmp_path, batches)
    assert_cifar_source(keras_cache.load("cifar10", keras_cache.find("cifar10", folder)), batches)


def test_keras_cifar10_is_read_from_the_keras_cache_without_data_dir(tmp_path):
    batches = cifar_batches()
    os.makedirs(tmp_path / "keras_home" / "datasets")
    write_cifar_archive(tmp_path / "keras_home" / "datasets" / "cifar-10-batches-py.tar.gz", batches)
    ds = data.make_datasets(data.DataConfig(problem="cifar10", dal=0, global_batch_train=4, global_batch_test=3,
                                            init_batch=4))
    assert "keras_home" in ds.info.source
    x, _ = next(ds.test.as_numpy_iterator())
    np.testing.assert_array_equal(x, channel_major_pixels(batches["test_batch"][b"data"]))


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_bad_cifar10_batches_are_clear_errors_and_run_no_code(tmp_path):
    batches = cifar_batches()
    folder = write_cifar_folder(tmp_path / "cifar-10-batches-py", {k: v for k, v in batches.items()
                                                                   if k != "test_batch"})
    with pytest.raises(data.DataError, match=r"missing CIFAR-10 batches \['test_batch'\]"):
        keras_cache.load("cifar10", keras_cache.find("cifar10", str(tmp_path)))
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": []}))
    with pytest.raises(data.DataError, match="test_batch: not a pickled CIFAR-10 batch .*refusing to load"):
        keras_cache.load("cifar10", str(folder))
    assert not os.path.exists("pwned") and not os.path.exists(folder / "pwned")
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros([2, 1024], np.uint8), b"labels": [0, 1]}))
    with pytest.raises(data.DataError, match=r"b'data': expected uint8 \[N, 3072\], got uint8 \[2, 1024\]"):
        keras_cache.load("cifar10", str(folder))
    (folder / "test_batch").write_bytes(pickle.dumps({"data": 1}))
    with pytest.raises(data.DataError, match=r"expected a dict with keys b'data' and b'labels', got keys \['data'\]"):
        keras_cache.load("cifar10", str(folder))
    (tmp_path / "broken.tar.gz").write_bytes(b"\x1f\x8b truncated")
    with pytest.raises(data.DataError, match="broken.tar.gz: cannot read it as a CIFAR-10 tar.gz archive"):
        keras_cache.load("cifar10", str(tmp_path / "broken.tar.gz"))


@pytest.mark.parametrize("problem, expected", [
    ("mnist", ["MNIST idx files", "mnist.npz (x_train, y_train, x_test, y_test)"]),
    ("cifar10", ["data_batch_1..5 and test_batch", "cifar-10-batches-py/", "cifar-10-python.tar.gz"]),
])
def test_absent_data_names_the_keras_files_and_the_keras_cache(tmp_path, problem, expected):
    with pytest.raises(data.DataError, match="never downloads") as error:
        data.make_datasets(data.DataConfig(problem=problem, data_dir=str(tmp_path)))
    message = str(error.value)
    for fragment in expected + ["--data_dir", f"Keras cache {tmp_path / 'keras_home' / 'datasets'}"]:
        assert fragment in message


# ------------------------------------------------------------------------------- a training run
def test_an_mnist_run_from_a_keras_mnist_npz_trains(tmp_path):
    write_mnist_npz(tmp_path / "data", n_train=48, n_test=10)
    logdir = tmp_path / "logs"
    command = [sys.executable, os.path.join(REPO_ROOT, "train.py"), "--problem", "mnist", "--data_dir",
               str(tmp_path / "data"), "--logdir", str(logdir), "--n_level", "2", "--depth", "1", "--width", "8",
               "--n_batch_train", "8", "--n_batch_init", "16", "--n_train", "24", "--nojit_compile",
               "--max_steps", "3", "--noexport", "--log_steps"]  # --n_level: the original README's spelling
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    hps, steps = read_json_lines(logdir / "train_steps.txt")
    assert hps["n_levels"] == 2 and hps["problem"] == "mnist"
    assert [s["step"] for s in steps] == [0, 1, 2] and all(s["ok"] and np.isfinite(s["loss"]) for s in steps)
    _, epochs = read_json_lines(logdir / "train.txt")  # 24 images of 8 per step: epoch 1 is 3 steps
    assert [e["epoch"] for e in epochs] == [1]
    _, tests = read_json_lines(logdir / "test.txt")  # the end-of-run test pass over the 10 held out
    assert len(tests) == 1 and np.isfinite(float(tests[0]["bits_x"]))

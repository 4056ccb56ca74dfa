"""mnist and cifar10 as the original's keras.datasets loaders left them on disk, read offline.

The original loaded both with ``keras.datasets.{mnist,cifar10}.load_data()``, which download
once into the Keras cache, so its users already hold these files; glow_tf reads them without
Keras and never downloads.

Where: ``--data_dir`` when given, else the Keras cache ``$KERAS_HOME/datasets`` (``KERAS_HOME``
defaults to ``~/.keras``, as in Keras' ``get_file``).

Files:
  * mnist: ``mnist.npz`` with ``x_train`` uint8 [N, 28, 28], ``y_train`` [N], ``x_test`` and
    ``y_test`` (60,000 / 10,000 in the real file). Padded to 32x32 ('minimum') and tiled to
    3 channels, as the original (and glow_tf's idx reader).
  * cifar10: the pickled batches ``data_batch_1`` .. ``data_batch_5`` (train, in that order)
    and ``test_batch`` (held out), 50,000 / 10,000 images in the real files, taken from the
    first of: ``cifar-10-batches-py/`` (where Keras 2 extracts them),
    ``cifar-10-batches-py-target/cifar-10-batches-py/`` (Keras 3), the folder itself, the
    archives ``cifar-10-python.tar.gz`` (Toronto's download) or ``cifar-10-batches-py.tar.gz``
    (Keras 2's copy of it), read without extracting. Each batch is a dict with bytes keys:
    ``b"data"``, uint8 [N, 3072] channel-major (1,024 red values, then green, then blue, each
    32x32 row-major), and ``b"labels"``, N ints in [0, 10).
Splits are Keras', and so the original's: train / test, in file order.

Loading a pickle can run code, and these files may come from anywhere, so they are read with
an unpickler that builds numpy arrays and plain Python data only.
"""
import io
import os
import pickle
import tarfile
import zipfile
import zlib
from typing import Optional

import numpy as np

from glow_tf.data import images as image_ops
from glow_tf.data.errors import DataError
from glow_tf.data.source import ArraySplit, Source, check_labels

PROBLEMS = ("mnist", "cifar10")
MNIST_FILE = "mnist.npz"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"
CIFAR_FOLDERS = ("cifar-10-batches-py", os.path.join("cifar-10-batches-py-target", "cifar-10-batches-py"),
                 "")
CIFAR_ARCHIVES = ("cifar-10-python.tar.gz", "cifar-10-batches-py.tar.gz")
EXPECTED = {
    "mnist": f"Keras' {MNIST_FILE} (x_train, y_train, x_test, y_test)",
    "cifar10": "Keras' CIFAR-10 batches data_batch_1..5 and test_batch (in cifar-10-batches-py/, or "
               "in cifar-10-python.tar.gz or cifar-10-batches-py.tar.gz)",
}

_CIFAR_BATCHES = CIFAR_TRAIN_BATCHES + (CIFAR_TEST_BATCH,)
_CIFAR_SIZE = 32
# What numpy arrays (and bytes, at pickle protocol 2) need to be rebuilt from a pickle.
_ARRAY_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
                  ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                  ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}


def cache_dir() -> str:
    """Where keras.datasets keeps its downloads: $KERAS_HOME/datasets, KERAS_HOME ~/.keras."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "datasets")


def not_found_hint(problem: str) -> str:
    """Where this module looks for ``problem``'s files, for the error when none are found."""
    return (f"or pass --data_dir holding {EXPECTED[problem]}, or leave --data_dir out and put them "
            f"in the Keras cache {cache_dir()} (where the original's keras.datasets downloaded them)")


def find(problem: str, folder: str) -> Optional[str]:
    """The path of ``problem``'s Keras files in ``folder`` (the module's rules), or None."""
    if problem == "mnist":
        candidates = [os.path.join(folder, MNIST_FILE)]
    else:
        folders = [os.path.normpath(os.path.join(folder, sub)) for sub in CIFAR_FOLDERS]
        candidates = [f for f in folders if any(os.path.isfile(os.path.join(f, b)) for b in _CIFAR_BATCHES)]
        candidates += [os.path.join(folder, archive) for archive in CIFAR_ARCHIVES]
    return next((path for path in candidates if os.path.exists(path)), None)


def load(problem: str, path: str) -> Source:
    """The source from ``find``'s path; DataError naming the file when it is not as expected."""
    return _load_mnist(path) if problem == "mnist" else _load_cifar10(path)


def _load_mnist(path: str) -> Source:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: cannot read it as {EXPECTED['mnist']} ({e})") from None
    missing = [key for key in ("x_train", "y_train", "x_test", "y_test") if key not in arrays]
    if missing:
        raise DataError(f"{path}: missing arrays {missing} (expected {EXPECTED['mnist']})")
    splits = [_mnist_split(path, arrays, split) for split in ("train", "test")]
    (train_digits, train_labels), (test_digits, test_labels) = splits
    description = f"Keras {path}: train {len(train_labels):,} / held out test {len(test_labels):,}"
    return Source(train=ArraySplit(image_ops.pad_and_tile_mnist(train_digits), train_labels),
                  test=ArraySplit(image_ops.pad_and_tile_mnist(test_digits), test_labels),
                  n_y=10, image_size=32, description=description)


def _mnist_split(path, arrays, split):
    """(digits uint8 [N, 28, 28], labels int32 [N]) of ``split``, checked."""
    digits, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
    if digits.dtype != np.uint8 or digits.ndim != 3 or digits.shape[1:] != (28, 28):
        raise DataError(f"{path}: x_{split}: expected uint8 images [N, 28, 28], got {digits.dtype} "
                        f"{list(digits.shape)}")
    if labels.size != len(digits):
        raise DataError(f"{path}: y_{split} has {labels.size} labels for {len(digits)} images")
    return digits, check_labels(labels, 10, f"{path} y_{split}")


def _load_cifar10(path: str) -> Source:
    contents = _read_batches(path) if os.path.isdir(path) else _read_archive(path)
    missing = [name for name in _CIFAR_BATCHES if name not in contents]
    if missing:
        raise DataError(f"{path}: missing CIFAR-10 batches {missing} (expected {EXPECTED['cifar10']})")
    train = [_cifar_batch(os.path.join(path, name), contents[name]) for name in CIFAR_TRAIN_BATCHES]
    images, labels = (np.concatenate(arrays) for arrays in zip(*train))
    test = ArraySplit(*_cifar_batch(os.path.join(path, CIFAR_TEST_BATCH), contents[CIFAR_TEST_BATCH]))
    description = (f"Keras CIFAR-10 batches in {path}: train data_batch_1..5 {len(labels):,} / "
                   f"held out test_batch {test.num_examples:,}")
    return Source(train=ArraySplit(images, labels), test=test, n_y=10, image_size=_CIFAR_SIZE,
                  description=description)


def _read_batches(folder):
    """{batch name: bytes} of the CIFAR batch files present in ``folder``."""
    contents = {}
    for name in _CIFAR_BATCHES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            try:
                with open(path, "rb") as f:
                    contents[name] = f.read()
            except OSError as e:
                raise DataError(f"{path}: cannot read CIFAR-10 batch ({e.strerror})") from None
    return contents


def _read_archive(path):
    """{batch name: bytes} of the CIFAR batches in the tar.gz ``path``, found by base name."""
    try:
        with tarfile.open(path, "r:gz") as archive:
            return {os.path.basename(member.name): archive.extractfile(member).read()
                    for member in archive.getmembers()
                    if member.isfile() and os.path.basename(member.name) in _CIFAR_BATCHES}
    except (OSError, EOFError, tarfile.TarError, zlib.error) as e:
        raise DataError(f"{path}: cannot read it as a CIFAR-10 tar.gz archive ({e})") from None


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and plain Python data only: a crafted pickle cannot call anything."""

    def find_class(self, module, name):
        if (module, name) not in _ARRAY_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (a CIFAR-10 batch holds "
                                         "only numpy arrays, lists, bytes and ints)")
        return super().find_class(module, name)


def _cifar_batch(where, content):
    """(images uint8 [N, 32, 32, 3], labels int32 [N]) of one pickled batch, checked."""
    try:
        batch = _ArrayUnpickler(io.BytesIO(content), encoding="bytes").load()
    except Exception as e:  # pickle's errors are open-ended (EOFError, IndexError, ... per its docs)
        raise DataError(f"{where}: not a pickled CIFAR-10 batch ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        seen = f"keys {sorted(batch, key=repr)}" if isinstance(batch, dict) else f"a {type(batch).__name__}"
        raise DataError(f"{where}: expected a dict with keys b'data' and b'labels', got {seen}")
    data, labels = batch[b"data"], np.asarray(batch[b"labels"])
    n_values = 3 * _CIFAR_SIZE * _CIFAR_SIZE
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape[1:] != (n_values,):
        seen = f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{where}: b'data': expected uint8 [N, {n_values}], got {seen}")
    if labels.size != len(data):
        raise DataError(f"{where}: b'labels' has {labels.size} labels for {len(data)} images")
    images = data.reshape(-1, 3, _CIFAR_SIZE, _CIFAR_SIZE).transpose(0, 2, 3, 1)  # [N, 32, 32, 3]
    return np.ascontiguousarray(images), check_labels(labels, 10, f"{where} b'labels'")

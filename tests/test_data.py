"""Tests of glow_tf.data: the pipeline contract, digits, real MNIST, augmentation, determinism,
checkpointed resume and multi-replica batching. Per-source edge cases: test_data_sources.py."""
import gzip
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from glow_tf import data
from glow_tf.data import augment
from glow_tf.model import reduce_bits

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_DIR = os.path.join(REPO, "..", "shared", "data", "mnist")
needs_mnist = pytest.mark.skipif(
    not os.path.isfile(os.path.join(MNIST_DIR, "t10k-images-idx3-ubyte.gz")),
    reason="../shared absent")


def first_batches(dataset, n):
    return [tuple(t.numpy() for t in batch) for batch in dataset.take(n)]


# --- config ---------------------------------------------------------------------------------

def test_problem_defaults_are_the_originals():
    # train.py's get_data(): image_size, n_test (lsun: 300 per worker) and n_y per problem.
    original_image_size = {'mnist': 32, 'cifar10': 32, 'imagenet-oord': 64, 'imagenet': 256,
                           'celeba': 256, 'lsun_realnvp': 64, 'lsun': 256}
    original_n_test = {'mnist': 10000, 'cifar10': 10000, 'imagenet-oord': 50000,
                       'imagenet': 50000, 'celeba': 3000, 'lsun_realnvp': 300, 'lsun': 300}
    original_n_y = {'mnist': 10, 'cifar10': 10, 'imagenet-oord': 1000, 'imagenet': 1000,
                    'celeba': 1, 'lsun_realnvp': 1, 'lsun': 1}
    for problem, size in original_image_size.items():
        defaults = data.PROBLEM_DEFAULTS[problem]
        assert (defaults.image_size, defaults.n_test, defaults.n_y) == (
            size, original_n_test[problem], original_n_y[problem]), problem
    assert set(data.PROBLEMS) == set(original_image_size) | {"folder", "digits"}


@pytest.mark.parametrize("changes", [dict(problem="svhn"), dict(dal=3), dict(global_batch_train=0),
                                     dict(image_size=0), dict(n_test=-2), dict(seed=-1),
                                     dict(pmap=0), dict(n_train=1.5)])
def test_config_rejects_bad_values(changes):
    with pytest.raises(ValueError, match=f"DataConfig.{next(iter(changes))}"):
        data.DataConfig(**changes)


# --- digits: the contract on the offline default ---------------------------------------------

@pytest.fixture(scope="module")
def digits():
    return data.make_datasets(data.DataConfig(problem="digits", dal=0, init_batch=100))


def test_digits_contract(digits):
    info = digits.info
    assert (info.problem, info.image_size, info.n_channels, info.n_y) == ("digits", 16, 3, 10)
    assert (info.n_train, info.n_test) == (1500, 297)
    assert "scikit-learn digits" in info.source
    x, y = next(iter(digits.train))
    assert x.shape == (64, 16, 16, 3) and x.dtype == tf.uint8
    assert y.shape == (64,) and y.dtype == tf.int32
    assert digits.train.element_spec[0].shape == (64, 16, 16, 3)  # drop_remainder: static batch
    x = x.numpy()
    assert x.max() == 255 and x.min() == 0
    np.testing.assert_array_equal(x[..., 0], x[..., 2])  # tiled grayscale
    np.testing.assert_array_equal(x[:, 0::2, 0::2], x[:, 1::2, 1::2])  # 8x8 upscaled x2, nearest
    init_x, init_y = digits.init_batch
    assert isinstance(init_x, np.ndarray) and init_x.shape == (100, 16, 16, 3)
    assert init_x.dtype == np.uint8 and init_y.dtype == np.int32 and init_y.shape == (100,)


def test_digits_values_match_sklearn(digits):
    from sklearn.datasets import load_digits
    sk = load_digits()
    expected = np.round(sk.images[1500:] * 255 / 16).astype(np.uint8)  # held-out, 8x8
    x = np.concatenate([b[0] for b in first_batches(digits.test, 100)])
    y = np.concatenate([b[1] for b in first_batches(digits.test, 100)])
    np.testing.assert_array_equal(x[:, ::2, ::2, 1], expected)
    np.testing.assert_array_equal(y, sk.target[1500:])


def test_test_pass_is_one_ordered_pass_with_last_partial_batch():
    ds = data.make_datasets(data.DataConfig(problem="digits", n_test=100, global_batch_test=64))
    first_pass, second_pass = first_batches(ds.test, 10), first_batches(ds.test, 10)
    assert [x.shape[0] for x, _ in first_pass] == [64, 36]
    assert ds.info.n_test == 100
    for (x1, y1), (x2, y2) in zip(first_pass, second_pass):  # same order every pass
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_n_test_larger_than_held_out_split_is_an_error():
    with pytest.raises(data.DataError, match="n_test=500 but the held-out split has 297"):
        data.make_datasets(data.DataConfig(problem="digits", n_test=500))


def test_n_train_is_the_epoch_size_not_a_subset():
    ds = data.make_datasets(data.DataConfig(problem="digits", n_train=50000, init_batch=8))
    assert ds.info.n_train == 50000


def test_image_size_rules():
    ds = data.make_datasets(data.DataConfig(problem="digits", image_size=32, init_batch=8))
    assert next(iter(ds.train))[0].shape == (64, 32, 32, 3)
    with pytest.raises(data.DataError, match="multiple of 8"):
        data.make_datasets(data.DataConfig(problem="digits", image_size=12))


def test_train_epoch_is_a_permutation_then_reshuffled():
    ds = data.make_datasets(data.DataConfig(problem="digits", dal=0, global_batch_train=100,
                                            init_batch=8, image_size=8))
    batches = first_batches(ds.train, 30)  # 3000 images = 2 epochs of 1500
    epochs = np.concatenate([b[0] for b in batches])[..., 0].reshape(2, 1500, 64)
    from sklearn.datasets import load_digits
    train = np.round(load_digits().images[:1500] * 255 / 16).astype(np.uint8).reshape(1500, 64)

    def as_multiset(rows):
        return sorted(map(bytes, rows))
    assert as_multiset(epochs[0]) == as_multiset(train) == as_multiset(epochs[1])
    assert not np.array_equal(epochs[0], epochs[1])  # a new order every epoch
    assert not np.array_equal(epochs[0], train)  # shuffled


# --- n_bits_x ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n_bits_x", [1, 3, 5, 8])
def test_reduce_bits_is_the_originals_formula_on_pipeline_output(digits, n_bits_x):
    x = next(iter(digits.train))[0]
    reduced = reduce_bits(x, n_bits_x).numpy()
    expected = np.floor(x.numpy().astype(np.float64) / 2 ** (8 - n_bits_x))
    np.testing.assert_array_equal(reduced, expected)
    assert reduced.max() < 2 ** n_bits_x and reduced.dtype == np.uint8


def test_reduce_bits_rejects_bad_bits():
    with pytest.raises(ValueError, match="n_bits_x"):
        reduce_bits(np.zeros([1, 2, 2, 3], np.uint8), 0)


# --- real MNIST (the must-show test) ------------------------------------------------------------

MNIST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@needs_mnist
def test_real_mnist_test_split_through_the_idx_reader():
    images = data.read_idx(os.path.join(MNIST_DIR, "t10k-images-idx3-ubyte.gz"))
    labels = data.read_idx(os.path.join(MNIST_DIR, "t10k-labels-idx1-ubyte.gz"))
    digits, digit_labels = data.read_mnist(MNIST_DIR, "t10k")
    # Independent numpy parse of the raw files: header 16 (images) / 8 (labels) bytes.
    with gzip.open(os.path.join(MNIST_DIR, "t10k-images-idx3-ubyte.gz")) as f:
        raw_images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(10000, 28, 28)
    with gzip.open(os.path.join(MNIST_DIR, "t10k-labels-idx1-ubyte.gz")) as f:
        raw_labels = np.frombuffer(f.read(), np.uint8, offset=8)
    assert abs(raw_images.mean() - 33.79) < 0.01
    assert np.bincount(raw_labels).tolist() == MNIST_LABEL_COUNTS
    for x, y in ((images, labels), (digits, digit_labels)):
        assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
        assert abs(x.mean() - 33.79) < 0.01
        assert np.bincount(y, minlength=10).tolist() == MNIST_LABEL_COUNTS
        np.testing.assert_array_equal(x, raw_images)
        np.testing.assert_array_equal(y, raw_labels)


@needs_mnist
def test_mnist_idx_pipeline_splits_t10k_and_pads_as_the_original(caplog):
    import logging
    caplog.set_level(logging.INFO, logger="absl")
    ds = data.make_datasets(data.DataConfig(problem="mnist", data_dir=MNIST_DIR, dal=0,
                                            init_batch=8, global_batch_test=250))
    assert "first 9,000 train / last 1,000 held out" in caplog.text
    assert (ds.info.n_train, ds.info.n_test, ds.info.n_y, ds.info.image_size) == (
        9000, 1000, 10, 32)
    raw, raw_labels = data.read_mnist(MNIST_DIR, "t10k")
    x = np.concatenate([b[0] for b in first_batches(ds.test, 10)])
    y = np.concatenate([b[1] for b in first_batches(ds.test, 10)])
    assert x.shape == (1000, 32, 32, 3)
    np.testing.assert_array_equal(y, raw_labels[9000:])
    expected = np.pad(raw[9000:], ((0, 0), (2, 2), (2, 2)), "minimum")  # the original's padding
    for channel in range(3):
        np.testing.assert_array_equal(x[..., channel], expected)


@needs_mnist
def test_mnist_image_size_16_is_the_originals_area_downsample():
    full, half = (data.make_datasets(data.DataConfig(
        problem="mnist", data_dir=MNIST_DIR, dal=0, image_size=size, init_batch=8))
        for size in (32, 16))
    x32, x16 = first_batches(full.test, 1)[0][0], first_batches(half.test, 1)[0][0]
    blocks = x32.reshape(50, 16, 2, 16, 2, 3).astype(np.float64).mean(axis=(2, 4))
    np.testing.assert_array_equal(x16, np.floor(blocks))
    with pytest.raises(data.DataError, match="must divide"):
        data.make_datasets(data.DataConfig(problem="mnist", data_dir=MNIST_DIR, image_size=24))


# --- augmentation -----------------------------------------------------------------------------

def dots(batch):
    """[batch, 32, 32, 1] zeros with one 255 pixel at (16, 16)."""
    x = np.zeros([batch, 32, 32, 1], np.float32)
    x[:, 16, 16] = 255.
    return tf.constant(x)


def test_dal1_is_a_continuous_shift_of_up_to_ten_percent():
    out = augment.random_affine(dots(256), level=1, seed=tf.constant([0, 1], tf.int64)).numpy()
    mass = out.sum(axis=(1, 2, 3))
    np.testing.assert_allclose(mass, 255., rtol=1e-4)  # bilinear shift keeps the dot's mass
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    centroid_row = (out[..., 0] * rows).sum(axis=(1, 2)) / mass
    centroid_col = (out[..., 0] * cols).sum(axis=(1, 2)) / mass
    shifts = np.stack([centroid_row, centroid_col]) - 16
    assert np.abs(shifts).max() <= 3.2 + 1e-3  # 0.1 * 32
    assert np.abs(shifts).max() > 2.8  # the whole range is used
    assert np.mean(np.abs(shifts - np.round(shifts)) > 0.05) > 0.5  # not integer shifts


def keras_2_2_affine_transform(x, theta=0., tx=0., ty=0., shear=0., zx=1., zy=1.):
    """The original's Keras 2.2 (keras_preprocessing 1.0) apply_affine_transform, [H, W, C]:
    (row, col) matrices, centre h/2 + .5, scipy order=1, fill_mode='nearest'."""
    from scipy import ndimage
    t, s = np.deg2rad(theta), np.deg2rad(shear)
    m = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    m = m @ np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    m = m @ np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]])
    m = m @ np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
    centre = np.array([x.shape[0] / 2 + 0.5, x.shape[1] / 2 + 0.5])
    offset, reset = np.eye(3), np.eye(3)
    offset[:2, 2], reset[:2, 2] = centre, -centre
    m = offset @ m @ reset
    return np.stack([ndimage.affine_transform(x[..., c], m[:2, :2], m[:2, 2], order=1,
                                              mode="nearest") for c in range(x.shape[-1])], -1)


@pytest.mark.parametrize("params", [dict(tx=1.3, ty=-2.2), dict(theta=-14., zx=1.1, zy=0.9),
                                    dict(theta=10., tx=0.7, ty=2.1, shear=0.02, zx=.93, zy=1.08)])
def test_affine_transform_is_the_originals_keras(params):
    x = np.random.default_rng(0).uniform(0, 255, [32, 32, 3]).astype(np.float32)
    ours = augment.affine_transform(
        x[None], theta=params.get("theta", 0.), shift_rows=params.get("tx", 0.),
        shift_cols=params.get("ty", 0.), shear=params.get("shear", 0.),
        zoom_rows=params.get("zx", 1.), zoom_cols=params.get("zy", 1.))[0].numpy()
    np.testing.assert_allclose(ours, keras_2_2_affine_transform(x, **params), atol=5e-3)


def test_dal2_adds_flips_rotation_zoom_and_is_deterministic():
    x = tf.random.stateless_uniform([64, 32, 32, 3], [1, 2], 0, 255)
    seed = tf.constant([4, 5], tf.int64)
    out = augment.random_affine(x, level=2, seed=seed)
    np.testing.assert_array_equal(out.numpy(), augment.random_affine(x, 2, seed).numpy())
    assert out.shape == x.shape
    one = np.zeros([64, 32, 32, 1], np.float32)
    one[:, 16, 8] = 255.  # left of centre: a flip moves it right
    moved = augment.random_affine(tf.constant(one), 2, seed).numpy()[..., 0]
    cols = (moved.sum(axis=1) * np.arange(32)).sum(axis=1) / moved.sum(axis=(1, 2))
    assert 10 < np.sum(cols > 16) < 54


def test_pipeline_augments_train_not_test():
    def make(dal):
        return data.make_datasets(data.DataConfig(problem="digits", dal=dal, init_batch=8))
    plain, shifted = make(0), make(1)
    x0, y0 = first_batches(plain.train, 1)[0]
    x1, y1 = first_batches(shifted.train, 1)[0]
    np.testing.assert_array_equal(y0, y1)  # same seed, same order
    assert not np.array_equal(x0, x1)
    np.testing.assert_array_equal(first_batches(plain.test, 1)[0][0],
                                  first_batches(shifted.test, 1)[0][0])


# --- determinism and resume -------------------------------------------------------------------

def test_same_seed_same_batches_other_seed_other_batches():
    def batches(seed):
        ds = data.make_datasets(data.DataConfig(problem="digits", seed=seed, init_batch=8))
        return first_batches(ds.train, 3), ds.init_batch
    (a, init_a), (b, init_b), (c, _) = batches(7), batches(7), batches(8)
    for batch_a, batch_b in zip(a, b):
        np.testing.assert_array_equal(batch_a[0], batch_b[0])
        np.testing.assert_array_equal(batch_a[1], batch_b[1])
    np.testing.assert_array_equal(init_a[0], init_b[0])
    assert not np.array_equal(a[0][0], c[0][0])


def run_python(code):
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_deterministic_under_op_determinism(tmp_path):
    out = run_python(f"""
        import numpy as np, tensorflow as tf
        from PIL import Image
        tf.config.experimental.enable_op_determinism()
        from glow_tf import data
        rng = np.random.default_rng(0)
        for i in range(40):
            Image.fromarray(rng.integers(0, 256, [20, 24, 3], np.uint8)).save(
                "{tmp_path}/%d.png" % i)
        configs = [data.DataConfig(problem="digits", dal=1, seed=3, init_batch=8, pmap=4),
                   data.DataConfig(problem="folder", data_dir="{tmp_path}", dal=2, seed=3,
                                   global_batch_train=16, init_batch=8, pmap=4)]
        for cfg in configs:
            a, b = (list(data.make_datasets(cfg).train.take(3).as_numpy_iterator())
                    for _ in range(2))
            assert all(np.array_equal(p[0], q[0]) and np.array_equal(p[1], q[1])
                       for p, q in zip(a, b)), cfg
        print("DETERMINISTIC")
    """)
    assert "DETERMINISTIC" in out


@pytest.mark.parametrize("dal", [0, 1])
def test_checkpointed_iterator_resumes_mid_epoch(tmp_path, dal):
    def train():
        return data.make_datasets(data.DataConfig(problem="digits", dal=dal, init_batch=8)).train
    iterator = iter(train())
    for _ in range(5):  # mid-epoch: 1500 / 64 > 5
        next(iterator)
    path = tf.train.Checkpoint(iterator=iterator).save(str(tmp_path / "ckpt"))
    expected = [next(iterator) for _ in range(3)]
    fresh = iter(train())
    tf.train.Checkpoint(iterator=fresh).restore(path).assert_consumed()
    for want in expected:
        got = next(fresh)
        np.testing.assert_array_equal(got[0].numpy(), want[0].numpy())
        np.testing.assert_array_equal(got[1].numpy(), want[1].numpy())
    restarted = next(iter(train()))[1].numpy()
    assert not np.array_equal(restarted, expected[0][1].numpy())  # resumed, not restarted


# --- tf.distribute -----------------------------------------------------------------------------

def test_two_replicas_split_the_global_batch():
    out = run_python("""
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from glow_tf import data
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2
        def train():  # a fresh pipeline: its first iteration is a function of the seed
            return data.make_datasets(data.DataConfig(problem="digits", global_batch_train=16, seed=1,
                                                      init_batch=8)).train
        global_batches = list(train().take(2).as_numpy_iterator())
        distributed = iter(strategy.experimental_distribute_dataset(train()))
        for global_x, global_y in global_batches:
            x, y = next(distributed)
            xs = strategy.experimental_local_results(x)
            ys = strategy.experimental_local_results(y)
            assert [t.shape[0] for t in xs] == [8, 8], [t.shape for t in xs]
            assert [t.device.endswith("CPU:%d" % i) for i, t in enumerate(xs)] == [True, True]
            np.testing.assert_array_equal(np.concatenate([t.numpy() for t in xs]), global_x)
            np.testing.assert_array_equal(np.concatenate([t.numpy() for t in ys]), global_y)
            total = strategy.reduce("SUM", strategy.run(
                lambda x: tf.shape(x)[0], args=(x,)), axis=None)
            assert int(total) == 16
        print("REPLICAS OK")
    """)
    assert "REPLICAS OK" in out

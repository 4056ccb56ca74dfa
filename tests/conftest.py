"""Shared fixtures: tiny Glow models, weight perturbation, Jacobian log-determinants.

The suite runs in glow_tf's programs' environment (Keras 2, quiet C++ logs, the XLA flags:
glow_tf/cli/console.py), set before TensorFlow loads; the tests' subprocesses inherit it.
"""
import json
import os

import glow_tf.cli  # noqa: F401  first: the programs' environment (see above)
import glow_tf
import numpy as np
import pytest
import tensorflow as tf

from glow_tf import checkpoints, files
from glow_tf.train_config import TrainConfig

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN_DIR = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "golden"))
GOLDEN_SKIP_REASON = "../shared/golden absent (CI provides it beside the repo)"

# A tiny model: 4x4x3 images, two levels (level shapes (2,2,12), (1,1,24)), D = 48.
TINY = dict(image_size=4, n_channels=3, n_levels=2, depth=2, width=8)


# A tiny training run on the embedded digits (16x16): 4 steps of 16 images per epoch.
TINY_DIGITS = dict(problem="digits", n_levels=2, depth=1, width=8, anchor_size=16, n_batch_train=16,
                   n_batch_init=32, n_batch_test=100, n_train=64, epochs=3, epochs_warmup=0, lr=0.003,
                   epochs_full_valid=1, epochs_full_sample=100, log_steps=True, export=False,
                   gradient_checkpointing=0, jit_compile=False)


def tiny_digits(logdir, **changes):
    return TrainConfig.from_flags({**TINY_DIGITS, "logdir": str(logdir), **changes})


def tiny_config(**changes):
    return glow_tf.GlowConfig(**{**TINY, **changes})


def random_images(config, n, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (n,) + config.image_shape).astype(np.uint8)


def random_labels(config, n, seed=0):
    return np.random.RandomState(seed + 1).randint(0, config.n_y, n).astype(np.int32)


def perturb(variables, scale=0.05, seed=0):
    """``v += scale * N(0, 1)`` for every trainable float variable (as the golden fixtures do),
    so that zero-initialised layers (coupling output, priors, classifier) are not trivial."""
    rng = np.random.RandomState(seed)
    for v in variables:
        if v.trainable and v.dtype.is_floating:
            v.assign_add((scale * rng.standard_normal(v.shape.as_list())).astype(np.float32))


def build_model(config, perturb_scale=0.05, seed=0, n_init=8):
    """A Glow with data-dependent init on random images, then weights perturbed.

    TensorFlow's global seed is set first, so the initial weights do not depend on what ran
    before (which tests a pytest-xdist worker ran first varies from run to run).
    """
    tf.random.set_seed(seed)
    model = glow_tf.Glow(config)
    y = random_labels(config, n_init, seed) if config.ycond else None
    model.initialize(random_images(config, n_init, seed), y)
    if perturb_scale:
        perturb(model.trainable_variables, perturb_scale, seed)
    return model


def continuous_batch(model, n, seed=0):
    """(x continuous [n, H, W, C] in [-.5, .5), y or None) with fixed dequantisation noise."""
    config = model.config
    noise = np.random.RandomState(seed + 2).uniform(0, 1.0 / config.n_bins, (n,) + config.image_shape)
    x = model.preprocess(random_images(config, n, seed + 3), noise=noise.astype(np.float32))
    y = tf.constant(random_labels(config, n, seed + 3)) if config.ycond else None
    return x, y


def jacobian_log_det(fn, x):
    """log|det d fn(x) / dx| per example, from the batch Jacobian of the flattened map.

    ``fn`` maps a [N, ...] tensor to a [N, ...] tensor (or a list of them, flattened and joined
    in order); the Jacobian [N, D, D] is computed in float32 and its slogdet in float64.
    """
    x = tf.convert_to_tensor(x)
    n = x.shape[0]
    flat = tf.reshape(x, [n, -1])
    with tf.GradientTape() as tape:
        tape.watch(flat)
        out = fn(tf.reshape(flat, x.shape))
        if isinstance(out, (list, tuple)):
            out_flat = tf.concat([tf.reshape(o, [n, -1]) for o in out], axis=1)
        else:
            out_flat = tf.reshape(out, [n, -1])
    jac = tape.batch_jacobian(out_flat, flat, experimental_use_pfor=True)
    assert jac.shape[1] == jac.shape[2], f"not a square Jacobian: {jac.shape}"
    sign, log_abs_det = tf.linalg.slogdet(tf.cast(jac, tf.float64))
    assert np.all(sign.numpy() != 0), "singular Jacobian"
    return log_abs_det.numpy()


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own hook (below)
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``make test``: --dist loadgroup), a file's tests run on one worker unless
    the file names its own group, so that module-scoped fixtures (trained runs, exports) are built
    once, not once per worker."""
    for item in items:
        if not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    # loadgroup schedules by a "@group" suffix of the node id, which pytest-xdist 3.8 appends to
    # item._nodeid; pytest 9 no longer reads that (Node.nodeid is str(item._id)), so without this
    # every group's tests were spread over the workers as --dist load would.
    if getattr(config.option, "loadgroup", False):
        from _pytest.nodeid import NodeId
        for item in items:
            if "@" not in item.nodeid and hasattr(item, "_id"):
                item._id = NodeId.parse(f"{item.nodeid}@{item.get_closest_marker('xdist_group').args[0]}")


@pytest.fixture(scope="session")
def golden_dir():
    if not os.path.isdir(GOLDEN_DIR):
        pytest.skip(GOLDEN_SKIP_REASON)
    return GOLDEN_DIR


@pytest.fixture(autouse=True)
def _seeded():
    """Deterministic initialisers (the conv kernels' N(0, .05) draws) in every test."""
    seed = int(os.environ.get("GLOW_TEST_SEED", "1234"))  # vary it to probe robustness
    tf.random.set_seed(seed)
    np.random.seed(seed)
    yield


def write_run(model, logdir, ema=None, step=7):
    """A training run's layout: config.json and a CheckpointManager checkpoint."""
    os.makedirs(logdir, exist_ok=True)
    files.write_json_atomic(os.path.join(logdir, checkpoints.CONFIG_FILE),
                                  {"model": model.config.to_dict(), "train": {"seed": 0}})
    objects = {"model": model, "step": tf.Variable(step, dtype=tf.int64)}
    if ema is not None:
        objects[checkpoints.EMA_KEY] = ema
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(**objects),
                                         os.path.join(logdir, checkpoints.CHECKPOINTS_DIR), 2)
    return manager.save(checkpoint_number=step)


def read_json_lines(path):
    """(first line, the other lines) of a JSON-lines log such as train.txt (first line: hps)."""
    with open(path) as f:
        lines = f.read().splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


class BackgroundRun:
    """A training process running beside the test that started it; ``wait()`` returns its logdir."""

    def __init__(self, process, logdir):
        self.process, self.logdir = process, logdir

    def wait(self):
        from processes import finish
        code, _, err = finish(self.process)
        assert code == 0, err[-3000:]
        return self.logdir


@pytest.fixture(scope="session")
def one_process_run(tmp_path_factory):
    """The tiny run of tests/processes.py in one process, the reference of the multi-worker, MPI and
    preemption tests: started when first asked for, so that it runs beside that test's own processes."""
    from processes import TRAIN, start, train_args
    logdir = tmp_path_factory.mktemp("one_process") / "run"
    run = BackgroundRun(start([TRAIN] + train_args(logdir), logdir.parent / "process"), logdir)
    yield run
    run.process.kill()  # if no test waited for it
    run.process.wait()


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory):
    """glow-demo (tests/demo_process.py) on a tiny class-conditional digits model it trains, with a
    50 kB upload cap, shared by tests/test_demo_api.py and tests/test_demo_browser.py (one
    pytest-xdist group: one worker builds it once)."""
    from demo_process import files_in, start_demo, train_tiny_model
    root = tmp_path_factory.mktemp("demo")
    logdir = train_tiny_model(root / "run")
    model_files = files_in(logdir)
    server = start_demo(["--model", str(logdir), "--attribute_images", "60", "--examples", "4", "--max_upload_mb",
                         "0.05"], root)
    server.logdir, server.model_files = logdir, model_files
    yield server
    server.stop()

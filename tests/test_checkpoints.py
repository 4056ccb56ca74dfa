"""glow_tf.checkpoints: the run layout and restore_model (the exporter's and sample.py's entry)."""
import os
import shutil

import numpy as np
import pytest

from conftest import build_model, perturb, random_images, tiny_config, write_run
from glow_tf import checkpoints, optim


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("run"))
    model = build_model(tiny_config(), perturb_scale=0.03)
    ema = optim.PolyakAverage(model.trainable_variables, decay=0.9)
    averaged = [v.numpy().copy() for v in model.trainable_variables]
    perturb(model.trainable_variables, 0.03, seed=1)
    raw = [v.numpy().copy() for v in model.trainable_variables]
    prefix = write_run(model, logdir, ema)
    return logdir, prefix, raw, averaged


@pytest.mark.parametrize("which", ["logdir", "checkpoints_dir", "prefix"])
def test_restore_model_from_every_kind_of_path(run, which):
    logdir, prefix, raw, averaged = run
    path = {"logdir": logdir, "checkpoints_dir": os.path.join(logdir, checkpoints.CHECKPOINTS_DIR),
            "prefix": prefix}[which]
    assert checkpoints.resolve(path) == (os.path.abspath(logdir), prefix)
    model = checkpoints.restore_model(path, use_ema=True)
    assert model.ema_weights and bool(model.initialized.numpy())
    for v, a in zip(model.trainable_variables, averaged):
        np.testing.assert_array_equal(v.numpy(), a)
    model = checkpoints.restore_model(path, use_ema=False)
    assert not model.ema_weights
    for v, r in zip(model.trainable_variables, raw):
        np.testing.assert_array_equal(v.numpy(), r)


def test_a_checkpoint_without_averages_gives_the_raw_weights(tmp_path):
    model = build_model(tiny_config(depth=1), perturb_scale=0.03)
    write_run(model, str(tmp_path))
    restored = checkpoints.restore_model(str(tmp_path), use_ema=True)
    assert not restored.ema_weights
    x = model.preprocess(random_images(model.config, 3), np.zeros((3,) + model.config.image_shape, np.float32))
    np.testing.assert_array_equal(restored.log_prob(x).numpy(), model.log_prob(x).numpy())


def test_bad_paths_are_clear_errors(tmp_path, run):
    with pytest.raises(ValueError, match="does not exist"):
        checkpoints.resolve(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="without a checkpoint"):
        checkpoints.resolve(str(tmp_path))
    with pytest.raises(ValueError, match="config.json"):
        checkpoints.read_run_config(str(tmp_path))
    logdir, prefix, _, _ = run
    shutil.copytree(os.path.dirname(prefix), tmp_path / "copy")  # a checkpoint dir without config.json beside it
    with pytest.raises(ValueError, match="config.json"):
        checkpoints.restore_model(str(tmp_path / "copy"))

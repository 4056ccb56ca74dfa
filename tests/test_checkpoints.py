"""glow_tf.checkpoints: the run layout and restore_model (the exporter's and sample.py's entry)."""
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import build_model, perturb, random_images, tiny_config, write_run
from glow_tf import checkpoints, errors, optim


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


# ------------------------------------------------------------------------ damaged checkpoints
def write_checkpoints(directory, steps, keep=5):
    """Checkpoints of a tiny model at ``steps`` in ``directory``, as a training run's manager writes them."""
    model = build_model(tiny_config(depth=1), perturb_scale=0.03)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(directory), keep)
    return [manager.save(checkpoint_number=step) for step in steps]


def cut_short(path, size=10):
    os.truncate(path, size)


def test_damaged_newest_checkpoints_are_set_aside_and_the_newest_readable_one_resumed(tmp_path):
    ckpt_4, ckpt_8, ckpt_12 = write_checkpoints(tmp_path, [4, 8, 12])
    assert checkpoints.read_failure(ckpt_12) is None
    cut_short(ckpt_12 + ".data-00000-of-00001", 100)  # the data cut short
    cut_short(ckpt_8 + ".index")  # the index cut short
    resumable = checkpoints.find_resumable(str(tmp_path))
    assert resumable.prefix == ckpt_4 and resumable.needs_new_state
    assert [(prefix, reason) for prefix, reason in resumable.damaged] == [
        (ckpt_12, "Read less bytes than requested"), (ckpt_8, "file is too short to be an sstable")]

    assert checkpoints.set_aside(resumable) == [(ckpt_12, ckpt_12 + ".damaged"), (ckpt_8, ckpt_8 + ".damaged")]
    assert os.path.getsize(ckpt_12 + ".damaged.data-00000-of-00001") == 100  # kept as it was
    assert os.path.getsize(ckpt_8 + ".damaged.index") == 10
    left = [name for name in os.listdir(tmp_path) if name.startswith(("ckpt-12.", "ckpt-8."))]
    assert all(".damaged" in name for name in left)
    assert tf.train.latest_checkpoint(str(tmp_path)) == ckpt_4

    # The manager deletes the checkpoint resumed from only once 2 newer ones (--keep_checkpoints 2)
    # are written, and never the damaged ones: they are not in its state, nor named as it names files.
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=build_model(tiny_config(depth=1))), str(tmp_path), 2)
    manager.save(checkpoint_number=5)
    assert os.path.exists(ckpt_4 + ".index")
    manager.save(checkpoint_number=6)
    manager.save(checkpoint_number=12)
    assert not os.path.exists(ckpt_4 + ".index")
    cut_short(ckpt_12 + ".index")  # damaged again: set aside beside the first one
    assert checkpoints.set_aside(checkpoints.find_resumable(str(tmp_path)))[0] == (ckpt_12, ckpt_12 + ".damaged-2")
    assert {name for name in os.listdir(tmp_path) if ".damaged" in name} == {
        "ckpt-12.damaged.index", "ckpt-12.damaged.data-00000-of-00001", "ckpt-8.damaged.index",
        "ckpt-8.damaged.data-00000-of-00001", "ckpt-12.damaged-2.index", "ckpt-12.damaged-2.data-00000-of-00001"}


def test_no_readable_checkpoint_is_an_error_that_changes_nothing(tmp_path):
    ckpt_4, ckpt_8 = write_checkpoints(tmp_path, [4, 8])
    cut_short(ckpt_8 + ".index")
    os.remove(ckpt_4 + ".data-00000-of-00001")
    before = {name: os.path.getsize(tmp_path / name) for name in os.listdir(tmp_path)}
    with pytest.raises(errors.CheckpointError) as error:
        checkpoints.find_resumable(str(tmp_path))
    assert str(error.value).startswith(
        f"{tmp_path}: none of its 2 checkpoint(s) can be read (ckpt-8: file is too short to be an sstable; ckpt-4: ")
    assert "No such file or directory). Nothing was changed. To resume, put back a copy" in str(error.value)
    assert {name: os.path.getsize(tmp_path / name) for name in os.listdir(tmp_path)} == before
    assert checkpoints.find_resumable(str(tmp_path / "none_yet")).prefix is None  # a new run
    (tmp_path / "empty").mkdir()
    assert checkpoints.find_resumable(str(tmp_path / "empty")).prefix is None


def test_an_unreadable_checkpoint_state_falls_back_to_the_checkpoint_files(tmp_path):
    _, ckpt_8 = write_checkpoints(tmp_path, [4, 8])
    (tmp_path / checkpoints.STATE_FILE).write_text("garbage {")
    resumable = checkpoints.find_resumable(str(tmp_path))
    assert resumable.prefix == ckpt_8 and resumable.needs_new_state and not resumable.damaged
    assert "checkpoint cannot be read; looking at the ckpt-N files beside it" in resumable.state_note
    checkpoints.set_aside(resumable)
    assert tf.train.get_checkpoint_state(str(tmp_path)).all_model_checkpoint_paths[:] == [
        os.path.join(str(tmp_path), "ckpt-4"), ckpt_8]


def test_restoring_a_damaged_checkpoint_or_a_bad_config_is_a_one_line_error(tmp_path, run):
    logdir, prefix, _, _ = run
    damaged = tmp_path / "run"
    shutil.copytree(logdir, damaged)
    cut_short(str(damaged / checkpoints.CHECKPOINTS_DIR / os.path.basename(prefix)) + ".data-00000-of-00001", 1000)
    with pytest.raises(errors.CheckpointError, match=r"ckpt-7: the checkpoint cannot be read \(Read less bytes than "
                                                     r"requested\)$"):
        checkpoints.restore_model(str(damaged))
    (damaged / checkpoints.CONFIG_FILE).write_text('{"model": {"depth": 2,}}')
    with pytest.raises(errors.RunFileError, match=r"config.json: expected the run's config as JSON, got text that "
                                                  r"is not \(Expecting property name enclosed in double quotes at "
                                                  r"line 1, column 23: '\{\"model\""):
        checkpoints.read_run_config(str(damaged))

"""Training: flags, the loop's results and logs, inference mode, restore errors, NaN guard, XLA.

In-process runs use tiny models with XLA off (tracing only); the distributed and the
kill-and-resume runs are in tests/test_train_resume.py (subprocesses).
"""
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from PIL import Image

from conftest import REPO_ROOT, TINY_DIGITS, read_json_lines, tiny_digits  # test_seeds.py imports tiny_digits from here
from glow_tf import checkpoints, data, errors, inference, train_config, train_lib, train_logs
from glow_tf.cli import train as train_cli
from glow_tf.plan import make_data, should_sample, should_test
from glow_tf.train_config import TrainConfig
from glow_tf.trainer import Trainer

MNIST_DIR = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data", "mnist"))
ORIGINAL_KEYS = ["epoch", "n_processed", "n_images", "train_time", "loss", "bits_x", "bits_y", "pred_loss"]

# The original train.py's flags and defaults (its argparse definitions).
ORIGINAL_FLAGS = dict(
    verbose=False, restore_path="", inference=False, logdir="./logs", problem="cifar10", category="",
    data_dir="", dal=1, fmap=1, pmap=16, n_train=50000, n_test=-1, n_batch_train=64, n_batch_test=50,
    n_batch_init=256, optimizer="adamax", lr=0.001, beta1=0.9, polyak_epochs=1, weight_decay=1.0,
    epochs=1000000, epochs_warmup=10, epochs_full_valid=50, gradient_checkpointing=1, image_size=-1,
    anchor_size=32, width=512, depth=32, weight_y=0.0, n_bits_x=8, n_levels=3, n_sample=1,
    epochs_full_sample=50, learntop=False, ycond=False, seed=0, flow_permutation=2, flow_coupling=0)
# Where glow_tf's default differs in value, not in meaning: the original ignored --n_batch_test
# (default 50) and took the test batch from a table of local training batches; -1 says that.
SAME_MEANING_DEFAULTS = dict(n_batch_test=-1)

# ------------------------------------------------------------------------------- flags
def test_flags_are_the_originals_with_their_defaults_and_documented():
    flag_values = flags.FlagValues()
    train_cli.define_flags(flag_values)
    flag_values(["train.py"])
    defaults = {**ORIGINAL_FLAGS, **SAME_MEANING_DEFAULTS}
    for name, default in defaults.items():
        assert flag_values[name].value == default, name
        assert flag_values[name].help, name
    config = train_cli.config_from_flags(flag_values)
    assert config.flags().items() >= defaults.items()
    assert train_config.ORIGINAL_FLAGS == tuple(ORIGINAL_FLAGS)  # the ones that may be abbreviated
    flag_values(["train.py", "--depth", "4", "--ycond", "--optimizer", "adam2", "--strategy", "mirrored"])
    config = train_cli.config_from_flags(flag_values)
    assert (config.model.depth, config.model.ycond, config.optimizer, config.strategy) == (4, True, "adam2", "mirrored")
    with pytest.raises(flags.IllegalFlagValueError):
        flag_values(["train.py", "--strategy", "horovod"])


@pytest.mark.parametrize("changes,flag", [
    (dict(weight_y=1.0), "--weight_y"), (dict(inference=True), "--restore_path"), (dict(epochs=1), "--epochs"),
    (dict(optimizer="sgd"), "--optimizer"), (dict(n_bits_x=9), "--n_bits_x"), (dict(dal=3), "--dal"),
    (dict(cpu_replicas=2), "--cpu_replicas"), (dict(weight_decay=0.0), "--weight_decay"),
    (dict(flow_permutation=4), "--flow_permutation"), (dict(max_time=-1.0), "--max_time"),
    (dict(n_batch_test=0), "--n_batch_test"), (dict(gradient_checkpointing=2), "--gradient_checkpointing"),
    (dict(keep_checkpoints=1), "--keep_checkpoints"),
])
def test_invalid_flags_are_clear_errors(changes, flag):
    with pytest.raises(ValueError, match=flag + ": expected"):
        TrainConfig.from_flags(changes)


def test_at_least_two_checkpoints_are_kept():
    with pytest.raises(ValueError, match=r"^--keep_checkpoints: expected an int >= 2 \(an unreadable newest checkpoint "
                                         r"then leaves an older one to resume from\), got 1$"):
        TrainConfig.from_flags(keep_checkpoints=1)


def test_a_batch_that_vanishes_at_the_anchor_resolution_is_an_error():
    with pytest.raises(ValueError, match="--n_batch_train: expected"):
        make_data(TrainConfig.from_flags(problem="digits", anchor_size=2, n_batch_train=1))


def test_the_test_batch_follows_the_originals_rule_unless_given():
    table = {64: 50, 32: 25, 16: 10, 8: 5, 4: 2, 2: 2, 1: 1}  # the original's local_batch_test
    assert {batch: TrainConfig().local_batch_test(batch) for batch in table} == table
    assert [TrainConfig().local_batch_test(batch) for batch in (3, 48, 100)] == [2, 25, 50]  # key <= batch
    for n_batch_test, expected in ((-1, 25), (7, 7)):  # 8 * 32**2 // 16**2 = 32 images per step -> 25
        datasets, plan = make_data(TrainConfig.from_flags({**TINY_DIGITS, "n_batch_train": 8, "anchor_size": 32,
                                                                     "n_batch_test": n_batch_test}))
        assert plan.local_batch_test == expected
        assert next(iter(datasets.test))[0].shape[0] == expected


def test_the_originals_test_and_sample_schedule():
    config = TrainConfig.from_flags(epochs_full_valid=50, epochs_full_sample=50)
    tested = [e for e in range(1, 201) if should_test(e, config)]
    sampled = [e for e in range(1, 201) if should_sample(e, config)]
    assert tested == [50, 100, 150, 200]
    assert sampled == [1, 10, 50, 100, 150, 200]
    config = TrainConfig.from_flags(epochs_full_valid=50, epochs_full_sample=3)
    # Sampling happens only inside the original's "epoch < 10 or ... or full valid" branch.
    assert [e for e in range(1, 61) if should_sample(e, config)] == [1, 3, 6, 9, 10, 30]


# ----------------------------------------------------------------------- an MNIST run
@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    if not os.path.isdir(MNIST_DIR):
        pytest.skip("../shared/data/mnist absent (CI provides it beside the repo)")
    logdir = tmp_path_factory.mktemp("mnist")
    config = TrainConfig.from_flags(problem="mnist", data_dir=MNIST_DIR, logdir=str(logdir), n_levels=2, depth=2,
                                    width=16, n_batch_train=32, n_batch_init=64, n_train=640, n_test=500, epochs=5,
                                    lr=0.003, epochs_warmup=0, epochs_full_valid=1, epochs_full_sample=100,
                                    log_steps=True, export=False, gradient_checkpointing=0, jit_compile=False,
                                    steps_per_execution=20)
    train_lib.train_and_evaluate(config)
    return config


def test_mnist_held_out_bits_per_dim_fall_well_below_the_first_step(mnist_run):
    _, steps = read_json_lines(os.path.join(mnist_run.logdir, "train_steps.txt"))
    _, tests = read_json_lines(os.path.join(mnist_run.logdir, "test.txt"))
    first = steps[0]["bits_x"]
    held_out = [float(r["bits_x"]) for r in tests]
    assert len(steps) == 80 and [r["step"] for r in steps] == list(range(80))
    assert 6.0 < first < 9.0  # a freshly initialised model on 8-bit data
    assert held_out[-1] < first - 2.0, (first, held_out)
    assert held_out == sorted(held_out, reverse=True), held_out


def test_logs_are_the_originals_json_lines(mnist_run):
    for name, keys in [("train.txt", ORIGINAL_KEYS), ("test.txt", [k for k in ORIGINAL_KEYS if k != "train_time"])]:
        hps, records = read_json_lines(os.path.join(mnist_run.logdir, name))
        assert hps.items() >= {k: v for k, v in mnist_run.flags().items() if k not in ("image_size", "n_test")}.items()
        assert hps["image_size"] == 32 and hps["n_test"] == 500 and hps["train_its"] == 20 and hps["n_y"] == 10
        assert [r["epoch"] for r in records] == [1, 2, 3, 4]
        for epoch, record in enumerate(records, start=1):
            assert list(record) == keys
            assert record["n_processed"] == record["n_images"] == epoch * 640
            assert all(isinstance(record[k], str) and float(record[k]) >= 0 for k in keys[-4:])
            assert float(record["loss"]) == float(record["bits_x"]) and float(record["pred_loss"]) == 1.0
    config = checkpoints.read_run_config(mnist_run.logdir)
    assert config["model"] == mnist_run.model.replace(image_size=32, n_channels=3, n_y=10).to_dict()


def test_run_writes_sample_grids_and_checkpoints(mnist_run):
    for index in range(8):  # the original's 8 temperatures, epoch 1, 10 x 10 tiles of 32 x 32
        with Image.open(os.path.join(mnist_run.logdir, f"epoch_1_sample_{index}.png")) as image:
            assert image.size == (320, 320)
            pixels = np.asarray(image)
        assert pixels.std() > 0
    assert not [f for f in os.listdir(mnist_run.logdir) if ".tmp" in f]
    latest = tf.train.latest_checkpoint(os.path.join(mnist_run.logdir, checkpoints.CHECKPOINTS_DIR))
    assert latest.endswith("ckpt-80")
    assert tf.train.latest_checkpoint(os.path.join(mnist_run.logdir, checkpoints.BEST_DIR)).endswith("ckpt-80")
    assert os.path.isdir(os.path.join(mnist_run.logdir, "tensorboard"))


def test_inference_mode_encodes_the_test_set(mnist_run, tmp_path):
    config = mnist_run.with_flags(inference=True, restore_path=mnist_run.logdir, logdir=str(tmp_path))
    path = inference.infer(config)
    assert path == os.path.join(str(tmp_path), "latents.npz")
    result = np.load(path)
    datasets, _ = make_data(config)
    images = np.concatenate([x.numpy() for x, _ in datasets.test])
    labels = np.concatenate([y.numpy() for _, y in datasets.test])
    assert result["z"].shape == (500, 32 * 32 * 3) and result["z"].dtype == np.float32
    np.testing.assert_array_equal(result["y"], labels)
    # Decoding the latents gives the images back (the dequantisation noise stays inside a bin).
    assert result["x"].dtype == np.uint8 and (result["x"] == images).mean() > 0.999
    # Standardised latents of a trained model are roughly N(0, 1).
    assert 0.5 < result["z"].std() < 1.5


def test_restoring_with_other_model_flags_names_them(mnist_run, tmp_path):
    with pytest.raises(ValueError, match=r"--depth 2 \(now 3\)"):
        train_lib.train_and_evaluate(mnist_run.with_flags(depth=3))
    with pytest.raises(ValueError, match=r"--restore_path .*--width 16 \(now 8\)"):
        train_lib.train_and_evaluate(mnist_run.with_flags(width=8, logdir=str(tmp_path),
                                                          restore_path=mnist_run.logdir))


def test_a_restore_path_that_is_no_usable_checkpoint_is_a_checkpoint_error(mnist_run, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(mnist_run.logdir, damaged)
    prefix = tf.train.latest_checkpoint(str(damaged / checkpoints.CHECKPOINTS_DIR))
    os.truncate(prefix + ".index", 10)
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    for path, message in ((damaged, f"{prefix}: the checkpoint cannot be read \\(file is too short to be an sstable\\)"),
                          (tmp_path / "notes.txt", "notes.txt', a file that is not a checkpoint")):
        with pytest.raises(errors.CheckpointError, match=message):
            train_lib.train_and_evaluate(mnist_run.with_flags(logdir=str(tmp_path / "run"), restore_path=str(path)))


def test_restore_path_starts_a_new_run_from_the_weights(mnist_run, tmp_path):
    config = mnist_run.with_flags(logdir=str(tmp_path), restore_path=mnist_run.logdir, max_steps=1,
                                  epochs_full_valid=50)
    train_lib.train_and_evaluate(config)
    _, steps = read_json_lines(os.path.join(str(tmp_path), "train_steps.txt"))
    _, source_tests = read_json_lines(os.path.join(mnist_run.logdir, "test.txt"))
    assert [r["step"] for r in steps] == [0]  # a new run: step, logs and data start afresh
    assert steps[0]["bits_x"] < float(source_tests[-1]["bits_x"]) + 0.5  # but from the trained weights


# ------------------------------------------------------------------ runs of older code
# tests/data/run_a14017c/: the config.json and the checkpoint's variables (names, shapes) of a run
# that glow_tf at commit a14017c (flat TrainConfig, Trainer/_Run) wrote with OLD_RUN's flags and
# --max_steps 6, before the configs were nested and the loop's state got one owner.
OLD_RUN = dict(TINY_DIGITS, max_steps=6)
OLD_RUN_DIR = os.path.join(REPO_ROOT, "tests", "data", "run_a14017c")


def test_a_run_written_by_older_code_has_the_same_checkpoint_and_resumes(tmp_path, capsys):
    config = TrainConfig.from_flags(OLD_RUN, logdir=str(tmp_path))
    train_lib.train_and_evaluate(config)
    prefix = tf.train.latest_checkpoint(os.path.join(str(tmp_path), checkpoints.CHECKPOINTS_DIR))
    with open(os.path.join(OLD_RUN_DIR, "checkpoint_variables.txt")) as f:
        old_variables = f.read().splitlines()
    assert [f"{name} {list(shape)}" for name, shape in sorted(tf.train.list_variables(prefix))] == old_variables
    old, new = checkpoints.read_run_config(OLD_RUN_DIR)["model"], checkpoints.read_run_config(str(tmp_path))["model"]
    assert old == {k: v for k, v in new.items() if k in old}
    assert {k: v for k, v in new.items() if k not in old} == {"precision": "float32"}  # added since: float32 then
    shutil.copy(os.path.join(OLD_RUN_DIR, checkpoints.CONFIG_FILE), str(tmp_path))  # as the old code wrote it
    capsys.readouterr()
    train_lib.train_and_evaluate(config.with_flags(max_steps=8))
    output = capsys.readouterr().out
    assert "Resuming from" in output and "changed flags" not in output  # the old hps hold every flag as it was
    _, steps = read_json_lines(os.path.join(str(tmp_path), "train_steps.txt"))
    assert [r["step"] for r in steps] == list(range(8))


# -------------------------------------------------------------------------- NaN guard
def inject_nan_at_step(monkeypatch, step):
    """Makes the loss and gradients of training step ``step`` (0-based) NaN, as a diverging step would."""
    replica_grads = Trainer.replica_grads

    def poisoned(self, x, y, noise):
        stats, grads = replica_grads(self, x, y, noise)
        poison = tf.where(self.state.step == step, float("nan"), 0.0)
        return tf.tensor_scatter_nd_add(stats, [[0]], [poison]), [g + poison for g in grads]

    monkeypatch.setattr(Trainer, "replica_grads", poisoned)


def test_a_nonfinite_step_is_skipped_and_counted(tmp_path, monkeypatch):
    inject_nan_at_step(monkeypatch, 2)
    train_lib.train_and_evaluate(tiny_digits(tmp_path, max_steps=6))
    _, steps = read_json_lines(os.path.join(str(tmp_path), "train_steps.txt"))
    assert [r["ok"] for r in steps] == [True, True, False, True, True, True]
    assert np.isnan(steps[2]["loss"]) and np.isfinite([r["loss"] for r in steps if r["ok"]]).all()
    prefix = tf.train.latest_checkpoint(os.path.join(str(tmp_path), checkpoints.CHECKPOINTS_DIR))
    reader = tf.train.load_checkpoint(prefix)
    assert reader.get_tensor("nonfinite_total/.ATTRIBUTES/VARIABLE_VALUE") == 1
    assert reader.get_tensor("optimizer/t/.ATTRIBUTES/VARIABLE_VALUE") == 6  # 5 updates, t counts from 1
    model = checkpoints.restore_model(str(tmp_path), use_ema=False)
    assert all(np.isfinite(v.numpy()).all() for v in model.trainable_variables)


def test_consecutive_nonfinite_steps_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path, monkeypatch):
    inject_nan_at_step(monkeypatch, 5)
    with pytest.raises(train_lib.NonFiniteError, match="--max_nonfinite 1.*ckpt-4"):
        train_lib.train_and_evaluate(tiny_digits(tmp_path, max_nonfinite=1))
    ckpt_dir = os.path.join(str(tmp_path), checkpoints.CHECKPOINTS_DIR)
    assert tf.train.get_checkpoint_state(ckpt_dir).all_model_checkpoint_paths[-1].endswith("ckpt-4")
    model = checkpoints.restore_model(str(tmp_path))
    assert all(np.isfinite(v.numpy()).all() for v in model.trainable_variables)


# ------------------------------------------------------------------------ failed writes
def test_a_failed_log_write_stops_the_run_at_its_last_checkpoint_and_the_same_config_resumes(tmp_path, monkeypatch):
    """The write of step 5's record fails (as on a full disk: ``append_whole`` raises after cutting
    the file back; tested under a real limit in test_files.py): the run stops with the WriteError
    naming the file and ckpt-4; the same config then resumes and logs every step once."""
    append_whole = train_logs.append_whole

    def full_disk_at_step_5(path, data):
        if b'"step": 5,' in data:
            raise errors.WriteError(f"could not write {path} (No space left on device)")
        append_whole(path, data)

    monkeypatch.setattr(train_logs, "append_whole", full_disk_at_step_5)
    config = tiny_digits(tmp_path, max_steps=6)
    with pytest.raises(errors.WriteError) as error:
        train_lib.train_and_evaluate(config)
    ckpt_4 = os.path.join(str(tmp_path), checkpoints.CHECKPOINTS_DIR, "ckpt-4")
    assert str(error.value) == (
        f"could not write {tmp_path}/train_steps.txt (No space left on device). Training stopped at step 6; the last "
        f"good checkpoint is {ckpt_4} (step 4). Make room, then run the same command again to resume from it")
    monkeypatch.undo()
    train_lib.train_and_evaluate(config)
    _, steps = read_json_lines(os.path.join(str(tmp_path), "train_steps.txt"))
    assert [r["step"] for r in steps] == list(range(6))


# ------------------------------------------------------------------------------- XLA
def test_xla_and_plain_training_steps_agree(tmp_path):
    results = {}
    for jit in (False, True):
        tf.keras.utils.set_random_seed(1)  # the same initial weights
        config = tiny_digits(tmp_path, jit_compile=jit)
        datasets, plan = make_data(config)
        trainer = Trainer(config, tf.distribute.get_strategy(), datasets, plan)
        trainer.data_dependent_init()
        stats, ok = trainer.compiled.train_chunk(tf.constant(3))
        results[jit] = stats.numpy(), ok.numpy(), [v.numpy() for v in trainer.state.variables + trainer.state.ema.shadows]
    (stats, ok, weights), (xla_stats, xla_ok, xla_weights) = results[False], results[True]
    assert ok.all() and xla_ok.all()
    np.testing.assert_allclose(xla_stats, stats, rtol=1e-6)
    for w, xla_w in zip(weights, xla_weights):
        np.testing.assert_allclose(xla_w, w, rtol=1e-5, atol=1e-6)
    assert len({float(s) for s in stats[:, 0]}) == 3  # the steps did train: three different losses


def test_data_is_what_make_data_describes():
    datasets, plan = make_data(TrainConfig.from_flags({**TINY_DIGITS, "n_batch_train": 8, "anchor_size": 32}))
    x, y = next(iter(datasets.train))
    assert x.shape == (32, 16, 16, 3) and plan.local_batch_train == 32  # 8 * 32**2 // 16**2
    assert plan.train_its == 8 and plan.beta2 == pytest.approx(1 - 1 / 8)  # ceil(n_train / n_batch_train)
    assert datasets.init_batch[0].shape[0] == plan.local_batch_init == 128
    assert isinstance(datasets, data.Datasets)


def test_restore_path_accepts_an_original_openai_checkpoint(golden_dir, tmp_path):
    from glow_tf import openai
    golden = os.path.join(golden_dir, "additive_shuffle_8bit")  # 16x16, 3 levels, depth 2, width 8, shuffle
    config = tiny_digits(tmp_path, n_levels=3, depth=2, width=8, flow_permutation=1, restore_path=golden)
    datasets, plan = make_data(config)
    trainer = Trainer(config, tf.distribute.get_strategy(), datasets, plan)
    assert trainer.model.config.image_size == 16 and trainer.model.config.n_channels == 3
    assert "original OpenAI checkpoint" in trainer.restore_weights(golden)
    original = openai.load_checkpoint(golden, os.path.join(golden, "hparams.json"))
    averages = openai.load_checkpoint(golden, os.path.join(golden, "hparams.json"), use_ema=True)
    for ours, theirs in zip(trainer.model.variables, original.variables):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.name)
    for shadow, theirs in zip(trainer.state.ema.shadows, averages.trainable_variables):
        np.testing.assert_array_equal(shadow.numpy(), theirs.numpy())
    stats, ok = trainer.compiled.train_chunk(tf.constant(2))  # and it trains on
    assert ok.numpy().all() and bool(trainer.model.initialized.numpy())
    wrong = tiny_digits(tmp_path, n_levels=3, depth=2, width=16, flow_permutation=1)
    wrong_trainer = Trainer(wrong, tf.distribute.get_strategy(), datasets, plan)
    with pytest.raises(ValueError, match="shape mismatch|missing"):
        wrong_trainer.restore_weights(golden)

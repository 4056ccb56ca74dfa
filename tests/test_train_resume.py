"""Training in subprocesses: SIGKILL-and-resume reproduces the uninterrupted run bit for bit;
two MirroredStrategy replicas on two logical CPUs equal one replica at the same global batch.
"""
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from conftest import REPO_ROOT

# Tiny model on the embedded digits; 4 steps of 16 images per epoch, a test pass every epoch.
TINY = ["--problem", "digits", "--n_levels", "2", "--depth", "1", "--width", "8", "--anchor_size", "16",
        "--n_batch_init", "32", "--n_batch_test", "100", "--n_train", "64", "--epochs_warmup", "0",
        "--lr", "0.003", "--epochs_full_valid", "1", "--epochs_full_sample", "100", "--log_steps",
        "--noexport", "--gradient_checkpointing", "0", "--deterministic"]

# Runs train.py's main after wrapping the step logger so that the process SIGKILLs itself
# right after logging step KILL_AFTER (mid-epoch, never at a checkpoint).
KILLER = """
import os, signal, sys
kill_after = int(sys.argv[1])
from glow_tf import train_lib
from glow_tf.cli import train
log_chunk = train_lib.TrainingRun.log_chunk

def log_chunk_then_die(self, step, stats, ok, seconds):
    log_chunk(self, step, stats, ok, seconds)
    if step + len(ok) > kill_after:
        os.kill(os.getpid(), signal.SIGKILL)

train_lib.TrainingRun.log_chunk = log_chunk_then_die
sys.argv = ["train.py"] + sys.argv[2:]
train.main()
"""

# One process with two logical CPUs: the default strategy (one replica, global batch 16),
# then MirroredStrategy over both CPUs (two replicas of 8).
TWO_REPLICAS = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from glow_tf import train_lib
from glow_tf.train_config import TrainConfig
common = dict(problem="digits", n_levels=2, depth=1, width=8, anchor_size=16, n_batch_init=32,
              n_batch_test=50, n_train=64, epochs_warmup=0, lr=0.003, epochs_full_valid=1,
              epochs_full_sample=100, log_steps=True, export=False, gradient_checkpointing=0,
              max_steps=8)
train_lib.train_and_evaluate(TrainConfig.from_flags(logdir=sys.argv[1], n_batch_train=16, **common))
train_lib.train_and_evaluate(TrainConfig.from_flags(logdir=sys.argv[2], n_batch_train=8, strategy="mirrored", **common))
"""


def records(path):
    with open(path) as f:
        return [json.loads(line) for line in f.read().splitlines()[1:]]


def start_train(logdir, *extra, killer_at=None):
    args = TINY + ["--logdir", str(logdir), "--n_batch_train", "16", "--max_steps", "12", *extra]
    if killer_at is None:
        command = [sys.executable, os.path.join(REPO_ROOT, "train.py")] + args
    else:
        command = [sys.executable, "-c", KILLER, str(killer_at)] + args
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(process, timeout=600):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def test_sigkill_and_resume_reproduce_the_uninterrupted_run(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    runs = [start_train(whole), start_train(killed, killer_at=6)]  # both at once: 2 cores
    (code, out, err), (killed_code, _, killed_err) = [finish(p) for p in runs]
    assert code == 0, err[-3000:]
    assert killed_code == -9, killed_err[-3000:]  # SIGKILL: no chance to clean up
    assert [r["step"] for r in records(killed / "train_steps.txt")] == list(range(7))
    assert tf.train.latest_checkpoint(str(killed / "checkpoints")).endswith("ckpt-4")

    code, out, err = finish(start_train(killed))  # the same command again
    assert code == 0, err[-3000:]
    assert "Resuming from" in out and "ckpt-4: step 4" in out

    whole_steps, resumed_steps = records(whole / "train_steps.txt"), records(killed / "train_steps.txt")
    assert [r["step"] for r in resumed_steps] == list(range(12))  # steps 5, 6 of the killed run dropped
    assert resumed_steps == whole_steps  # bit-identical losses (JSON floats are exact)
    assert len({r["loss"] for r in whole_steps}) == 12
    for name in ("train.txt", "test.txt"):
        strip = [{k: v for k, v in r.items() if k != "train_time"} for r in records(whole / name)]
        assert [{k: v for k, v in r.items() if k != "train_time"} for r in records(killed / name)] == strip
        assert len(strip) == 3
    final_whole = tf.train.load_checkpoint(str(whole / "checkpoints" / "ckpt-12"))
    final_resumed = tf.train.load_checkpoint(str(killed / "checkpoints" / "ckpt-12"))
    for name, _ in tf.train.list_variables(str(whole / "checkpoints" / "ckpt-12")):
        if name.startswith(("model/", "ema/", "optimizer/", "rng/")):
            np.testing.assert_array_equal(final_resumed.get_tensor(name), final_whole.get_tensor(name), err_msg=name)


def test_two_mirrored_replicas_equal_one_at_the_same_global_batch(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    result = subprocess.run([sys.executable, "-c", TWO_REPLICAS, str(one), str(two)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 replica(s) (mirrored)" in result.stdout
    one_steps, two_steps = records(one / "train_steps.txt"), records(two / "train_steps.txt")
    assert len(one_steps) == len(two_steps) == 8
    losses = np.array([r["loss"] for r in one_steps])
    assert losses[-1] < losses[0] - 0.05  # it trained
    np.testing.assert_allclose([r["loss"] for r in two_steps], losses, rtol=2e-6)
    one_test, two_test = records(one / "test.txt"), records(two / "test.txt")
    assert [r["loss"] for r in two_test] == [r["loss"] for r in one_test]  # '%.4f' as the original
    reader_one = tf.train.load_checkpoint(str(one / "checkpoints" / "ckpt-8"))
    reader_two = tf.train.load_checkpoint(str(two / "checkpoints" / "ckpt-8"))
    for name, _ in tf.train.list_variables(str(one / "checkpoints" / "ckpt-8")):
        if name.startswith("model/") and "initialized" not in name:
            np.testing.assert_allclose(reader_two.get_tensor(name), reader_one.get_tensor(name), atol=2e-5,
                                       err_msg=name)

"""train.py with faults injected, for the tests only (production code has no test hooks).

Runs glow-train's main with its arguments after patching, as the environment asks:

  GLOW_TEST_SIGTERM_AFTER_STEP=k   the process sends itself SIGTERM right after step k (0-based) is logged
  GLOW_TEST_STALL_AT_START=1       the process sleeps (alive) for an hour before the workers' first
                                   collective (cluster.check_same_step), after its set-up
  GLOW_TEST_CLOCK_JUMP_AFTER_STEP=k  Python's time.time() runs 10**6 s ahead after step k (as if
                                   this worker alone had trained that long)
  GLOW_TEST_SLOW_SAVE=n            the write of checkpoint n (ckpt-n) pauses for GLOW_TEST_SLOW_SAVE_SECONDS (3)
                                   after its files are written and before the checkpoint state points
                                   to them; GLOW_TEST_SLOW_SAVE_MARKER is created when the pause starts

Steps are seen through the step records of train_steps.txt (JsonLinesLog.log: called on every
worker, written by the chief with --log_steps).
"""
import os
import signal
import sys
import time

from glow_tf import cluster  # first: glow_tf sets the environment TensorFlow reads at import
from glow_tf.cli import train
from glow_tf.train_logs import JsonLinesLog

import tensorflow as tf  # noqa: E402


def after_step(step, action):
    """Runs ``action()`` once, right after the step record of ``step`` is logged."""
    log = JsonLinesLog.log

    def log_then_act(self, *records):
        log(self, *records)
        if any(record.get("step") == step for record in records):
            action()

    JsonLinesLog.log = log_then_act


def slow_save(number, seconds, marker):
    """Checkpoint ``number``: pause between writing its files and recording it as the latest."""
    save = tf.train.CheckpointManager.save

    def pause(save_path):
        if save_path.endswith(f"ckpt-{number}"):
            open(marker, "w").close()
            time.sleep(seconds)

    def save_slowly(self, checkpoint_number=None, check_interval=True, options=None):
        if checkpoint_number != number:
            return save(self, checkpoint_number, check_interval, options)
        # The manager's own callback (recording the checkpoint state) runs after this one.
        return save(self, checkpoint_number, check_interval,
                    tf.train.CheckpointOptions(experimental_write_callbacks=[pause]))

    tf.train.CheckpointManager.save = save_slowly


if "GLOW_TEST_SIGTERM_AFTER_STEP" in os.environ:
    after_step(int(os.environ["GLOW_TEST_SIGTERM_AFTER_STEP"]), lambda: os.kill(os.getpid(), signal.SIGTERM))
if "GLOW_TEST_STALL_AT_START" in os.environ:
    cluster.check_same_step = lambda strategy, step: time.sleep(3600)
if "GLOW_TEST_CLOCK_JUMP_AFTER_STEP" in os.environ:
    now = time.time
    after_step(int(os.environ["GLOW_TEST_CLOCK_JUMP_AFTER_STEP"]), lambda: setattr(time, "time", lambda: now() + 1e6))
if "GLOW_TEST_SLOW_SAVE" in os.environ:
    slow_save(int(os.environ["GLOW_TEST_SLOW_SAVE"]), float(os.environ.get("GLOW_TEST_SLOW_SAVE_SECONDS", "3")),
              os.environ["GLOW_TEST_SLOW_SAVE_MARKER"])
sys.argv[0] = "train.py"
train.main()

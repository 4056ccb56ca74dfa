"""train.py with faults injected, for the tests only (production code has no test hooks).

Runs glow-train's main with its arguments after patching, as the environment asks:

  GLOW_TEST_SIGTERM_AFTER_STEP=k   the process sends itself SIGTERM right after step k (0-based) is logged
  GLOW_TEST_PAUSE_AFTER_STEP=k     the process sleeps (alive) for an hour right after step k is logged, so
                                   that a test can kill it there and nowhere later
  GLOW_TEST_STALL_AT_START=1       the process sleeps (alive) for an hour before the workers' first
                                   collective (cluster.check_same_step), after its set-up
  GLOW_TEST_CLOCK_JUMP_AFTER_STEP=k  Python's time.time() runs 10**6 s ahead after step k (as if
                                   this worker alone had trained that long)
  GLOW_TEST_SAVE_WAITS_FOR_SIGTERM=n  the write of checkpoint n (ckpt-n) pauses after its files are written
                                   and before the checkpoint state names them, until the process gets
                                   SIGTERM (an hour at most); GLOW_TEST_SAVE_MARKER is created when the
                                   pause starts

Steps are seen through the step records of train_steps.txt (JsonLinesLog.log: called on every
worker, written by the chief with --log_steps).
"""
import os
import signal
import sys
import time

from glow_tf import cluster, preemption  # first: glow_tf sets the environment TensorFlow reads at import
from glow_tf.cli import train
from glow_tf.train_logs import JsonLinesLog

import tensorflow as tf  # noqa: E402

AN_HOUR = 3600


def after_step(step, action):
    """Runs ``action()`` once, right after the step record of ``step`` is logged."""
    log = JsonLinesLog.log

    def log_then_act(self, *records):
        log(self, *records)
        if any(record.get("step") == step for record in records):
            action()

    JsonLinesLog.log = log_then_act


def save_waits_for_sigterm(number, marker):
    """Checkpoint ``number``: between writing its files and recording it as the latest, wait for SIGTERM."""
    save = tf.train.CheckpointManager.save
    sigterm_seen = []
    on_sigterm = preemption.PreemptionWatcher._on_sigterm

    def note_sigterm(self, signum, frame):
        sigterm_seen.append(signum)
        on_sigterm(self, signum, frame)

    preemption.PreemptionWatcher._on_sigterm = note_sigterm

    def pause(save_path):
        if save_path.endswith(f"ckpt-{number}"):
            open(marker, "w").close()
            deadline = time.time() + AN_HOUR
            while not sigterm_seen and time.time() < deadline:
                time.sleep(0.05)  # the handler runs in this (the main) thread, between two sleeps

    def save_after_sigterm(self, checkpoint_number=None, check_interval=True, options=None):
        if checkpoint_number != number:
            return save(self, checkpoint_number, check_interval, options)
        # The manager's own callback (recording the checkpoint state) runs after this one.
        return save(self, checkpoint_number, check_interval,
                    tf.train.CheckpointOptions(experimental_write_callbacks=[pause]))

    tf.train.CheckpointManager.save = save_after_sigterm


if "GLOW_TEST_SIGTERM_AFTER_STEP" in os.environ:
    after_step(int(os.environ["GLOW_TEST_SIGTERM_AFTER_STEP"]), lambda: os.kill(os.getpid(), signal.SIGTERM))
if "GLOW_TEST_PAUSE_AFTER_STEP" in os.environ:
    after_step(int(os.environ["GLOW_TEST_PAUSE_AFTER_STEP"]), lambda: time.sleep(AN_HOUR))
if "GLOW_TEST_STALL_AT_START" in os.environ:
    cluster.check_same_step = lambda strategy, step: time.sleep(AN_HOUR)
if "GLOW_TEST_CLOCK_JUMP_AFTER_STEP" in os.environ:
    now = time.time
    after_step(int(os.environ["GLOW_TEST_CLOCK_JUMP_AFTER_STEP"]), lambda: setattr(time, "time", lambda: now() + 1e6))
if "GLOW_TEST_SAVE_WAITS_FOR_SIGTERM" in os.environ:
    save_waits_for_sigterm(int(os.environ["GLOW_TEST_SAVE_WAITS_FOR_SIGTERM"]), os.environ["GLOW_TEST_SAVE_MARKER"])
sys.argv[0] = "train.py"
train.main()

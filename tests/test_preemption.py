"""SIGTERM: a checkpoint at the next step boundary and exit status 42; the same command resumes
exactly (tests/processes.py's tiny run, one process, --deterministic: bit for bit)."""
import random
import signal
import time

import numpy as np
import pytest
import tensorflow as tf

from glow_tf import checkpoints, preemption
from processes import STEPS, TIMEOUT, TRAIN_WITH_FAULTS, finish, output, records, start, train_args

# One pytest-xdist worker runs the tests that share the session fixture one_process_run (computed once).
pytestmark = pytest.mark.xdist_group("one_process_run")


def test_the_watcher_turns_sigterm_into_a_checkpoint_and_preempted_and_restores_the_handler():
    previous = signal.getsignal(signal.SIGTERM)
    saved = []
    with preemption.PreemptionWatcher(tf.distribute.get_strategy()) as watcher:
        assert not watcher.stop_requested()  # no SIGTERM yet
        signal.raise_signal(signal.SIGTERM)  # handled: the process goes on
        assert watcher.stop_requested()
        with pytest.raises(preemption.Preempted, match="SIGTERM: stopped at step 2 after writing its checkpoint"):
            watcher.checkpoint_and_stop(lambda: saved.append("step 2"), step=2)
    assert saved == ["step 2"] and signal.getsignal(signal.SIGTERM) is previous


def without_times(path):
    return [{k: v for k, v in record.items() if k != "train_time"} for record in records(path)]


def test_sigterm_at_a_random_step_and_during_a_checkpoint_write_then_resume_exactly(one_process_run, tmp_path):
    """Run 1 gets SIGTERM right after a random step k: it writes step k + 1's checkpoint and exits
    with status 42. The same command resumes (run 2). Run 2's write of ckpt-8 (epoch 2's) pauses
    after its files are written, before the checkpoint state names it, until SIGTERM comes (sent
    by the test once it has seen the pause begin): the write finishes, the run stops at the next boundary (the end, so no final test pass,
    sample grids or export) with status 42, and that checkpoint and the previous ones load.
    The steps, epoch logs and weights are the uninterrupted run's, bit for bit."""
    sigterm_after = random.randrange(STEPS - 2)  # 0..5: run 1 stops before epoch 2's checkpoint
    logdir, marker = tmp_path / "run", tmp_path / "writing"
    code, _, err = finish(start([TRAIN_WITH_FAULTS] + train_args(logdir), tmp_path / "run1",
                                {"GLOW_TEST_SIGTERM_AFTER_STEP": sigterm_after}))
    assert code == preemption.EXIT_STATUS, err[-3000:]
    assert err.strip().splitlines()[-1] == (
        f"train.py: SIGTERM: stopped at step {sigterm_after + 1} after writing its checkpoint; run the same "
        f"command again to resume (exit status {preemption.EXIT_STATUS})"), f"SIGTERM after step {sigterm_after}"
    assert tf.train.latest_checkpoint(str(logdir / "checkpoints")).endswith(f"ckpt-{sigterm_after + 1}")

    run2 = start([TRAIN_WITH_FAULTS] + train_args(logdir), tmp_path / "run2",
                 {"GLOW_TEST_SAVE_WAITS_FOR_SIGTERM": STEPS, "GLOW_TEST_SAVE_MARKER": marker})
    deadline = time.time() + TIMEOUT
    while not marker.exists():
        assert run2.poll() is None and time.time() < deadline, "no write of ckpt-8 seen: " + output(run2, "err")
        time.sleep(0.05)
    previous = tf.train.latest_checkpoint(str(logdir / "checkpoints"))
    assert previous.endswith(f"ckpt-{max(4, sigterm_after + 1)}")  # in the window: ckpt-8 not yet named
    run2.send_signal(signal.SIGTERM)
    code, out, err = finish(run2)
    assert code == preemption.EXIT_STATUS, err[-3000:]
    assert f"ckpt-{sigterm_after + 1}: step {sigterm_after + 1}" in out and "final test" not in out
    assert f"stopped at step {STEPS}" in err and not (logdir / "saved_model").exists()
    assert tf.train.latest_checkpoint(str(logdir / "checkpoints")).endswith(f"ckpt-{STEPS}")
    for prefix in (previous, str(logdir / "checkpoints" / f"ckpt-{STEPS}")):
        step = int(prefix.rsplit("-", 1)[1])
        assert tf.train.load_checkpoint(prefix).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == step
        model = checkpoints.restore_model(prefix)
        assert np.isfinite(model.bits_per_dim(np.zeros((2, 16, 16, 3), np.uint8)).numpy()).all()

    reference = one_process_run.wait()
    for name in ("train_steps.txt", "train.txt", "test.txt"):  # JSON floats are exact
        assert without_times(logdir / name) == without_times(reference / name), (name, sigterm_after)
    final, uninterrupted = (tf.train.load_checkpoint(str(d / "checkpoints" / f"ckpt-{STEPS}"))
                            for d in (logdir, reference))
    for name, _ in tf.train.list_variables(str(reference / "checkpoints" / f"ckpt-{STEPS}")):
        if name.startswith(("model/", "ema/", "optimizer/")):
            np.testing.assert_array_equal(final.get_tensor(name), uninterrupted.get_tensor(name), err_msg=name)

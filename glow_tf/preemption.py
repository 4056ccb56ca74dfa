"""Preemption: on SIGTERM, a checkpoint at the next step boundary, then exit status 42.

Preemptible machines (cloud spot VMs, Kubernetes, Slurm's preemption and time limits) announce
the end with SIGTERM and kill the process a grace period later (commonly 30 s). While training,
``PreemptionWatcher`` turns SIGTERM into a request: at the next step boundary (between two
calls of the training step function, i.e. every ``--steps_per_execution`` steps, or after an
epoch's test pass and sample grids when the signal came during them) the loop's one check
between chunks (``train_lib.TrainingRun.stop_reason``) sees ``stop_requested()`` and calls
``checkpoint_and_stop``, which writes the checkpoint and raises ``Preempted``; the
program then exits with ``EXIT_STATUS``, and running the same command again resumes exactly
from that checkpoint. The handler only sets a flag, so a SIGTERM during a checkpoint write lets
the write finish. Further SIGTERMs change nothing; SIGKILL, when the grace period is over,
leaves the last complete checkpoint.

With several workers (``--strategy multi_worker``) the SIGTERM may reach any of them, or all:
at every boundary the workers agree (``cluster.any_worker``, one scalar collective) whether any
of them was asked to stop, so that all of them save the same step, wait for each other and exit.

Why not ``tf.distribute.experimental.PreemptionCheckpointHandler``: its job is the same, and its
source (tensorflow/python/distribute/failure_handling/failure_handling.py, TF 2.21) shows where
it does not fit this loop: (1) every construction probes Google's metadata server over HTTP
(``failure_handling_util.on_gcp``, up to 5 s); on a Google Cloud CPU or TPU VM it then handles
nothing (it warns that it does not support them and installs no handler), and on a Google Cloud
GPU VM it polls the maintenance event instead of SIGTERM and by default trains on for its hour
of grace; (2) it restores the latest checkpoint itself when constructed (glow_tf restores with
its own checks) and adds a ``checkpointed_runs`` variable to the checkpoint, whose value (the
number of its ``run`` calls, the count on which the workers agree) is read back from the
checkpoint manager it is given: on a non-chief worker, whose checkpoints go to a temporary
directory, it would start at 0 while the chief's comes from the checkpoint, and after a
resume the workers would save at different steps; (3) its SIGTERM handler stays installed
for the life of the process. Its exit status outside Google Cloud, 42, is kept.
"""
import signal
import threading

from absl import logging

from glow_tf import cluster

EXIT_STATUS = 42  # as PreemptionCheckpointHandler's default exit outside Google Cloud


class Preempted(Exception):
    """Training stopped on SIGTERM after writing a checkpoint at ``step``."""

    def __init__(self, step):
        super().__init__(f"SIGTERM: stopped at step {step} after writing its checkpoint; run the same command "
                         f"again to resume (exit status {EXIT_STATUS})")
        self.step = step


class PreemptionWatcher:
    """Within ``with watcher:``, SIGTERM asks the training loop to checkpoint and stop.

    Args:
      strategy: the run's tf.distribute strategy (its workers agree on stopping).
    """

    def __init__(self, strategy):
        self.strategy = strategy
        self._requested = threading.Event()
        self._previous_handler = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # Python runs handlers there only
            self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
        else:
            logging.warning("training outside the main thread: SIGTERM will not save a checkpoint first")
        return self

    def __exit__(self, *exc_info):
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._previous_handler = None

    def _on_sigterm(self, signum, frame):
        del signum, frame
        self._requested.set()

    def stop_requested(self) -> bool:
        """Whether this process, or any worker, got SIGTERM; every worker calls it at the same boundaries."""
        return cluster.any_worker(self.strategy, self._requested.is_set())

    def checkpoint_and_stop(self, save, step):
        """After ``stop_requested()``: ``save()``, wait for every worker, raise Preempted.

        The wait keeps a worker from exiting while another still writes: launchers such as
        mpiexec end the remaining processes as soon as one exits.
        """
        save()
        cluster.barrier(self.strategy)
        raise Preempted(step)

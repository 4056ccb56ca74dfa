"""The training run: ``train_and_evaluate(config)`` (inference mode: ``glow_tf.inference``).

The loop is the original train.py's, on tf.distribute with XLA. Its parts: the plan (batch
sizes, epochs: ``plan``), the seeds (``seeds``), the strategy and the chief (``cluster``), the
checkpointed state (``train_state``), the compiled step, test pass and sample grids
(``trainer``); here, the run around them:

* Data-dependent init once, on one init batch, in cross-replica context (identical on every
  replica, as the original's rank-0-then-broadcast); never again on restore.
* A step whose loss or gradients are not finite changes nothing and is counted;
  ``max_nonfinite`` consecutive ones stop the run (``NonFiniteError``) with the last checkpoint
  untouched.
* Epochs are ``train_its`` steps. At an epoch's end, as the original: a train.txt line (the
  epoch's mean statistics), a test pass every ``epochs_full_valid`` epochs (test.txt; the best
  test loss is also checkpointed in ``model_best_loss/``), sample grids at epochs 1, 10 and every
  ``epochs_full_sample`` epochs (``epoch_{e}_sample_{i}.png``, one per temperature); then a
  checkpoint. Checkpoints are also written every ``checkpoint_minutes``.
* Exact resume: a checkpoint (``TrainState``) holds the model, the optimizer, the Polyak average,
  the step, the RNG, the data iterator and the epoch's running sums, so a run resumed from any checkpoint
  continues exactly as if never stopped (bit-identical on CPU with ``--deterministic``). Log
  records written after that checkpoint are dropped on resume.
* The loop is one loop over chunks of steps; between two chunks ``TrainingRun.stop_reason`` is
  the one place that decides whether the run stops now (epochs done, ``max_steps``,
  ``max_time``). The end: a checkpoint, a test pass and sample grids (unless this step already
  had them), and the SavedModel export.

Logs (``train_logs``): ``train.txt`` / ``test.txt`` as the original's, ``train_steps.txt``
with ``--log_steps``, TensorBoard summaries in ``tensorboard/``.
"""
import contextlib
import dataclasses
import os
import tempfile
import time
from typing import Optional

import numpy as np
import tensorflow as tf
from absl import logging

from glow_tf import checkpoints, cluster, errors, export, files, heap, preemption, progress, sampling, seeds
from glow_tf.plan import make_data, should_sample, should_test
from glow_tf.train_config import RESUMABLE_FLAGS, TrainConfig, flag_defaults
from glow_tf.train_logs import RunLogs
from glow_tf.trainer import Trainer

# stop_reason's answer when SIGTERM came: a checkpoint, then preemption.Preempted (exit status 42).
PREEMPTED = "SIGTERM"


class NonFiniteError(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


# ------------------------------------------------------------------------------ the run
class TrainingRun:
    """One training run in ``config.logdir``: set-up or resume, the loop over chunks, the end."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.logdir = os.path.abspath(config.logdir)
        self.strategy = cluster.make_strategy(config)
        self.chief = cluster.is_chief(self.strategy)
        self.datasets, self.plan = make_data(config, self.strategy.num_replicas_in_sync)
        self.hps = {**config.flags(), **dataclasses.asdict(self.plan)}
        self.logs = RunLogs(self.logdir, self.hps, self.plan, self.chief, config.log_steps)
        if self.chief:
            os.makedirs(self.logdir, exist_ok=True)
        ckpt_dir = os.path.join(self.logdir, checkpoints.CHECKPOINTS_DIR)
        best_dir = os.path.join(self.logdir, checkpoints.BEST_DIR)
        resumable = checkpoints.find_resumable(ckpt_dir)  # every worker resumes from the chief's
        resume_prefix = resumable.prefix
        if self.chief and resumable.needs_new_state:
            self._set_aside(resumable)
        # Other workers write their copies of the checkpoint aside, removed when the run ends.
        self.scratch = (contextlib.nullcontext() if self.chief
                        else tempfile.TemporaryDirectory(prefix="glow_tf_worker_ckpt_"))
        if not self.chief:
            ckpt_dir, best_dir = self.scratch.name, os.path.join(self.scratch.name, checkpoints.BEST_DIR)

        self.trainer = Trainer(config, self.strategy, self.datasets, self.plan)
        self.state = self.trainer.state
        if resume_prefix:
            self._check_resume()
        origin = self.trainer.start(resume_prefix)
        cluster.check_same_step(self.strategy, self.state.steps_done)
        self.preemption = preemption.PreemptionWatcher(self.strategy)
        if self.chief:
            files.write_json_atomic(os.path.join(self.logdir, checkpoints.CONFIG_FILE),
                                    {"model": self.trainer.model.config.to_dict(), "train": self.hps})
        self.manager = tf.train.CheckpointManager(self.state.checkpoint, ckpt_dir, config.keep_checkpoints)
        self.best_manager = tf.train.CheckpointManager(self.state.checkpoint, best_dir, 1)
        self.logs.open(resumed_at=self.state.steps_done if resume_prefix else None)
        self.logs.print(origin)
        self.logs.print(f"Logging to {self.logdir}. {self.plan.n_replicas} replica(s) ({config.strategy}); "
                        f"batch per step {self.plan.global_batch_train} images of {self.plan.image_size}x"
                        f"{self.plan.image_size}; {self.plan.train_its} steps per epoch; data: {self.datasets.info.source}")
        self.last_test_step = self.last_sample_step = self.last_save_step = (
            self.state.steps_done if resume_prefix else -1)
        self.last_sample_epoch = None

    def _set_aside(self, resumable):
        """Says which checkpoints cannot be read, keeps them aside, and resumes from the newest that can."""
        if resumable.state_note:
            self.logs.print(f"Note: {resumable.state_note}")
        reasons = dict(resumable.damaged)
        for prefix, kept_as in checkpoints.set_aside(resumable):
            self.logs.print(f"Checkpoint {prefix} cannot be read ({reasons[prefix]}); its files are kept as "
                        f"{kept_as}.*; resuming from an older one")

    def _last_good_checkpoint(self) -> Optional[str]:
        """The newest checkpoint the checkpoint state on disk names (a failed write changes neither), or None."""
        return tf.train.latest_checkpoint(self.manager.directory)

    def _check_resume(self):
        saved = checkpoints.read_run_config(self.logdir)
        checkpoints.check_same_model(saved["model"], self.trainer.model.config, f"--logdir {self.logdir}")
        # A flag missing from the saved hps is one the code that wrote them did not have: it ran
        # as that flag's default.
        before = {**flag_defaults(), **saved["train"]}
        changed = [f"--{k} {before.get(k)!r} -> {v!r}" for k, v in self.hps.items()
                   if k not in RESUMABLE_FLAGS and before.get(k) != v]
        if changed:
            self.logs.print("Note: resuming with changed flags (the run will not match an uninterrupted one): "
                        + ", ".join(changed))
        precision_note = checkpoints.precision_change(saved["model"], self.trainer.model.precision)
        if precision_note:
            self.logs.print(f"Note: {precision_note}")

    # ----------------------------------------------------------------------- the loop
    def run(self):
        """The loop, and its end (``_loop``); a failed write stops it with a WriteError saying where to
        resume, a bad record in streamed data with a DataError naming its file."""
        try:
            with self.datasets.reading():
                self._loop()
        except errors.WriteError as e:
            last = self._last_good_checkpoint()
            raise errors.WriteError(f"{e}. Training stopped at step {self.state.steps_done}; "
                                    f"{checkpoints.describe_last(last)}. Make room, then run the same command again to "
                                    f"{'resume from it' if last else 'start the run'}") from None

    def _loop(self):
        """The loop over chunks of steps: between two chunks, stop, end an epoch or checkpoint."""
        config, plan = self.config, self.plan
        self.start_time = time.time()
        step = self.state.steps_done
        epoch_start_time, epoch_start_step = time.time(), step
        last_save_time, bar = time.time(), None
        self.logs.print("epoch n_processed n_images ips dtrain dtest dsample dtot train_results test_results msg")
        while (reason := self.stop_reason(step)) is None:
            epoch = plan.epoch_of(step)
            bar = bar or progress.bar(total=plan.train_its, initial=step % plan.train_its, desc=f"epoch {epoch}",
                                      show=self.chief, delay=0)
            step, stats, ok, seconds = self._train_chunk(step)
            bar.update(len(ok))
            if ok.any():
                bar.set_postfix({"bits/dim": f"{stats[ok, 1].mean():.4f}",
                                 "img/s": f"{len(ok) * plan.global_batch_train / seconds:.0f}"})
            if step % plan.train_its == 0:
                bar = bar.close()
                self._end_of_epoch(epoch, step, time.time() - epoch_start_time, step - epoch_start_step)
                epoch_start_time, epoch_start_step = time.time(), step
                last_save_time = time.time()
            elif time.time() - last_save_time >= 60 * config.checkpoint_minutes:
                self._save(step)
                last_save_time = time.time()
        if bar is not None:
            bar.close()
        if reason == PREEMPTED:
            self.preemption.checkpoint_and_stop(lambda: self._save(step), step)
        self._finish(step)

    def stop_reason(self, step):
        """Why the run stops before ``step`` (None: it goes on): the one check between two chunks.

        Every worker of a multi-worker run calls it at the same steps and gets the same answer
        (the preemption and time checks are agreed on: ``cluster.any_worker``).
        """
        config = self.config
        if self.preemption.stop_requested():
            return PREEMPTED
        if self.plan.epoch_of(step) >= config.epochs:
            return "epochs done"
        if config.max_steps and step >= config.max_steps:
            return "--max_steps"
        if config.max_time and cluster.any_worker(self.strategy, time.time() - self.start_time >= config.max_time):
            return "--max_time"
        return None

    def _train_chunk(self, step):
        """Runs the steps up to the epoch's end (at most steps_per_execution, and max_steps); logs them."""
        config, plan = self.config, self.plan
        n = min(config.steps_per_execution, plan.steps_to_epoch_end(step))
        if config.max_steps:
            n = min(n, config.max_steps - step)
        chunk_start = time.time()
        stats, ok = (t.numpy() for t in self.trainer.compiled.train_chunk(tf.constant(n, tf.int32)))
        seconds = time.time() - chunk_start
        self.state.add_train_time(seconds)
        self.log_chunk(step, stats, ok, seconds)
        self._check_nonfinite()
        return step + len(ok), stats, ok, seconds

    def log_chunk(self, step, stats, ok, seconds):
        """Logs the steps of a chunk (from ``step``): ``RunLogs.chunk``."""
        self.logs.chunk(step, stats, ok, seconds, lr=self.trainer.learning_rate(step + len(ok) - 1),
                        nonfinite_total=self.state.nonfinite_counts()[1], verbose=self.config.verbose)

    def _check_nonfinite(self):
        limit = self.config.max_nonfinite
        run, total = self.state.nonfinite_counts()
        last = self.state.steps_done - 1
        if run:
            logging.warning("step %d: non-finite loss or gradients; step skipped (%d in a row, %d in all)",
                            last, run, total)
        if run >= limit:
            raise NonFiniteError(
                f"{run} consecutive steps (--max_nonfinite {limit}) had a non-finite loss or gradients, up to "
                f"step {last}; stopping: {checkpoints.describe_last(self._last_good_checkpoint())}. Try a lower --lr, "
                "a longer --epochs_warmup, or --flow_coupling 0 (additive).")

    def _end_of_epoch(self, epoch, step, dtrain, steps_this_epoch):
        """The original's end-of-epoch: train log, test, best checkpoint, samples, then a checkpoint."""
        plan = self.plan
        train_results = self.state.end_epoch()
        self.logs.epoch(epoch, step, int(self.state.train_time.numpy()), train_results)
        t = time.time()
        test_results, msg = [], ""
        if should_test(epoch, self.config):
            test_results, msg = self._test(epoch, step)
        dtest, t = time.time() - t, time.time()
        if should_sample(epoch, self.config):
            self._samples(epoch, step)
        dsample = time.time() - t
        ips = steps_this_epoch * plan.global_batch_train / max(dtrain, 1e-9)
        self.logs.print(epoch, plan.n_processed(step), plan.n_images(step),
                    f"{ips:.1f} {dtrain:.1f} {dtest:.1f} {dsample:.1f} {dtrain + dtest + dsample:.1f}",
                    np.round(train_results, 4), np.round(test_results, 4), msg)
        self._save(step)

    def _test(self, epoch, step):
        results = self.trainer.evaluate()
        self.last_test_step = step
        self.logs.test_pass(epoch, step, results)
        msg = ""
        if self.state.improve_best(results[0]):
            checkpoints.save(self.best_manager, step)
            msg = " *"
        return results, msg

    def _samples(self, epoch, step):
        self.last_sample_step, self.last_sample_epoch = step, epoch
        if not self.chief:
            return
        grids = self.trainer.sample_grids(epoch)
        for index, (temperature, grid) in enumerate(grids):
            raster = sampling.to_raster(grid.reshape((-1,) + grid.shape[2:]), grid.shape[1])  # grid [rows, cols, H, W, C]
            try:
                sampling.save_raster(raster, os.path.join(self.logdir, f"epoch_{epoch}_sample_{index}.png"))
            except errors.WriteError as e:  # a figure, not the training state: the run goes on
                logging.warning("%s; training goes on without that sample grid", e)
            self.logs.image(f"samples/temperature_{temperature}", raster, step)

    def _save(self, step):
        if step != self.last_save_step:
            checkpoints.save(self.manager, step)
            self.last_save_step = step

    def _finish(self, step):
        """The end of the run: test pass, samples, checkpoint (each unless this step had it), export."""
        epoch = self.plan.epochs_begun(step)
        if step != self.last_test_step:
            results, msg = self._test(epoch, step)
            self.logs.print(f"final test at step {step}: {np.round(results, 4)}{msg}")
        if step != self.last_sample_step:
            self._samples(epoch, step)
        self._save(step)
        self.logs.writer.flush()
        self.logs.print(f"Finished at step {step} (epoch {epoch}): checkpoint {self.manager.latest_checkpoint}")
        if self.last_sample_epoch is not None:
            temperatures = sampling.SWEEP_TEMPERATURES
            self.logs.print(f"Sample grids: {self.logdir}/epoch_{self.last_sample_epoch}_sample_{{0..{len(temperatures) - 1}}}.png "
                        f"(temperatures {', '.join(map(str, temperatures))})")
        if self.chief and self.config.export:
            # The live model holds the checkpoint just written; exporting it with the averages
            # swapped in (not a model restored from that checkpoint) makes no further copy of
            # the weights (0.65 GiB at CelebA-HQ size).
            with self.state.averaged_weights():
                path = export.export_saved_model(self.trainer.model, os.path.join(self.logdir, "saved_model"),
                                                 overwrite=True, seed=self.config.seed)
            self.logs.print(f"SavedModel (Polyak-averaged weights): {path}")


def train_and_evaluate(config: TrainConfig):
    """Trains (or resumes) the run of ``config`` in ``config.logdir``; see the module docstring.

    Raises ValueError for bad flags and NonFiniteError when training diverges.
    """
    if config.inference:
        raise ValueError("--inference: call glow_tf.inference.infer (train.py does)")
    seeds.seed_everything(config.seed, config.deterministic)
    run = TrainingRun(config)
    # SIGTERM: a checkpoint at the next step boundary, then preemption.Preempted; scratch: removed at the end;
    # the heap trimmer: what XLA's compiler threads free leaves resident memory (glow_tf/heap.py).
    with run.preemption, run.scratch, heap.HeapTrimmer():
        run.run()

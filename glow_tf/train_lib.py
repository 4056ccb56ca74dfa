"""The training loop: ``train_and_evaluate(config)`` (inference mode: ``glow_tf.inference``).

The loop is the original train.py's, on tf.distribute with XLA:

* Data-dependent init once, on one init batch, in cross-replica context (identical on every
  replica, as the original's rank-0-then-broadcast); never again on restore.
* Each step (``Trainer.train_chunk`` runs ``steps_per_execution`` of them in one tf.function;
  ``Compilation`` decides what XLA compiles):
  the global batch and its dequantisation noise (one stateless draw per step, seeded from the
  checkpointed ``tf.random.Generator``, made outside XLA, whose random bits differ) are split
  over the replicas in order, so the numbers do not depend on the replica count; gradients and
  statistics are averaged over replicas (adam2 also averages g**2); a step whose loss or
  gradients are not finite changes nothing and is counted, and ``max_nonfinite`` consecutive
  ones stop the run (``NonFiniteError``) with the last checkpoint untouched. With one replica
  and ``jit_compile`` the whole step (forward, backward, update, Polyak average) is one XLA
  computation; with several, each replica's forward and backward is.
* Learning rate: ``lr * min(1, n_processed / (n_train * epochs_warmup))`` with n_processed the
  images seen at the anchor resolution before the step (so the first step has lr 0, as the
  original).
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
import math
import os
import sys
import tempfile
import time
from typing import Optional

import numpy as np
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from glow_tf import checkpoints, cluster, data, errors, files, heap, optim, preemption, sampling
from glow_tf.config import GlowConfig
from glow_tf.model import Glow
from glow_tf.train_config import TrainConfig, flag_defaults
from glow_tf.train_logs import STATS, JsonLinesLog, format_results, summary_image, summary_scalar
from glow_tf.train_state import TrainState

# Salts of the stateless seeds (config.seed, salt + i) of init, test and inference noise.
INIT_SALT, EVAL_SALT = 1, 2 ** 20
# Flags that may change when a run is resumed without being worth a note.
_RESUMABLE_CHANGES = ("max_steps", "max_time", "epochs", "verbose", "checkpoint_minutes", "export",
                      "keep_checkpoints", "log_steps", "restore_path", "logdir", "steps_per_execution",
                      "worker_hosts", "base_port", "collective_timeout")


# stop_reason's answer when SIGTERM came: a checkpoint, then preemption.Preempted (exit status 42).
PREEMPTED = "SIGTERM"


class NonFiniteError(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


# --------------------------------------------------------------------------- set-up helpers
def make_strategy(config: TrainConfig) -> tf.distribute.Strategy:
    """The tf.distribute strategy of ``--strategy`` (call before TensorFlow runs any op)."""
    if config.cpu_replicas:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * config.cpu_replicas)
        except RuntimeError as e:
            raise ValueError(f"--cpu_replicas: TensorFlow is already initialised; set it before any "
                             f"TensorFlow op runs ({e})") from None
    if config.strategy == "default":
        return tf.distribute.get_strategy()
    if config.strategy == "mirrored":
        devices = ([d.name for d in tf.config.list_logical_devices("GPU")]
                   or [d.name for d in tf.config.list_logical_devices("CPU")])
        return tf.distribute.MirroredStrategy(devices)
    if config.strategy == "multi_worker":
        return cluster.make_strategy(config.worker_hosts, config.base_port, config.collective_timeout)
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=config.tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy) -> bool:
    """Whether this process writes logs, samples and the export (multi-worker: the chief)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker"
                                             and resolver.task_id == 0)


def seed_everything(config: TrainConfig):
    """Seeds Python, numpy and TensorFlow (initialisers) as the original; --deterministic: op determinism."""
    tf.keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()


@dataclasses.dataclass(frozen=True)
class Plan:
    """The original's derived hps: batch sizes, epoch length, beta2 (all logged in the hps line).

    Attributes:
      n_replicas: replicas in sync.
      image_size: resolved image size.
      local_batch_train, local_batch_test, local_batch_init: per-replica batches at image_size.
      global_batch_train: images per training step over all replicas.
      n_train, n_test, n_y: epoch size, test images, classes (from the data).
      train_its: steps per epoch, ceil(n_train / (n_batch_train * n_replicas)).
      beta2: 1 - 1 / (train_its * polyak_epochs).
    """
    n_replicas: int
    image_size: int
    local_batch_train: int
    local_batch_test: int
    local_batch_init: int
    global_batch_train: int
    n_train: int
    n_test: int
    n_y: int
    train_its: int
    beta2: float


def _anchor_batch(config: TrainConfig, batch, image_size, name):
    local = batch * config.anchor_size ** 2 // image_size ** 2
    if local < 1:
        raise ValueError(f"--{name}: expected {name} * anchor_size**2 // image_size**2 >= 1, got "
                         f"{batch} * {config.anchor_size}**2 // {image_size}**2 = {local}")
    return local


def make_data(config: TrainConfig, n_replicas=1):
    """(data.Datasets, Plan) for ``config`` and the replica count."""
    image_size = config.data.resolved_image_size
    local_train = _anchor_batch(config, config.n_batch_train, image_size, "n_batch_train")
    local_init = _anchor_batch(config, config.n_batch_init, image_size, "n_batch_init")
    local_test = config.local_batch_test(local_train)
    datasets = data.make_datasets(config.data.replace(n_batch_train=local_train * n_replicas,
                                                      n_batch_test=local_test * n_replicas,
                                                      n_batch_init=local_init))
    info = datasets.info
    train_its = int(math.ceil(info.n_train / (config.n_batch_train * n_replicas)))
    plan = Plan(n_replicas=n_replicas, image_size=info.image_size, local_batch_train=local_train,
                local_batch_test=local_test, local_batch_init=local_init,
                global_batch_train=local_train * n_replicas, n_train=info.n_train, n_test=info.n_test,
                n_y=info.n_y, train_its=train_its, beta2=optim.polyak_decay(train_its, config.polyak_epochs))
    return datasets, plan


# GlowConfig fields that do not change what a checkpoint holds: the memory mode, the
# initialisation seed (a restored model keeps its checkpoint's values) and the coupling
# networks' precision (the variables are float32 in every precision).
_CHECKPOINT_NEUTRAL = ("gradient_checkpointing", "seed", "precision")


def model_flag_differences(saved: dict, current: GlowConfig):
    """['--depth 2 (now 4)', ...] for model hyper-parameters that differ (memory mode and seed aside)."""
    current = current.to_dict()
    return [f"--{k} {saved.get(k)!r} (now {current[k]!r})" for k in current
            if k not in _CHECKPOINT_NEUTRAL and saved.get(k) != current[k]]


def check_same_model(saved: dict, current: GlowConfig, where):
    """A ValueError naming the flags if the model of ``saved`` (GlowConfig.to_dict()) is another one."""
    differences = model_flag_differences(saved, current)
    if differences:
        raise ValueError(f"{where} holds a model with different flags: {', '.join(differences)}. "
                         "Pass the same model flags (or use another --logdir).")


def stateless_noise(shape, seed, n_bins):
    """U(0, 1/n_bins) dequantisation noise from a stateless seed."""
    return tf.random.stateless_uniform(shape, seed, 0.0, 1.0 / n_bins)


def describe_checkpoint(prefix) -> str:
    """'the last good checkpoint is PREFIX (step N)' for a run's latest checkpoint; None: none written yet."""
    if prefix is None:
        return "no checkpoint was written yet"
    return f"the last good checkpoint is {prefix} (step {prefix.rsplit('-', 1)[1]})"


def should_test(epoch, config):
    """The original runs a test pass when epoch % epochs_full_valid == 0."""
    return epoch % config.epochs_full_valid == 0


def should_sample(epoch, config):
    """The original's sample schedule (inside its test-or-not condition)."""
    visible = epoch < 10 or (epoch < 50 and epoch % 10 == 0) or epoch % config.epochs_full_valid == 0
    return visible and (epoch in (1, 10) or epoch % config.epochs_full_sample == 0)


def progress(iterable, desc, total=None, show=True):
    """A tqdm bar for long work on a terminal: shown after 3 s, cleared when done (``show``: the chief)."""
    return tqdm(iterable, desc=desc, total=total, leave=False, delay=3, disable=not (show and sys.stderr.isatty()))


def sample_grid_rows(image_size):
    """The original's grid: 10 x 10 images up to 64 pixels, else 4 x 4."""
    return 10 if image_size <= 64 else 4


# ------------------------------------------------------------------------------- XLA
@dataclasses.dataclass(frozen=True)
class Compilation:
    """What XLA compiles: the one place that decides it (``Compilation.of``).

    Attributes:
      whole_step: the whole training step (forward, backward, update, Polyak average) as one XLA
        computation; needs one replica (no cross-device update inside it).
      replica_grads: with several replicas, each replica's forward and backward.
      eval: each replica's test statistics (``eval_sums``).
      sample: the sample grids' batches.
    """
    whole_step: bool
    replica_grads: bool
    eval: bool
    sample: bool

    @classmethod
    def of(cls, config: TrainConfig, strategy, n_replicas) -> "Compilation":
        jit = config.xla and not isinstance(strategy, tf.distribute.TPUStrategy)  # TPUs compile anyway
        single = n_replicas == 1
        return cls(whole_step=jit and single, replica_grads=jit and not single, eval=jit, sample=jit)


def _compiled(fn, xla):
    """``fn`` as one XLA computation when ``xla``, else as it is (traced into its caller)."""
    return tf.function(fn, jit_compile=True) if xla else fn


# ------------------------------------------------------------------------------ the trainer
class Trainer:
    """The run's TrainState and the compiled functions that train, evaluate and sample with it.

    Args:
      config: the flags.
      strategy: the tf.distribute strategy.
      datasets, plan: from ``make_data`` with ``strategy``'s replica count.
    """

    def __init__(self, config: TrainConfig, strategy, datasets, plan: Plan):
        self.config, self.strategy, self.datasets, self.plan = config, strategy, datasets, plan
        with strategy.scope():
            model = Glow(config.model_for(datasets.info))
        self.state = TrainState(model, strategy, iter(datasets.train), config.optimizer, beta1=config.beta1,
                                beta2=plan.beta2, weight_decay=config.weight_decay, seed=config.seed)
        compilation = Compilation.of(config, strategy, plan.n_replicas)
        self.replica_step = _compiled(self.replica_step, compilation.whole_step)
        self.replica_grads = _compiled(self.replica_grads, compilation.replica_grads)
        self.eval_sums = _compiled(self.eval_sums, compilation.eval)
        self.train_chunk = tf.function(self.train_chunk)
        self.eval_batch = tf.function(self.eval_batch)
        self.sample_batch = tf.function(self.sample_batch, jit_compile=compilation.sample)

    @property
    def model(self) -> Glow:
        return self.state.model

    # -------------------------------------------------------------------- the start
    def data_dependent_init(self):
        """The original's DDI on the init batch (cross-replica: identical on every replica)."""
        x, y = self.datasets.init_batch
        noise = stateless_noise(x.shape, [self.config.seed, INIT_SALT], self.model.config.n_bins)
        with self.strategy.scope():
            self.model.initialize(x, y, noise)
        self.state.start_average()

    def start(self, resume_prefix=None) -> str:
        """The state to train from, and a line saying which: this run's checkpoint ``resume_prefix``,
        else --restore_path's weights, else data-dependent init."""
        if resume_prefix:
            self.state.restore(resume_prefix)
            return f"Resuming from {resume_prefix}: step {self.state.steps_done}"
        if self.config.restore_path:
            return "Starting from " + self.restore_weights(self.config.restore_path)
        self.data_dependent_init()
        return f"Starting a new run (data-dependent init on {self.plan.local_batch_init} images)"

    def restore_weights(self, path):
        """--restore_path: weights, averages and optimizer slots of another run or of an original checkpoint.

        Returns a description.
        """
        logdir, prefix = checkpoints.resolve(path)
        if checkpoints.is_glow_tf_checkpoint(prefix):
            saved = checkpoints.read_run_config(logdir)["model"]
            check_same_model(saved, self.model.config, f"--restore_path {path}")
            self.state.restore_weights(prefix)
            note = checkpoints.precision_change(saved, self.model.precision)
            return f"glow_tf checkpoint {prefix} (weights, Polyak average, optimizer slots){'; ' + note if note else ''}"
        return f"original OpenAI checkpoint {prefix} ({self.state.restore_original(prefix)})"

    # ------------------------------------------------------------------------ the step
    def n_processed(self, step):
        """Images seen at the anchor resolution before ``step`` (the original's n_processed)."""
        return step * self.config.n_batch_train * self.plan.n_replicas

    def n_images(self, step):
        """Images actually seen before ``step`` (the original's n_images)."""
        return step * self.plan.global_batch_train

    def learning_rate(self, step):
        """lr * min(1, n_processed / (n_train * epochs_warmup)), n_processed before ``step``.

        ``step``: a Python int (the summary) or a float64 tensor (inside the step).
        """
        if self.config.epochs_warmup == 0:
            return self.config.lr
        fraction = self.n_processed(step) / float(self.plan.n_train * self.config.epochs_warmup)
        return self.config.lr * (tf.minimum(fraction, 1.0) if tf.is_tensor(fraction) else min(fraction, 1.0))

    def _split(self, value, per_replica):
        """A global batch -> the replicas' consecutive slices of ``per_replica`` examples."""
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: value[ctx.replica_id_in_sync_group * per_replica:
                              (ctx.replica_id_in_sync_group + 1) * per_replica])

    def replica_grads(self, x, y, noise):
        """Per replica: mean statistics [4] of the local batch and the gradients of its mean loss."""
        with tf.GradientTape() as tape:
            terms = self.model.loss_terms(x, y, noise)
            loss = tf.reduce_mean(terms["loss"])
        grads = tape.gradient(loss, self.state.variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        stats = tf.stack([loss] + [tf.reduce_mean(terms[name]) for name in STATS[1:]])
        return stats, grads

    def replica_step(self, x, y, noise, lr):
        """Per replica: gradients, their mean over replicas, and the update unless anything is non-finite."""
        ctx = tf.distribute.get_replica_context()
        stats, grads = self.replica_grads(x, y, noise)
        grad_squares = (ctx.all_reduce(tf.distribute.ReduceOp.MEAN, [tf.square(g) for g in grads])
                        if self.state.optimizer.needs_grad_squares else None)
        stats, grads = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, [stats, grads])
        ok = tf.logical_and(tf.reduce_all(tf.math.is_finite(stats)),
                            tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads]))
        ctx.merge_call(self._apply_update, args=(grads, grad_squares, lr, ok))
        return stats, ok

    def _apply_update(self, strategy, grads, grad_squares, lr, ok):
        del strategy  # the updates use the current (cross-replica) strategy
        self.state.optimizer.apply(self.state.variables, grads, lr, ok, grad_squares)
        self.state.ema.update(self.state.variables, ok)

    def train_chunk(self, n_steps):
        """Up to n_steps training steps -> (stats [n, 4], ok [n]); stops early after max_nonfinite."""
        state = self.state
        all_stats = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=[len(STATS)])
        all_ok = tf.TensorArray(tf.bool, size=0, dynamic_size=True, element_shape=[])
        for i in tf.range(n_steps):
            if state.nonfinite_run >= self.config.max_nonfinite:
                break
            x, y = next(state.iterator)
            noise = stateless_noise(tf.shape(x), state.rng.make_seeds(1)[:, 0], self.model.config.n_bins)
            lr = tf.cast(self.learning_rate(tf.cast(state.step, tf.float64)), tf.float32)
            per_replica = self.plan.local_batch_train
            stats, ok = self.strategy.run(self.replica_step, args=(
                self._split(x, per_replica), self._split(y, per_replica), self._split(noise, per_replica), lr))
            stats = self.strategy.experimental_local_results(stats)[0]
            ok = self.strategy.experimental_local_results(ok)[0]
            state.record_step(stats, ok)
            all_stats = all_stats.write(i, stats)
            all_ok = all_ok.write(i, ok)
        return all_stats.stack(), all_ok.stack()

    # ------------------------------------------------------------------ eval and samples
    def replica_eval_sums(self, x, y, noise, n_valid):
        """Per replica: ``eval_sums`` of its slice of the global test batch."""
        replica_id = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int32)
        return self.eval_sums(x, y, noise, replica_id * self.plan.local_batch_test, n_valid)

    def eval_sums(self, x, y, noise, first, n_valid):
        """Sums [4] of the statistics over the valid examples (global index ``first + i < n_valid``), and their count.

        The replica's index comes in as an argument: the compiled function runs on every replica's device.
        """
        terms = self.model.loss_terms(x, y, noise)
        valid = first + tf.range(tf.shape(x)[0]) < n_valid
        sums = tf.stack([tf.reduce_sum(tf.where(valid, terms[name], 0.0)) for name in STATS])
        return sums, tf.reduce_sum(tf.cast(valid, tf.int32))

    def eval_batch(self, x, y, seed, n_valid):
        """Sums [4] and count of one global test batch, over the replicas."""
        per_replica = self.plan.local_batch_test
        noise = stateless_noise(tf.shape(x), seed, self.model.config.n_bins)
        sums, count = self.strategy.run(self.replica_eval_sums, args=(
            self._split(x, per_replica), self._split(y, per_replica), self._split(noise, per_replica), n_valid))
        return (self.strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None),
                self.strategy.reduce(tf.distribute.ReduceOp.SUM, count, axis=None))

    def evaluate(self):
        """Mean statistics [4] over the test set (noise seeded per batch: the same every pass).

        A last, smaller batch is padded to the full batch (and the padding masked out), so the
        evaluation compiles once.
        """
        sums, count = np.zeros(len(STATS)), 0
        batch = self.plan.local_batch_test * self.plan.n_replicas
        with self.eval_weights():
            n_batches = -(-self.plan.n_test // batch)
            for index, (x, y) in enumerate(progress(self.datasets.test, "test pass", n_batches, is_chief(self.strategy))):
                n_valid = int(x.shape[0])
                if n_valid < batch:
                    x = tf.pad(x, [[0, batch - n_valid], [0, 0], [0, 0], [0, 0]])
                    y = tf.pad(y, [[0, batch - n_valid]])
                seed = tf.constant([self.config.seed, EVAL_SALT + index], tf.int64)
                batch_sums, batch_count = self.eval_batch(x, y, seed, tf.constant(n_valid, tf.int32))
                sums += batch_sums.numpy()
                count += int(batch_count)
        return sums / count

    def eval_weights(self):
        """Within it the model holds the weights to evaluate and sample with (--use_ema_for_eval)."""
        return self.averaged_weights(self.config.use_ema_for_eval)

    @contextlib.contextmanager
    def averaged_weights(self, swap=True):
        """Within it the model holds the Polyak averages (with ``swap``; else its own weights)."""
        if swap:
            with self.strategy.scope():
                self.state.ema.swap(self.state.variables)
        try:
            yield
        finally:
            if swap:  # swapping twice undoes it
                with self.strategy.scope():
                    self.state.ema.swap(self.state.variables)

    def sample_batch(self, temperature, seed, y):
        """One batch of a grid: y [local_batch_train] labels, eps seeded by ``seed``."""
        return self.model.sample(tf.shape(y)[0], y if self.model.config.ycond else None, temperature, seed=seed)

    def sample_grids(self, epoch):
        """[(temperature, uint8 [rows, rows, H, W, C])] at the original's temperatures.

        As the original's draw_samples: column j is class j % n_y, and the grid is decoded in
        batches of the local training batch (at 256 px, one image: the 16 at once would hold
        16 x 32 MiB per activation of the first level). Every batch draws fresh latents, seeded
        by (seed, epoch, grid index, batch index); with --fixed_sample_latents every epoch
        draws epoch 0's. The last batch is padded to the full batch (one compilation).
        At temperature 0 every eps is 0, so a batch's images depend on its labels alone (on
        nothing, without --ycond): each distinct batch is decoded once (at 256 px, 1 decode
        of the 16, or 4 with --ycond, each ~0.5 TFLOP).
        """
        rows = sample_grid_rows(self.model.config.image_size)
        batch = self.plan.local_batch_train
        labels = np.array([i % self.model.config.n_y for i in range(rows)] * rows, np.int32)
        n_batches = -(-len(labels) // batch)
        labels = np.pad(labels, [0, n_batches * batch - len(labels)])
        temperatures = sampling.SWEEP_TEMPERATURES
        first = 0 if self.config.fixed_sample_latents else epoch * len(temperatures)
        grids = []
        with self.eval_weights():
            for index, temperature in enumerate(progress(temperatures, "sample grids")):
                decoded, batches = {}, []  # decoded: what determines a batch's images -> them
                for b in range(n_batches):
                    batch_labels = labels[b * batch:(b + 1) * batch]
                    key = (b if temperature != 0 else
                           batch_labels.tobytes() if self.model.config.ycond else None)
                    if key not in decoded:
                        decoded[key] = self.sample_batch(
                            tf.constant(temperature, tf.float32),
                            tf.constant([self.config.seed, (first + index) * n_batches + b], tf.int64),
                            tf.constant(batch_labels)).numpy()
                    batches.append(decoded[key])
                images = np.concatenate(batches)[:rows * rows]  # [rows * rows, H, W, C]
                grids.append((temperature, images.reshape((rows, rows) + images.shape[1:])))
        return grids


# ------------------------------------------------------------------------------ the run
class TrainingRun:
    """One training run in ``config.logdir``: set-up or resume, the loop over chunks, the end."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.logdir = os.path.abspath(config.logdir)
        self.strategy = make_strategy(config)
        self.chief = is_chief(self.strategy)
        self.datasets, self.plan = make_data(config, self.strategy.num_replicas_in_sync)
        self.hps = {**config.flags(), **dataclasses.asdict(self.plan)}
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
        self._open_logs(resumed=resume_prefix is not None)
        self._print(origin)
        self._print(f"Logging to {self.logdir}. {self.plan.n_replicas} replica(s) ({config.strategy}); "
                    f"batch per step {self.plan.global_batch_train} images of {self.plan.image_size}x"
                    f"{self.plan.image_size}; {self.plan.train_its} steps per epoch; data: {self.datasets.info.source}")
        self.last_test_step = self.last_sample_step = self.last_save_step = (
            self.state.steps_done if resume_prefix else -1)
        self.last_sample_epoch = None

    def _open_logs(self, resumed):
        """The JSON-lines logs and the TensorBoard writer (the chief's; the others' write nothing).

        On resume, the records written up to the checkpoint stay: epoch records of its step
        were written before it, step records of its step after it.
        """
        step = self.state.steps_done
        n_processed = self.trainer.n_processed(step)
        by_images = (lambda record: record.get("n_processed", math.inf) <= n_processed) if resumed else None
        by_step = (lambda record: record.get("step", math.inf) < step) if resumed else None
        self.train_log = JsonLinesLog(os.path.join(self.logdir, "train.txt"), self.hps, by_images, self.chief)
        self.test_log = JsonLinesLog(os.path.join(self.logdir, "test.txt"), self.hps, by_images, self.chief)
        self.step_log = JsonLinesLog(os.path.join(self.logdir, "train_steps.txt"), self.hps, by_step,
                                     self.chief and self.config.log_steps)
        self.writer = (tf.summary.create_file_writer(os.path.join(self.logdir, "tensorboard")) if self.chief
                       else tf.summary.create_noop_writer())

    def _print(self, *args):
        if self.chief:
            print(*args, flush=True)

    def _set_aside(self, resumable):
        """Says which checkpoints cannot be read, keeps them aside, and resumes from the newest that can."""
        if resumable.state_note:
            self._print(f"Note: {resumable.state_note}")
        reasons = dict(resumable.damaged)
        for prefix, kept_as in checkpoints.set_aside(resumable):
            self._print(f"Checkpoint {prefix} cannot be read ({reasons[prefix]}); its files are kept as "
                        f"{kept_as}.*; resuming from an older one")

    def _last_good_checkpoint(self) -> Optional[str]:
        """The newest checkpoint the checkpoint state on disk names (a failed write changes neither), or None."""
        return tf.train.latest_checkpoint(self.manager.directory)

    def _check_resume(self):
        saved = checkpoints.read_run_config(self.logdir)
        check_same_model(saved["model"], self.trainer.model.config, f"--logdir {self.logdir}")
        # A flag missing from the saved hps is one the code that wrote them did not have: it ran
        # as that flag's default.
        before = {**flag_defaults(), **saved["train"]}
        changed = [f"--{k} {before.get(k)!r} -> {v!r}" for k, v in self.hps.items()
                   if k not in _RESUMABLE_CHANGES and before.get(k) != v]
        if changed:
            self._print("Note: resuming with changed flags (the run will not match an uninterrupted one): "
                        + ", ".join(changed))
        precision_note = checkpoints.precision_change(saved["model"], self.trainer.model.precision)
        if precision_note:
            self._print(f"Note: {precision_note}")

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
                                    f"{describe_checkpoint(last)}. Make room, then run the same command again to "
                                    f"{'resume from it' if last else 'start the run'}") from None

    def _loop(self):
        """The loop over chunks of steps: between two chunks, stop, end an epoch or checkpoint."""
        config, plan = self.config, self.plan
        self.start_time = time.time()
        step = self.state.steps_done
        epoch_start_time, epoch_start_step = time.time(), step
        last_save_time, bar = time.time(), None
        self._print("epoch n_processed n_images ips dtrain dtest dsample dtot train_results test_results msg")
        while (reason := self.stop_reason(step)) is None:
            epoch = step // plan.train_its + 1
            bar = bar or tqdm(total=plan.train_its, initial=step % plan.train_its, desc=f"epoch {epoch}",
                              disable=not (self.chief and sys.stderr.isatty()), leave=False)
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
        if step // self.plan.train_its + 1 >= config.epochs:
            return "epochs done"
        if config.max_steps and step >= config.max_steps:
            return "--max_steps"
        if config.max_time and cluster.any_worker(self.strategy, time.time() - self.start_time >= config.max_time):
            return "--max_time"
        return None

    def _train_chunk(self, step):
        """Runs the steps up to the epoch's end (at most steps_per_execution, and max_steps); logs them."""
        config, plan = self.config, self.plan
        n = min(config.steps_per_execution, plan.train_its - step % plan.train_its)
        if config.max_steps:
            n = min(n, config.max_steps - step)
        chunk_start = time.time()
        stats, ok = (t.numpy() for t in self.trainer.train_chunk(tf.constant(n, tf.int32)))
        seconds = time.time() - chunk_start
        self.state.add_train_time(seconds)
        self.log_chunk(step, stats, ok, seconds)
        self._check_nonfinite()
        return step + len(ok), stats, ok, seconds

    def log_chunk(self, step, stats, ok, seconds):
        """Logs the steps of a chunk (from ``step``): train_steps.txt, --verbose lines, summaries."""
        config, plan, trainer = self.config, self.plan, self.trainer
        records = [{"step": step + i, **{name: float(v) for name, v in zip(STATS, s)}, "ok": bool(o)}
                   for i, (s, o) in enumerate(zip(stats, ok))]
        self.step_log.log(*records)
        if config.verbose:
            for record in records:
                self._print(trainer.n_processed(record["step"]), record)
        end = step + len(ok)
        with self.writer.as_default():
            if ok.any():
                for index, name in enumerate(STATS[:2]):
                    summary_scalar(f"train/{name}", float(stats[ok, index].mean()), end)
            summary_scalar("train/lr", trainer.learning_rate(end - 1), end)
            summary_scalar("train/images_per_sec", len(ok) * plan.global_batch_train / seconds, end)
            summary_scalar("train/nonfinite_steps", float(self.state.nonfinite_counts()[1]), end)

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
                f"step {last}; stopping: {describe_checkpoint(self._last_good_checkpoint())}. Try a lower --lr, "
                "a longer --epochs_warmup, or --flow_coupling 0 (additive).")

    def _end_of_epoch(self, epoch, step, dtrain, steps_this_epoch):
        """The original's end-of-epoch: train log, test, best checkpoint, samples, then a checkpoint."""
        trainer, plan = self.trainer, self.plan
        train_results = self.state.end_epoch()
        self.train_log.log(dict(epoch=epoch, n_processed=trainer.n_processed(step), n_images=trainer.n_images(step),
                                train_time=int(self.state.train_time.numpy()), **format_results(train_results)))
        t = time.time()
        test_results, msg = [], ""
        if should_test(epoch, self.config):
            test_results, msg = self._test(epoch, step)
        dtest, t = time.time() - t, time.time()
        if should_sample(epoch, self.config):
            self._samples(epoch, step)
        dsample = time.time() - t
        ips = steps_this_epoch * plan.global_batch_train / max(dtrain, 1e-9)
        self._print(epoch, trainer.n_processed(step), trainer.n_images(step),
                    f"{ips:.1f} {dtrain:.1f} {dtest:.1f} {dsample:.1f} {dtrain + dtest + dsample:.1f}",
                    np.round(train_results, 4), np.round(test_results, 4), msg)
        self._save(step)

    def _test(self, epoch, step):
        trainer = self.trainer
        results = trainer.evaluate()
        self.last_test_step = step
        self.test_log.log(dict(epoch=epoch, n_processed=trainer.n_processed(step), n_images=trainer.n_images(step),
                               **format_results(results)))
        with self.writer.as_default():
            for index, name in enumerate(STATS[:2]):
                summary_scalar(f"test/{name}", float(results[index]), step)
        msg = ""
        if self.state.improve_best(results[0]):
            self._write_checkpoint(self.best_manager, step)
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
            with self.writer.as_default():
                summary_image(f"samples/temperature_{temperature}", raster, step)

    def _save(self, step):
        if step != self.last_save_step:
            self._write_checkpoint(self.manager, step)
            self.last_save_step = step

    @staticmethod
    def _write_checkpoint(manager, step):
        """``manager``'s checkpoint of ``step``; a failed write leaves nothing of it and raises WriteError.

        The checkpoint state (written last, atomically) then still names the previous checkpoint,
        which the manager deletes only after a newer one is written whole.
        """
        try:
            manager.save(checkpoint_number=step)
        except (tf.errors.OpError, OSError) as e:
            prefix = os.path.join(manager.directory, f"ckpt-{step}")
            if tf.train.latest_checkpoint(manager.directory) != prefix:
                checkpoints.remove_partial(prefix)
            raise errors.WriteError(f"could not write checkpoint {prefix} ({files.write_failure(e, prefix)})") from None

    def _finish(self, step):
        """The end of the run: test pass, samples, checkpoint (each unless this step had it), export."""
        epoch = max(1, -(-step // self.plan.train_its))
        if step != self.last_test_step:
            results, msg = self._test(epoch, step)
            self._print(f"final test at step {step}: {np.round(results, 4)}{msg}")
        if step != self.last_sample_step:
            self._samples(epoch, step)
        self._save(step)
        self.writer.flush()
        self._print(f"Finished at step {step} (epoch {epoch}): checkpoint {self.manager.latest_checkpoint}")
        if self.last_sample_epoch is not None:
            temperatures = sampling.SWEEP_TEMPERATURES
            self._print(f"Sample grids: {self.logdir}/epoch_{self.last_sample_epoch}_sample_{{0..{len(temperatures) - 1}}}.png "
                        f"(temperatures {', '.join(map(str, temperatures))})")
        if self.chief and self.config.export:
            from glow_tf import export  # imports the serving code only when used
            # The live model holds the checkpoint just written; exporting it with the averages
            # swapped in (not a model restored from that checkpoint) makes no further copy of
            # the weights (0.65 GiB at CelebA-HQ size; the tracing still adds about 0.3 GiB).
            with self.trainer.averaged_weights():
                path = export.export_saved_model(self.trainer.model, os.path.join(self.logdir, "saved_model"),
                                                 overwrite=True, seed=self.config.seed)
            self._print(f"SavedModel (Polyak-averaged weights): {path}")


def train_and_evaluate(config: TrainConfig):
    """Trains (or resumes) the run of ``config`` in ``config.logdir``; see the module docstring.

    Raises ValueError for bad flags and NonFiniteError when training diverges.
    """
    if config.inference:
        raise ValueError("--inference: call glow_tf.inference.infer (train.py does)")
    seed_everything(config)
    run = TrainingRun(config)
    # SIGTERM: a checkpoint at the next step boundary, then preemption.Preempted; scratch: removed at the end;
    # the heap trimmer: what XLA's compiler threads free leaves resident memory (glow_tf/heap.py).
    with run.preemption, run.scratch, heap.HeapTrimmer():
        run.run()

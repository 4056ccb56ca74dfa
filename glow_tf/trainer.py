"""The Trainer: a run's TrainState and the compiled functions that train, evaluate and sample with it.

Each step (``Trainer.train_chunk`` runs ``steps_per_execution`` of them in one tf.function;
``Compilation`` decides what XLA compiles): the global batch and its dequantisation noise (one
stateless draw per step, seeded from the checkpointed ``tf.random.Generator``, made outside XLA,
whose random bits differ) are split over the replicas in order, so the numbers do not depend on
the replica count; gradients and statistics are averaged over replicas (adam2 also averages
g**2); a step whose loss or gradients are not finite changes nothing and is counted. With one
replica and ``jit_compile`` the whole step (forward, backward, update, Polyak average) is one XLA
computation; with several, each replica's forward and backward is.

Learning rate: ``lr * min(1, n_processed / (n_train * epochs_warmup))`` with n_processed the images
seen at the anchor resolution before the step (so the first step has lr 0, as the original).
"""
import contextlib
import dataclasses
from typing import Callable

import numpy as np
import tensorflow as tf

from glow_tf import checkpoints, cluster, progress, sampling, seeds
from glow_tf.config import LOSS_TERMS
from glow_tf.model import Glow
from glow_tf.plan import Plan
from glow_tf.train_state import TrainState


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
    def of(cls, config, strategy, n_replicas) -> "Compilation":
        jit = config.xla and not isinstance(strategy, tf.distribute.TPUStrategy)  # TPUs compile anyway
        single = n_replicas == 1
        return cls(whole_step=jit and single, replica_grads=jit and not single, eval=jit, sample=jit)


def _compiled(fn, xla):
    """``fn`` as one XLA computation when ``xla``, else as it is (traced into its caller)."""
    return tf.function(fn, jit_compile=True) if xla else fn


@dataclasses.dataclass
class CompiledFunctions:
    """What runs: each a ``tf.function`` of the ``Trainer`` method of its name (or, where XLA
    compiles nothing, that method, traced into its caller), as ``Compilation`` decides."""
    train_chunk: Callable
    replica_step: Callable
    replica_grads: Callable
    eval_sums: Callable
    eval_batch: Callable
    sample_batch: Callable



# ------------------------------------------------------------------------------ the trainer
class Trainer:
    """The run's TrainState and the compiled functions that train, evaluate and sample with it.

    Args:
      config: the flags.
      strategy: the tf.distribute strategy.
      datasets, plan: from ``make_data`` with ``strategy``'s replica count.
    """

    def __init__(self, config, strategy, datasets, plan: Plan):
        self.config, self.strategy, self.datasets, self.plan = config, strategy, datasets, plan
        with strategy.scope():
            model = Glow(config.model_for(datasets.info))
        self.state = TrainState(model, strategy, iter(datasets.train), config.optimizer, beta1=config.beta1,
                                beta2=plan.beta2, weight_decay=config.weight_decay, seed=config.seed)
        compilation = Compilation.of(config, strategy, plan.n_replicas)
        self.compiled = CompiledFunctions(
            train_chunk=tf.function(self.train_chunk),
            replica_step=_compiled(self.replica_step, compilation.whole_step),
            replica_grads=_compiled(self.replica_grads, compilation.replica_grads),
            eval_sums=_compiled(self.eval_sums, compilation.eval),
            eval_batch=tf.function(self.eval_batch),
            sample_batch=tf.function(self.sample_batch, jit_compile=compilation.sample))

    @property
    def model(self) -> Glow:
        return self.state.model

    # -------------------------------------------------------------------- the start
    def data_dependent_init(self):
        """The original's DDI on the init batch (cross-replica: identical on every replica)."""
        x, y = self.datasets.init_batch
        noise = seeds.stateless_noise(x.shape, seeds.init_noise_seed(self.config.seed), self.model.config.n_bins)
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
            checkpoints.check_same_model(saved, self.model.config, f"--restore_path {path}")
            self.state.restore_weights(prefix)
            note = checkpoints.precision_change(saved, self.model.precision)
            return f"glow_tf checkpoint {prefix} (weights, Polyak average, optimizer slots){'; ' + note if note else ''}"
        return f"original OpenAI checkpoint {prefix} ({self.state.restore_original(prefix)})"

    # ------------------------------------------------------------------------ the step
    def learning_rate(self, step):
        """lr * min(1, n_processed / (n_train * epochs_warmup)), n_processed before ``step``.

        ``step``: a Python int (the summary) or a float64 tensor (inside the step).
        """
        if self.config.epochs_warmup == 0:
            return self.config.lr
        fraction = self.plan.n_processed(step) / float(self.plan.n_train * self.config.epochs_warmup)
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
        stats = tf.stack([loss] + [tf.reduce_mean(terms[name]) for name in LOSS_TERMS[1:]])
        return stats, grads

    def replica_step(self, x, y, noise, lr):
        """Per replica: gradients, their mean over replicas, and the update unless anything is non-finite."""
        ctx = tf.distribute.get_replica_context()
        stats, grads = self.compiled.replica_grads(x, y, noise)
        grad_squares = (ctx.all_reduce(tf.distribute.ReduceOp.MEAN, [tf.square(g) for g in grads])
                        if self.state.needs_grad_squares else None)
        stats, grads = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, [stats, grads])
        ok = tf.logical_and(tf.reduce_all(tf.math.is_finite(stats)),
                            tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads]))
        # The update runs once, in cross-replica context (merge_call passes the strategy first).
        ctx.merge_call(lambda _, *args: self.state.apply_update(*args), args=(grads, grad_squares, lr, ok))
        return stats, ok

    def train_chunk(self, n_steps):
        """Up to n_steps training steps -> (stats [n, 4], ok [n]); stops early after max_nonfinite."""
        state = self.state
        all_stats = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=[len(LOSS_TERMS)])
        all_ok = tf.TensorArray(tf.bool, size=0, dynamic_size=True, element_shape=[])
        for i in tf.range(n_steps):
            if state.nonfinite_run >= self.config.max_nonfinite:
                break
            x, y = next(state.iterator)
            noise = seeds.stateless_noise(tf.shape(x), state.rng.make_seeds(1)[:, 0], self.model.config.n_bins)
            lr = tf.cast(self.learning_rate(tf.cast(state.step, tf.float64)), tf.float32)
            per_replica = self.plan.local_batch_train
            stats, ok = self.strategy.run(self.compiled.replica_step, args=(
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
        return self.compiled.eval_sums(x, y, noise, replica_id * self.plan.local_batch_test, n_valid)

    def eval_sums(self, x, y, noise, first, n_valid):
        """Sums [4] of the statistics over the valid examples (global index ``first + i < n_valid``), and their count.

        The replica's index comes in as an argument: the compiled function runs on every replica's device.
        """
        terms = self.model.loss_terms(x, y, noise)
        valid = first + tf.range(tf.shape(x)[0]) < n_valid
        sums = tf.stack([tf.reduce_sum(tf.where(valid, terms[name], 0.0)) for name in LOSS_TERMS])
        return sums, tf.reduce_sum(tf.cast(valid, tf.int32))

    def eval_batch(self, x, y, seed, n_valid):
        """Sums [4] and count of one global test batch, over the replicas."""
        per_replica = self.plan.local_batch_test
        noise = seeds.stateless_noise(tf.shape(x), seed, self.model.config.n_bins)
        sums, count = self.strategy.run(self.replica_eval_sums, args=(
            self._split(x, per_replica), self._split(y, per_replica), self._split(noise, per_replica), n_valid))
        return (self.strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None),
                self.strategy.reduce(tf.distribute.ReduceOp.SUM, count, axis=None))

    def evaluate(self):
        """Mean statistics [4] over the test set (noise seeded per batch: the same every pass).

        A last, smaller batch is padded to the full batch (and the padding masked out), so the
        evaluation compiles once.
        """
        sums, count = np.zeros(len(LOSS_TERMS)), 0
        batch = self.plan.local_batch_test * self.plan.n_replicas
        with self.eval_weights():
            n_batches = -(-self.plan.n_test // batch)
            test_batches = progress.bar(self.datasets.test, desc="test pass", total=n_batches,
                                        show=cluster.is_chief(self.strategy))
            for index, (x, y) in enumerate(test_batches):
                n_valid = int(x.shape[0])
                if n_valid < batch:
                    x = tf.pad(x, [[0, batch - n_valid], [0, 0], [0, 0], [0, 0]])
                    y = tf.pad(y, [[0, batch - n_valid]])
                batch_sums, batch_count = self.compiled.eval_batch(x, y, seeds.eval_noise_seed(self.config.seed, index),
                                                                   tf.constant(n_valid, tf.int32))
                sums += batch_sums.numpy()
                count += int(batch_count)
        return sums / count

    def eval_weights(self):
        """Within it the model holds the weights to evaluate and sample with (--use_ema_for_eval)."""
        return self.state.averaged_weights() if self.config.use_ema_for_eval else contextlib.nullcontext()

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
        rows = sampling.grid_rows(self.model.config.image_size)
        batch = self.plan.local_batch_train
        labels = np.tile(sampling.column_classes(rows, self.model.config.n_y), rows)  # [rows * rows]
        n_batches = -(-len(labels) // batch)
        labels = np.pad(labels, [0, n_batches * batch - len(labels)])
        temperatures = sampling.SWEEP_TEMPERATURES
        first = 0 if self.config.fixed_sample_latents else epoch * len(temperatures)
        grids = []
        with self.eval_weights():
            for index, temperature in enumerate(progress.bar(temperatures, desc="sample grids")):
                decoded, batches = {}, []  # decoded: what determines a batch's images -> them
                for b in range(n_batches):
                    batch_labels = labels[b * batch:(b + 1) * batch]
                    key = (b if temperature != 0 else
                           batch_labels.tobytes() if self.model.config.ycond else None)
                    if key not in decoded:
                        decoded[key] = self.compiled.sample_batch(
                            tf.constant(temperature, tf.float32),
                            seeds.sample_seed(self.config.seed, (first + index) * n_batches + b),
                            tf.constant(batch_labels)).numpy()
                    batches.append(decoded[key])
                images = np.concatenate(batches)[:rows * rows]  # [rows * rows, H, W, C]
                grids.append((temperature, images.reshape((rows, rows) + images.shape[1:])))
        return grids

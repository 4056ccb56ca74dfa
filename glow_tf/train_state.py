"""TrainState: everything a training checkpoint holds, and what the training loop does to it.

In the spirit of Flax's ``TrainState``: one object owns the model, the optimiser, the Polyak
average, the data iterator, the RNG and the loop's counters (step, the epoch's running sums,
the non-finite counters, training time and the best test loss), and the checkpoint of all of
them. Everything exists from construction on; the loop changes them only through the methods
below: ``apply_update`` (as Flax's ``apply_gradients``: the optimiser's step and the Polyak
average's), ``averaged_weights`` (the averages swapped in), ``record_step`` and the rest. The
checkpoint's keys (``model``, ``ema``, ``optimizer``, ``step``, ``iterator``, ``rng``,
``epoch_sums``, ...) are kept as they are, so that older runs resume.
"""
import contextlib

import numpy as np
import tensorflow as tf

from glow_tf import checkpoints, openai, optim
from glow_tf.config import LOSS_TERMS

TEST_LOSS_BEST_START = 999999.0  # the original's test_loss_best


class TrainState:
    """The checkpointed state of a training run.

    Args:
      model: the Glow (built in ``strategy``'s scope).
      strategy: the tf.distribute strategy; the optimiser and the Polyak average are built in its scope.
      iterator: the training data's iterator (checkpointed: resume continues where it was).
      optimizer: the original's --optimizer name; beta1, beta2, weight_decay: its arguments
        (beta2 is also the Polyak average's decay).
      seed: seeds the RNG of the per-step dequantisation noise.
    """

    def __init__(self, model, strategy, iterator, optimizer, beta1, beta2, weight_decay, seed):
        self.model, self.strategy, self.iterator = model, strategy, iterator
        self.variables = model.trainable_variables
        with strategy.scope():
            # The shadows start at the current weights; ``start_average`` restarts them after
            # data-dependent init, --restore_path restores them.
            self.ema = optim.PolyakAverage(self.variables, beta2)
            self.optimizer = optim.make_optimizer(optimizer, self.variables, beta2=beta2, beta1=beta1,
                                                  weight_decay=weight_decay)
        self.rng = tf.random.Generator.from_seed(seed)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.epoch_sums = tf.Variable(tf.zeros([len(LOSS_TERMS)], tf.float64), trainable=False, name="epoch_sums")
        self.epoch_ok_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_ok_steps")
        self.nonfinite_run = tf.Variable(0, dtype=tf.int64, trainable=False, name="nonfinite_run")
        self.nonfinite_total = tf.Variable(0, dtype=tf.int64, trainable=False, name="nonfinite_total")
        self.train_time = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="train_time")
        self.test_loss_best = tf.Variable(TEST_LOSS_BEST_START, dtype=tf.float64, trainable=False,
                                          name="test_loss_best")
        self.checkpoint = tf.train.Checkpoint(
            model=model, **{checkpoints.EMA_KEY: self.ema}, optimizer=self.optimizer, step=self.step,
            iterator=iterator, rng=self.rng, epoch_sums=self.epoch_sums, epoch_ok_steps=self.epoch_ok_steps,
            nonfinite_run=self.nonfinite_run, nonfinite_total=self.nonfinite_total, train_time=self.train_time,
            test_loss_best=self.test_loss_best)

    # ------------------------------------------------------------------------ weights
    @property
    def needs_grad_squares(self) -> bool:
        """Whether ``apply_update`` takes the replicas' mean of g**2 (adam2)."""
        return self.optimizer.needs_grad_squares

    def apply_update(self, grads, grad_squares, lr, ok):
        """One optimiser step and Polyak average update with ``grads`` (cross-replica context);
        nothing changes where ``ok`` is False."""
        self.optimizer.apply(self.variables, grads, lr, ok, grad_squares)
        self.ema.update(self.variables, ok)

    @contextlib.contextmanager
    def averaged_weights(self):
        """Within it the model holds the Polyak averages (and the averages its own weights)."""
        with self.strategy.scope():
            self.ema.swap(self.variables)
        try:
            yield
        finally:  # swapping twice undoes it
            with self.strategy.scope():
                self.ema.swap(self.variables)

    def start_average(self):
        """Restarts the Polyak average at the current weights."""
        with self.strategy.scope():
            for shadow, value in zip(self.ema.shadows, self.variables):
                shadow.assign(value)

    def restore(self, prefix):
        """Everything from a checkpoint of this run (the resume)."""
        checkpoints.check_layout(prefix)
        with checkpoints.reading(prefix):
            self.checkpoint.restore(prefix).assert_consumed()

    def restore_weights(self, prefix):
        """The model, Polyak average and optimiser slots of another run's checkpoint (--restore_path)."""
        checkpoints.check_layout(prefix)
        with checkpoints.reading(prefix):
            tf.train.Checkpoint(model=self.model, **{checkpoints.EMA_KEY: self.ema},
                                optimizer=self.optimizer).restore(prefix).expect_partial()

    def restore_original(self, prefix) -> str:
        """The weights, optimiser state and Polyak average of an original OpenAI checkpoint
        (--restore_path, as the original's own); returns what it held."""
        with self.strategy.scope():
            return openai.restore_training_state(prefix, self.model, self.optimizer, self.ema)

    # ------------------------------------------------------------------------ counters
    @property
    def steps_done(self) -> int:
        return int(self.step.numpy())

    def record_step(self, stats, ok):
        """One training step done (in the compiled chunk): its statistics [4] count when ``ok``."""
        self.step.assign_add(1)
        self.epoch_sums.assign_add(tf.where(ok, tf.cast(stats, tf.float64), 0.0))
        self.epoch_ok_steps.assign_add(tf.cast(ok, tf.int64))
        self.nonfinite_run.assign(tf.where(ok, tf.constant(0, tf.int64), self.nonfinite_run + 1))
        self.nonfinite_total.assign_add(1 - tf.cast(ok, tf.int64))

    def add_train_time(self, seconds):
        self.train_time.assign_add(seconds)

    def end_epoch(self) -> np.ndarray:
        """The epoch's mean statistics [4] over its finite steps (NaN if none), and a new epoch's sums."""
        ok_steps = int(self.epoch_ok_steps.numpy())
        means = self.epoch_sums.numpy() / ok_steps if ok_steps else np.full(len(LOSS_TERMS), np.nan)
        self.epoch_sums.assign(tf.zeros_like(self.epoch_sums))
        self.epoch_ok_steps.assign(0)
        return means

    def improve_best(self, test_loss) -> bool:
        """Whether ``test_loss`` beats the best so far (then it is the best)."""
        if test_loss < self.test_loss_best.numpy():
            self.test_loss_best.assign(test_loss)
            return True
        return False

    def nonfinite_counts(self):
        """(non-finite steps in a row up to now, in all)."""
        return int(self.nonfinite_run.numpy()), int(self.nonfinite_total.numpy())

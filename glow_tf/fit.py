"""Keras's ``compile`` / ``fit`` / ``evaluate`` for Glow: the original objective as a Keras model trains.

``model.compile(optimizer=...)``, then ``model.fit`` on uint8 images or the ``(images, labels)``
batches of ``glow_tf.data``: the loss is the mean of ``loss_terms``' ``loss`` (bits_x + weight_y *
bits_y), with every loss term as a metric, and the data-dependent init runs on the first batch if
the model has none. train.py is the faithful, resumable loop (warm-up, NaN guard, exact resume);
``fit`` is for Keras callbacks and habits.
"""
import tensorflow as tf
import tf_keras as keras

from glow_tf.config import LOSS_TERMS
from glow_tf.layers.base import Untracked


class KerasTraining:
    """Mixed into ``Glow`` (before ``keras.Model``): its ``train_step``, ``test_step``, ``metrics`` and ``fit``.

    The host provides ``config``, ``initialized``, ``initialize`` and ``loss_terms``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._fit_metrics = Untracked(means=None)  # the metrics' counters are not weights to save or export

    @property
    def metrics(self):
        """The running means of fit/evaluate (Keras resets them every epoch); not model weights."""
        if self._fit_metrics.means is None:
            with tf.init_scope():
                self._fit_metrics.means = [keras.metrics.Mean(name) for name in LOSS_TERMS]
        return self._fit_metrics.means

    def _images_and_labels(self, data):
        x, y = (data[0], data[1]) if isinstance(data, (tuple, list)) else (data, None)
        return x, (y if self.config.ycond else None)

    def _record(self, terms):
        for metric in self.metrics:
            metric.update_state(terms[metric.name])
        return {metric.name: metric.result() for metric in self.metrics}

    def train_step(self, data):
        x, y = self._images_and_labels(data)
        with tf.GradientTape() as tape:
            terms = self.loss_terms(x, y)
            loss = tf.reduce_mean(terms["loss"])
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        return self._record(terms)

    def test_step(self, data):
        x, y = self._images_and_labels(data)
        return self._record(self.loss_terms(x, y))

    def fit(self, x=None, y=None, batch_size=None, **kwargs):
        """Keras ``fit``; data-dependent init runs first, on the first batch, if not done yet."""
        if not bool(self.initialized.numpy()):
            if isinstance(x, tf.data.Dataset):
                images, labels = self._images_and_labels(next(iter(x)))
            else:
                n = batch_size or 32
                images, labels = x[:n], (y[:n] if y is not None and self.config.ycond else None)
            with self.distribute_strategy.scope():
                self.initialize(images, labels)
        return super().fit(x, y, batch_size=batch_size, **kwargs)

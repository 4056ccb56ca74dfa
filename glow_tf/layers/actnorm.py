"""ActNorm: per-channel affine normalisation with data-dependent initialisation.

    z = (x + b) * exp(logs),      log|det dz/dx| = H * W * sum(logs)

As in the original, ``logs`` is stored divided by ``LOGSCALE_FACTOR`` (the variable holds
logs / 3 and the layer uses 3 * variable), which changes the effective learning rate of the
scale. Data-dependent init (inside ``data_dependent_init()``) sets, from the batch it sees,

    b = -mean(x),   logs = log(1 / (sqrt(mean((x + b)**2)) + 1e-6))

so the output has zero mean and unit variance per channel.
"""
import tensorflow as tf

from glow_tf.layers.base import DataDependentInit, FlowLayer, batch_constant, initializing, read

LOGSCALE_FACTOR = 3.0


class ActNorm(FlowLayer, DataDependentInit):
    """Per-channel ``(x + b) * exp(logs)`` on [N, H, W, C] inputs.

    Args:
      n_channels: C.
    """

    def __init__(self, n_channels, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(n_channels, int) or n_channels < 1:
            raise ValueError(f"ActNorm: expected n_channels a positive int, got {n_channels!r}")
        self.n_channels = n_channels
        self.bias = self.add_weight("b", shape=[1, 1, 1, n_channels], initializer="zeros")
        # Holds logs / LOGSCALE_FACTOR, as the original's `actnorm_scale/logs`.
        self.scaled_logs = self.add_weight("logs", shape=[1, 1, 1, n_channels], initializer="zeros")

    def data_dependent_variables(self):
        return [self.bias, self.scaled_logs]

    @property
    def logs(self):
        return read(self.scaled_logs) * LOGSCALE_FACTOR

    def _initialize_from(self, x):
        mean = tf.reduce_mean(x, axis=[0, 1, 2], keepdims=True)
        centered = x - mean
        variance = tf.reduce_mean(tf.square(centered), axis=[0, 1, 2], keepdims=True)
        self.bias.assign(-mean)
        self.scaled_logs.assign(tf.math.log(1.0 / (tf.sqrt(variance) + 1e-6)) / LOGSCALE_FACTOR)

    def _log_det(self, x):
        height_times_width = tf.cast(tf.shape(x)[1] * tf.shape(x)[2], x.dtype)
        return batch_constant(tf.reduce_sum(self.logs) * height_times_width, x)

    def forward(self, x, cond=None):
        if initializing():
            self._initialize_from(x)
        z = (x + read(self.bias)) * tf.exp(self.logs)
        return z, self._log_det(x)

    def inverse(self, z, cond=None):
        x = z * tf.exp(-self.logs) - read(self.bias)
        return x, -self._log_det(z)

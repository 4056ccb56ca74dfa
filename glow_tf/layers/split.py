"""Multi-scale split with a learned conditional prior, and the top prior.

Split (the original's ``split2d``) on z [N, H, W, C]:

    z1, z2 = z[..., :C/2], z[..., C/2:]
    h = ZeroConv2D(z1);  mean = h[..., 0::2],  logs = h[..., 1::2]
    eps = (z2 - mean) / exp(logs)                     log|d eps / d z2| = -sum(logs)
    output: squeeze2d(z1) [N, H/2, W/2, 2C] goes on through the flow, eps is a latent.

Top prior (the original's ``prior``) on the last level's z [N, h, w, c]:

    p = zeros [N, h, w, 2c];  + ZeroConv2D(p) if learntop;  + LinearZeros(onehot(y)) if ycond
    mean = p[..., :c],  logs = p[..., c:]     (contiguous halves here, interleaved in Split)
    eps = (z - mean) / exp(logs)

Both priors are N(mean, exp(logs)^2); log p(z) = log N(eps; 0, 1) - sum(logs).
"""
import tensorflow as tf
import tf_keras as keras

from glow_tf.layers.base import FLOAT32
from glow_tf.layers.nn import LinearZeros, ZeroConv2D
from glow_tf.layers.squeeze import squeeze2d, unsqueeze2d


def _sum_hwc(t, like):
    """Sum over H, W, C, broadcast to [N] with N from ``like`` (t may have batch 1)."""
    return tf.broadcast_to(tf.reduce_sum(t, axis=[1, 2, 3]), tf.shape(like)[:1])


class Split(keras.layers.Layer):
    """Splits off half the channels as a latent under a prior conditioned on the other half."""

    def __init__(self, n_channels, **kwargs):
        kwargs.setdefault("dtype", FLOAT32)  # a prior's density is float32 under any global policy
        super().__init__(**kwargs)
        if not isinstance(n_channels, int) or n_channels < 2 or n_channels % 2:
            raise ValueError(f"Split: expected an even n_channels >= 2, got {n_channels!r}")
        self.n_channels = n_channels
        self.conv = ZeroConv2D(n_channels // 2, n_channels, even_channels_first=True, name="conv")

    def _prior(self, z1):
        return tf.split(self.conv(z1), 2, axis=3)  # mean, logs: the original's h[..., 0::2], h[..., 1::2]

    def forward(self, z):
        """z [N, H, W, C] -> (squeeze2d(z1) [N, H/2, W/2, 2C], eps [N, H, W, C/2], log|d eps/d z2| [N])."""
        z1, z2 = tf.split(z, 2, axis=3)
        mean, logs = self._prior(z1)
        eps = (z2 - mean) / tf.exp(logs)
        return squeeze2d(z1), eps, -_sum_hwc(logs, z)

    def inverse(self, z1_squeezed, eps):
        """Inverse of ``forward``: returns (z [N, H, W, C], log|d z2/d eps| [N])."""
        z1 = unsqueeze2d(z1_squeezed)
        mean, logs = self._prior(z1)
        z2 = mean + tf.exp(logs) * eps
        return tf.concat([z1, z2], axis=3), _sum_hwc(logs, z1)


class TopPrior(keras.layers.Layer):
    """The prior of the last level's z, optionally learned (learntop) and class-conditional (ycond)."""

    def __init__(self, shape, learntop=False, ycond=False, n_y=10, **kwargs):
        kwargs.setdefault("dtype", FLOAT32)
        super().__init__(**kwargs)
        height, width, channels = shape
        self.shape = (height, width, channels)
        self.learntop, self.ycond, self.n_y = learntop, ycond, n_y
        if learntop:
            self.p = ZeroConv2D(2 * channels, 2 * channels, name="p")
        if ycond:
            self.y_emb = LinearZeros(n_y, 2 * channels, name="y_emb")

    def mean_and_logs(self, y=None):
        """(mean, logs), each [1 or N, h, w, c]; y [N] int labels, needed when ycond."""
        height, width, channels = self.shape
        h = tf.zeros([1, height, width, 2 * channels])
        if self.learntop:
            h = self.p.on_zeros(height, width)  # the conv of an all-zero input
        if self.ycond:
            y_onehot = tf.one_hot(y, self.n_y, dtype=tf.float32)  # [N, n_y]
            h = h + tf.reshape(self.y_emb(y_onehot), [-1, 1, 1, 2 * channels])
        return h[..., :channels], h[..., channels:]

    def forward(self, z, y=None):
        """z -> (eps, log|d eps/d z| [N])."""
        mean, logs = self.mean_and_logs(y)
        return (z - mean) / tf.exp(logs), -_sum_hwc(logs, z)

    def inverse(self, eps, y=None):
        """eps -> (z, log|d z/d eps| [N])."""
        mean, logs = self.mean_and_logs(y)
        return mean + tf.exp(logs) * eps, _sum_hwc(logs, eps)

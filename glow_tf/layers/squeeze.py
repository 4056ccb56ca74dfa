"""Squeeze: 2x2 space-to-depth in the original's channel order.

    squeeze: [N, H, W, C] -> [N, H/2, W/2, 4C],  out[n, i, j, c*4 + dh*2 + dw] = x[n, 2i+dh, 2j+dw, c]

(tf.nn.space_to_depth orders channels as (dh*2 + dw)*C + c instead, so it is not used.)
A permutation of the entries: log-det 0.
"""
import tensorflow as tf

from glow_tf.layers.base import FlowLayer, batch_constant


def squeeze2d(x, factor=2):
    """[N, H, W, C] -> [N, H/f, W/f, C*f*f], channel index c*f*f + dh*f + dw."""
    _, height, width, channels = x.shape
    x = tf.reshape(x, [-1, height // factor, factor, width // factor, factor, channels])  # [N, H/f, dh, W/f, dw, C]
    x = tf.transpose(x, [0, 1, 3, 5, 2, 4])  # [N, H/f, W/f, C, dh, dw]
    return tf.reshape(x, [-1, height // factor, width // factor, channels * factor * factor])


def unsqueeze2d(x, factor=2):
    """Inverse of ``squeeze2d``: [N, H, W, C*f*f] -> [N, H*f, W*f, C]."""
    _, height, width, channels = x.shape
    x = tf.reshape(x, [-1, height, width, channels // factor ** 2, factor, factor])  # [N, H, W, C, dh, dw]
    x = tf.transpose(x, [0, 1, 4, 2, 5, 3])  # [N, H, dh, W, dw, C]
    return tf.reshape(x, [-1, height * factor, width * factor, channels // factor ** 2])


class Squeeze(FlowLayer):
    """``squeeze2d`` as a flow layer (needs static H, W, C divisible as required)."""

    def __init__(self, factor=2, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(factor, int) or factor < 1:
            raise ValueError(f"Squeeze: expected factor a positive int, got {factor!r}")
        self.factor = factor

    def forward(self, x, cond=None):
        _, height, width, _ = x.shape
        if height is None or width is None or height % self.factor or width % self.factor:
            raise ValueError(f"Squeeze: expected static H, W divisible by {self.factor}, got shape {x.shape}")
        return squeeze2d(x, self.factor), batch_constant(0.0, x)

    def inverse(self, z, cond=None):
        if z.shape[-1] is None or z.shape[-1] % self.factor ** 2:
            raise ValueError(f"Squeeze: expected static C divisible by {self.factor ** 2}, got shape {z.shape}")
        return unsqueeze2d(z, self.factor), batch_constant(0.0, z)

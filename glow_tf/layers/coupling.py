"""Additive and affine coupling layers with the original's coupling network.

The first half of the channels conditions, the second half changes:

    z1, z2 = x[..., :C/2], x[..., C/2:]
    h = NN(z1)      NN = conv3x3(width)+actnorm -> relu -> conv1x1(width)+actnorm -> relu
                         -> zero-initialised conv3x3 (all convs with edge bias)
    additive:  z2 <- z2 + h                                   log-det 0
    affine:    shift = h[..., 0::2], scale = sigmoid(h[..., 1::2] + 2)
               z2 <- (z2 + shift) * scale                     log-det sum(log scale)

Since NN's output conv starts at zero, every coupling starts as the identity (additive) or
as a constant scale sigmoid(2) (affine).
"""
import tensorflow as tf
import tf_keras as keras

from glow_tf.layers.base import FlowLayer, batch_constant
from glow_tf.layers.nn import ConvActNorm, ZeroConv2D


class CouplingNetwork(keras.layers.Layer):
    """The original's ``f``: [N, H, W, n_in] -> [N, H, W, n_out]."""

    def __init__(self, n_in, width, n_out, **kwargs):
        super().__init__(**kwargs)
        self.l_1 = ConvActNorm(n_in, width, (3, 3), name="l_1")
        self.l_2 = ConvActNorm(width, width, (1, 1), name="l_2")
        self.l_last = ZeroConv2D(width, n_out, (3, 3), name="l_last")

    def call(self, x):
        h = tf.nn.relu(self.l_1(x))
        h = tf.nn.relu(self.l_2(h))
        return self.l_last(h)


def _check(name, n_channels, width):
    if not isinstance(n_channels, int) or n_channels < 2 or n_channels % 2:
        raise ValueError(f"{name}: expected an even n_channels >= 2, got {n_channels!r}")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"{name}: expected width a positive int, got {width!r}")


class AdditiveCoupling(FlowLayer):
    """``z2 <- z2 + NN(z1)`` (flow_coupling=0); volume-preserving."""

    def __init__(self, n_channels, width, **kwargs):
        super().__init__(**kwargs)
        _check("AdditiveCoupling", n_channels, width)
        self.n_channels = n_channels
        half = n_channels // 2
        self.f1 = CouplingNetwork(half, width, n_channels - half, name="f1")

    def forward(self, x, cond=None):
        z1, z2 = tf.split(x, 2, axis=3)
        return tf.concat([z1, z2 + self.f1(z1)], axis=3), batch_constant(0.0, x)

    def inverse(self, z, cond=None):
        z1, z2 = tf.split(z, 2, axis=3)
        return tf.concat([z1, z2 - self.f1(z1)], axis=3), batch_constant(0.0, z)


class AffineCoupling(FlowLayer):
    """``z2 <- (z2 + shift) * sigmoid(raw_scale + 2)`` (flow_coupling=1)."""

    def __init__(self, n_channels, width, **kwargs):
        super().__init__(**kwargs)
        _check("AffineCoupling", n_channels, width)
        self.n_channels = n_channels
        self.f1 = CouplingNetwork(n_channels // 2, width, n_channels, name="f1")

    def _shift_and_scale_logit(self, z1):
        h = self.f1(z1)
        return h[..., 0::2], h[..., 1::2] + 2.0  # scale = sigmoid(scale_logit)

    def forward(self, x, cond=None):
        z1, z2 = tf.split(x, 2, axis=3)
        shift, scale_logit = self._shift_and_scale_logit(z1)
        z2 = (z2 + shift) * tf.sigmoid(scale_logit)
        log_det = tf.reduce_sum(tf.math.log_sigmoid(scale_logit), axis=[1, 2, 3])
        return tf.concat([z1, z2], axis=3), log_det

    def inverse(self, z, cond=None):
        z1, z2 = tf.split(z, 2, axis=3)
        shift, scale_logit = self._shift_and_scale_logit(z1)
        z2 = z2 / tf.sigmoid(scale_logit) - shift
        log_det = -tf.reduce_sum(tf.math.log_sigmoid(scale_logit), axis=[1, 2, 3])
        return tf.concat([z1, z2], axis=3), log_det


def make_coupling(flow_coupling, n_channels, width, name="coupling"):
    """The coupling layer for the original's ``flow_coupling`` code."""
    if flow_coupling == 0:
        return AdditiveCoupling(n_channels, width, name=name)
    if flow_coupling == 1:
        return AffineCoupling(n_channels, width, name=name)
    raise ValueError(f"flow_coupling: expected 0 or 1, got {flow_coupling!r}")

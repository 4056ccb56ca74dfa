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

For the normal mode's backward loop (``glow_tf.reversible``) a coupling saves NN's
activations (``forward_saving``) and differentiates from them (``forward_from_saved``), so
its gradient costs no second evaluation of NN.
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
        return self.activations(x)[-1]

    def activations(self, x):
        """[a_1, a_2, h]: the outputs of l_1 and l_2 (before their relu) and h = ``call(x)``."""
        a_1 = self.l_1(x)  # [N, H, W, width]
        a_2 = self.l_2(tf.nn.relu(a_1))  # [N, H, W, width]
        return [a_1, a_2, self.l_last(tf.nn.relu(a_2))]

    def from_activations(self, x, activations):
        """``call(x)`` given ``activations(x)``: their values, and the gradients of ``call(x)``.

        Each conv is applied to its input (x, or the relu of the saved activation before it)
        only for its gradient, which needs the input and the kernel, not the output: nothing
        reads the convs' outputs, so XLA removes them.
        """
        a_1, a_2, h = activations
        a_1 = _valued(self.l_1(x), a_1)
        a_2 = _valued(self.l_2(tf.nn.relu(a_1)), a_2)
        return _valued(self.l_last(tf.nn.relu(a_2)), h)


@tf.custom_gradient
def _valued(computed, value):
    """``value`` (equal to ``computed``, whose static shape it gets), with the gradient of ``computed``."""
    return tf.ensure_shape(value, computed.shape), lambda grad: (grad, None)


def _check(name, n_channels, width):
    if not isinstance(n_channels, int) or n_channels < 2 or n_channels % 2:
        raise ValueError(f"{name}: expected an even n_channels >= 2, got {n_channels!r}")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"{name}: expected width a positive int, got {width!r}")


class Coupling(FlowLayer):
    """The two couplings' shared part: ``h = NN(z1)`` changes z2 (``couple``, ``uncouple``)."""
    n_saved = 3  # NN's activations a_1, a_2, h

    def __init__(self, n_channels, width, n_out, **kwargs):
        super().__init__(**kwargs)
        _check(type(self).__name__, n_channels, width)
        self.n_channels = n_channels
        self.f1 = CouplingNetwork(n_channels // 2, width, n_out, name="f1")

    def couple(self, z2, h):
        """(z2 changed by NN's output h, log-det [N])."""
        raise NotImplementedError

    def uncouple(self, z2, h):
        """The inverse of ``couple``: (z2, log-det [N])."""
        raise NotImplementedError

    def forward(self, x, cond=None):
        z1, z2 = tf.split(x, 2, axis=3)
        return _joined(z1, self.couple(z2, self.f1(z1)))

    def forward_saving(self, x, cond=None):
        z1, z2 = tf.split(x, 2, axis=3)
        activations = self.f1.activations(z1)
        return (*_joined(z1, self.couple(z2, activations[-1])), activations)

    def forward_from_saved(self, x, saved, cond=None):
        z1, z2 = tf.split(x, 2, axis=3)
        return _joined(z1, self.couple(z2, self.f1.from_activations(z1, saved)))

    def inverse(self, z, cond=None):
        z1, z2 = tf.split(z, 2, axis=3)
        return _joined(z1, self.uncouple(z2, self.f1(z1)))


def _joined(z1, z2_and_log_det):
    z2, log_det = z2_and_log_det
    return tf.concat([z1, z2], axis=3), log_det


class AdditiveCoupling(Coupling):
    """``z2 <- z2 + NN(z1)`` (flow_coupling=0); volume-preserving."""

    def __init__(self, n_channels, width, **kwargs):
        super().__init__(n_channels, width, n_channels - n_channels // 2, **kwargs)

    def couple(self, z2, h):
        return z2 + h, batch_constant(0.0, z2)

    def uncouple(self, z2, h):
        return z2 - h, batch_constant(0.0, z2)


class AffineCoupling(Coupling):
    """``z2 <- (z2 + shift) * sigmoid(raw_scale + 2)`` (flow_coupling=1)."""

    def __init__(self, n_channels, width, **kwargs):
        super().__init__(n_channels, width, n_channels, **kwargs)

    @staticmethod
    def _shift_and_scale_logit(h):
        return h[..., 0::2], h[..., 1::2] + 2.0  # scale = sigmoid(scale_logit)

    def couple(self, z2, h):
        shift, scale_logit = self._shift_and_scale_logit(h)
        log_det = tf.reduce_sum(tf.math.log_sigmoid(scale_logit), axis=[1, 2, 3])
        return (z2 + shift) * tf.sigmoid(scale_logit), log_det

    def uncouple(self, z2, h):
        shift, scale_logit = self._shift_and_scale_logit(h)
        log_det = -tf.reduce_sum(tf.math.log_sigmoid(scale_logit), axis=[1, 2, 3])
        return z2 / tf.sigmoid(scale_logit) - shift, log_det


def make_coupling(flow_coupling, n_channels, width, name="coupling"):
    """The coupling layer for the original's ``flow_coupling`` code."""
    if flow_coupling == 0:
        return AdditiveCoupling(n_channels, width, name=name)
    if flow_coupling == 1:
        return AffineCoupling(n_channels, width, name=name)
    raise ValueError(f"flow_coupling: expected 0 or 1, got {flow_coupling!r}")

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

NN runs in its ``precision``, a tf_keras dtype policy name: ``float32`` (the original), or
``mixed_bfloat16``, where its convolutions and activations are bfloat16 and its variables
float32, as Keras mixed precision. Either way its output h is float32: the coupling's scale,
log-det and the update of z2 are float32, and since the inverse computes h from the same z1
as the forward, the coupling stays exactly invertible up to float32 rounding.

For the normal mode's backward loop (``layers.reversible``) a coupling saves NN's
activations (``forward_saving``) and differentiates from them (``forward_from_saved``), so
its gradient costs no second evaluation of NN.
"""
import tensorflow as tf
import tf_keras as keras

from glow_tf.layers.base import FLOAT32, FlowLayer, batch_constant, check_precision, network_precision
from glow_tf.layers.nn import ConvActNorm, ZeroConv2D


class CouplingNetwork(keras.layers.Layer):
    """The original's ``f``: [N, H, W, n_in] -> float32 [N, H, W, n_out], computed in ``precision``.

    Its layers compute in the dtype of their input, which the network casts to its compute
    dtype: ``precision``'s, or the one ``layers.precision_as`` sets. ``even_channels_first``:
    the output's channels in the order 0, 2, 4, ..., 1, 3, 5, ... (``ZeroConv2D``).
    """

    def __init__(self, n_in, width, n_out, precision=FLOAT32, even_channels_first=False, **kwargs):
        super().__init__(dtype=check_precision("CouplingNetwork", precision), autocast=False, **kwargs)
        self.l_1 = ConvActNorm(n_in, width, (3, 3), name="l_1", dtype=precision, autocast=False)
        self.l_2 = ConvActNorm(width, width, (1, 1), name="l_2", dtype=precision, autocast=False)
        self.l_last = ZeroConv2D(width, n_out, (3, 3), even_channels_first, name="l_last", dtype=precision,
                                 autocast=False)

    @property
    def network_dtype(self) -> tf.DType:
        """The dtype the network computes in now (bfloat16 under mixed_bfloat16, else float32)."""
        return tf.as_dtype(keras.mixed_precision.Policy(network_precision(self.dtype_policy.name)).compute_dtype)

    def call(self, x):
        return self.activations(x)[-1]

    def saved_dtypes(self):
        """The dtypes of ``activations``: r_1 and r_2 in the network's dtype, h float32."""
        return [self.network_dtype] * 2 + [tf.float32]

    def activations(self, x):
        """[r_1, r_2, h]: the outputs of relu(l_1) and relu(l_2), and h = ``call(x)``.

        The relus' outputs, not their inputs, are what the backward reads: so that nothing else
        reads a conv's output, and every graph that runs the network (training's forward, which
        saves these, and the inverse, which does not) computes it the same way, with the same
        roundings in bfloat16 (a graph optimizer may fuse a conv with its bias and relu only
        where nothing else reads the conv's output).
        """
        x = tf.cast(x, self.network_dtype)
        r_1 = tf.nn.relu(self.l_1(x))  # [N, H, W, width]
        r_2 = tf.nn.relu(self.l_2(r_1))  # [N, H, W, width]
        return [r_1, r_2, tf.cast(self.l_last(r_2), tf.float32)]

    def from_activations(self, x, activations):
        """``call(x)`` given ``activations(x)``: their values, and the gradients of ``call(x)``.

        Each conv is applied to its input (x, or the saved relu output before it) only for its
        gradient, which needs the input and the kernel, not the output; a relu's gradient reads
        the saved output. Nothing reads the convs' outputs, so XLA and Grappler remove them.
        """
        r_1, r_2, h = activations
        r_1 = _relu_valued(self.l_1(tf.cast(x, self.network_dtype)), r_1)
        r_2 = _relu_valued(self.l_2(r_1), r_2)
        return _valued(tf.cast(self.l_last(r_2), tf.float32), h)


@tf.custom_gradient
def _valued(computed, value):
    """``value`` (equal to ``computed``, whose static shape it gets), with the gradient of ``computed``."""
    return tf.ensure_shape(value, computed.shape), lambda grad: (grad, None)


@tf.custom_gradient
def _relu_valued(computed, value):
    """``value`` (equal to relu(``computed``)), with the gradient of relu(``computed``), from ``value``."""
    return (tf.ensure_shape(value, computed.shape),
            lambda grad: (tf.raw_ops.ReluGrad(gradients=grad, features=value), None))


def _check(name, n_channels, width):
    if not isinstance(n_channels, int) or n_channels < 2 or n_channels % 2:
        raise ValueError(f"{name}: expected an even n_channels >= 2, got {n_channels!r}")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"{name}: expected width a positive int, got {width!r}")


class Coupling(FlowLayer):
    """The two couplings' shared part: ``h = NN(z1)`` changes z2 (``couple``, ``uncouple``).

    ``precision``: NN's tf_keras dtype policy (``PRECISIONS``); the coupling itself is float32.
    """

    def __init__(self, n_channels, width, n_out, precision=FLOAT32, even_channels_first=False, **kwargs):
        super().__init__(**kwargs)
        _check(type(self).__name__, n_channels, width)
        self.n_channels = n_channels
        self.f1 = CouplingNetwork(n_channels // 2, width, n_out, precision, even_channels_first, name="f1")

    def saved_dtypes(self):
        return self.f1.saved_dtypes()

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

    def __init__(self, n_channels, width, precision=FLOAT32, **kwargs):
        super().__init__(n_channels, width, n_channels - n_channels // 2, precision, **kwargs)

    def couple(self, z2, h):
        return z2 + h, batch_constant(0.0, z2)

    def uncouple(self, z2, h):
        return z2 - h, batch_constant(0.0, z2)


class AffineCoupling(Coupling):
    """``z2 <- (z2 + shift) * sigmoid(raw_scale + 2)`` (flow_coupling=1)."""

    def __init__(self, n_channels, width, precision=FLOAT32, **kwargs):
        # The network's output channels come even first: the original's h[..., 0::2] and
        # h[..., 1::2] are its two halves.
        super().__init__(n_channels, width, n_channels, precision, even_channels_first=True, **kwargs)

    @staticmethod
    def _shift_and_scale_logit(h):
        shift, raw_scale = tf.split(h, 2, axis=3)  # the original's h[..., 0::2], h[..., 1::2]
        return shift, raw_scale + 2.0  # scale = sigmoid(scale_logit)

    def couple(self, z2, h):
        shift, scale_logit = self._shift_and_scale_logit(h)
        log_det = tf.reduce_sum(tf.math.log_sigmoid(scale_logit), axis=[1, 2, 3])
        return (z2 + shift) * tf.sigmoid(scale_logit), log_det

    def uncouple(self, z2, h):
        shift, scale_logit = self._shift_and_scale_logit(h)
        log_det = -tf.reduce_sum(tf.math.log_sigmoid(scale_logit), axis=[1, 2, 3])
        return z2 / tf.sigmoid(scale_logit) - shift, log_det


def make_coupling(flow_coupling, n_channels, width, precision=FLOAT32, name="coupling"):
    """The coupling layer for the original's ``flow_coupling`` code, its network in ``precision``."""
    if flow_coupling == 0:
        return AdditiveCoupling(n_channels, width, precision, name=name)
    if flow_coupling == 1:
        return AffineCoupling(n_channels, width, precision, name=name)
    raise ValueError(f"flow_coupling: expected 0 or 1, got {flow_coupling!r}")

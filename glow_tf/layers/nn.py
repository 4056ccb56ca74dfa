"""The original's network blocks (tfops.py): conv with edge bias + actnorm, zero-initialised
conv and linear layers. These are ordinary (non-invertible) tf_keras layers used inside the
coupling network, the split prior, the top prior and the classifier.

"Edge bias": before a SAME convolution the original pads the input with zeros and appends one
channel that is 1 on the padded border and 0 inside, so the network can tell the border from
real zeros. The kernel therefore has C + 1 input channels. The border channel is the same for
every example, so its contribution is a constant [1, H, W, width] map; it is computed once per
call from a [1, H+2, W+2, 1] mask instead of concatenating a channel to the whole batch.
"""
import tensorflow as tf
import tf_keras as keras

from glow_tf.layers.actnorm import LOGSCALE_FACTOR, ActNorm


def _edge_term(kernel_edge, height, width):
    """Contribution of the border channel: conv of the padding mask with its kernel slice."""
    pad_h, pad_w = kernel_edge.shape[0] // 2, kernel_edge.shape[1] // 2
    inside = tf.zeros([1, height, width, 1], kernel_edge.dtype)
    mask = tf.pad(inside, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]], constant_values=1.0)
    return tf.nn.conv2d(mask, kernel_edge, 1, "VALID")  # [1, H, W, width]


def pointwise(x, matrix):
    """1x1 convolution x [N, H, W, C] @ matrix [C, C_out] as one matmul over all pixels.

    XLA on CPU runs a 1x1 conv's weight gradient as a spatial convolution that transposes both
    activations first; as a matmul the gradients are plain matmuls (5% of a training step).
    """
    n_out = matrix.shape[-1]
    out = tf.matmul(tf.reshape(x, [-1, matrix.shape[0]]), matrix)  # [N*H*W, C_out]
    return tf.reshape(out, tf.concat([tf.shape(x)[:-1], [n_out]], axis=0))  # [N, H, W, C_out]


def edge_bias_conv2d(x, kernel):
    """The original's ``add_edge_padding`` + VALID conv, for kernels of odd size.

    ``kernel`` is [kh, kw, C + 1, width] for kh * kw > 1 (last input channel = border
    indicator) and [1, 1, C, width] for 1x1 kernels, which the original leaves unpadded.
    """
    if kernel.shape[0] == 1 and kernel.shape[1] == 1:
        return pointwise(x, kernel[0, 0])
    n_in = kernel.shape[2] - 1
    out = tf.nn.conv2d(x, kernel[:, :, :n_in], 1, "SAME")
    return out + _edge_term(kernel[:, :, n_in:], tf.shape(x)[1], tf.shape(x)[2])


def _kernel_shape(n_in, n_out, kernel_size):
    padded = kernel_size != (1, 1)
    return [kernel_size[0], kernel_size[1], n_in + int(padded), n_out]


class ConvActNorm(keras.layers.Layer):
    """The original's ``conv2d``: edge-bias conv, no bias, N(0, 0.05) init, then ActNorm."""

    def __init__(self, n_in, n_out, kernel_size=(3, 3), **kwargs):
        super().__init__(**kwargs)
        self.kernel = self.add_weight(
            "W", shape=_kernel_shape(n_in, n_out, tuple(kernel_size)),
            initializer=keras.initializers.RandomNormal(0.0, 0.05))
        self.actnorm = ActNorm(n_out, name="actnorm")

    def call(self, x):
        return self.actnorm.forward(edge_bias_conv2d(x, self.kernel))[0]


class ZeroConv2D(keras.layers.Layer):
    """The original's ``conv2d_zeros``: ``(conv(x) + b) * exp(3 * logs)``, all zeros at init."""

    def __init__(self, n_in, n_out, kernel_size=(3, 3), **kwargs):
        super().__init__(**kwargs)
        self.kernel = self.add_weight("W", shape=_kernel_shape(n_in, n_out, tuple(kernel_size)),
                                      initializer="zeros")
        self.bias = self.add_weight("b", shape=[1, 1, 1, n_out], initializer="zeros")
        self.scaled_logs = self.add_weight("logs", shape=[1, n_out], initializer="zeros")

    def output_scale(self):
        return tf.exp(self.scaled_logs * LOGSCALE_FACTOR)  # [1, n_out]

    def call(self, x):
        # (conv(x, W) + b) * s == conv(x, W * s) + b * s: scaling the small kernel instead of
        # the output saves a pass over the activations, forward and backward.
        scale = self.output_scale()
        return edge_bias_conv2d(x, self.kernel * scale) + self.bias * scale

    def on_zeros(self, height, width):
        """The output for an all-zero input, [1, H, W, n_out]: only bias and border remain."""
        n_in = self.kernel.shape[2] - 1
        edge = _edge_term(self.kernel[:, :, n_in:], height, width)
        return (edge + self.bias) * self.output_scale()


class LinearZeros(keras.layers.Layer):
    """The original's ``linear_zeros``: ``(x @ W + b) * exp(3 * logs)``, all zeros at init."""

    def __init__(self, n_in, n_out, **kwargs):
        super().__init__(**kwargs)
        self.kernel = self.add_weight("W", shape=[n_in, n_out], initializer="zeros")
        self.bias = self.add_weight("b", shape=[1, n_out], initializer="zeros")
        self.scaled_logs = self.add_weight("logs", shape=[1, n_out], initializer="zeros")

    def call(self, x):
        return (tf.matmul(x, self.kernel) + self.bias) * tf.exp(self.scaled_logs * LOGSCALE_FACTOR)

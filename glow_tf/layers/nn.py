"""The original's network blocks (tfops.py): conv with edge bias + actnorm, zero-initialised
conv and linear layers. These are ordinary (non-invertible) tf_keras layers used inside the
coupling network, the split prior, the top prior and the classifier.

"Edge bias": before a SAME convolution the original pads the input with zeros and appends one
channel that is 1 on the padded border and 0 inside, so the network can tell the border from
real zeros. The kernel therefore has C + 1 input channels. The border channel is the same for
every example, so its contribution is a constant [1, H, W, width] map: a matmul of the fixed
border pattern with the kernel's last input channel (``_edge_term``), or, where the input has
fewer channels than the output, the original's padding itself (``edge_padded``), after which
the bias is a BiasAdd that TensorFlow's graph optimizer fuses with the convolution.

Convolutions run on the fastest kernels of the engine that runs them (``conv2d_same``,
``scaled_conv2d``). Outside XLA they are TensorFlow's own (oneDNN on CPU, cuDNN on GPU), with
two gradients written out where TensorFlow's does more work than needed. XLA on CPU runs
convolutions at a fraction of its matmul rate, and the weight gradient of one as a naive loop
nest inside ``tf.while_loop`` bodies (the memory-saving mode loops over flow steps), so under
XLA on a host without accelerators they are matmuls with hand-written gradients
(``_matmul_conv2d_same``): a convolution with few outputs (the coupling network's last layer;
the gradient of its first layer's input) as one matmul and shifted sums (``_conv_same``).
Inside ``base.plain_ops()`` (the SavedModel export) every convolution is TensorFlow's own
``tf.nn.conv2d``, with TensorFlow's gradients.
"""
import functools

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tensorflow.python.ops import control_flow_util

from glow_tf.layers.actnorm import LOGSCALE_FACTOR, ActNorm
from glow_tf.layers.base import FLOAT32, initializing, only_plain_ops, read


def _border_taps(height, width, kernel_h, kernel_w):
    """[H*W, kh*kw]: 1 where tap (i, j) of the kernel at output pixel (h, w) is on the padding."""
    pad_h, pad_w = kernel_h // 2, kernel_w // 2
    mask = np.pad(np.zeros([height, width]), [[pad_h, pad_h], [pad_w, pad_w]], constant_values=1.0)
    return np.stack([mask[i:i + height, j:j + width].reshape(-1)
                     for i in range(kernel_h) for j in range(kernel_w)], axis=1)


def _edge_term(kernel_edge, height, width):
    """Contribution of the border channel: the padding pattern times its kernel slice."""
    kernel_h, kernel_w, _, n_out = kernel_edge.shape
    taps = tf.constant(_border_taps(height, width, kernel_h, kernel_w), kernel_edge.dtype)
    edge = tf.matmul(taps, tf.reshape(kernel_edge, [kernel_h * kernel_w, n_out]))  # [H*W, width]
    return tf.reshape(edge, [1, height, width, n_out])


def _neighbourhoods(x, kernel_h, kernel_w, flip=False):
    """[N, H, W, C] -> [N, H, W, kh*kw*C]: every pixel's zero-padded kh x kw neighbourhood,
    tap-major (tap (i, j) = x[h + i - kh//2, w + j - kw//2]; with ``flip`` x[h - i + kh//2, ...])."""
    pad_h, pad_w = kernel_h // 2, kernel_w // 2
    height, width = x.shape[1], x.shape[2]
    padded = tf.pad(x, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]])
    taps = [(2 * pad_h - i, 2 * pad_w - j) if flip else (i, j) for i in range(kernel_h) for j in range(kernel_w)]
    return tf.concat([padded[:, i:i + height, j:j + width, :] for i, j in taps], axis=3)


def _conv_same(x, kernel):
    """``tf.nn.conv2d(x, kernel, 1, "SAME")`` for odd kernels [kh, kw, n_in, n_out].

    With few outputs (kh * kw * n_out <= n_in) as one matmul of every pixel with every tap's
    kernel, whose outputs are summed shifted: out[h, w] = sum_ij (x @ K_ij)[h + i - kh//2,
    w + j - kw//2]. XLA on CPU runs such convolutions at a fraction of its matmul rate (at
    batch 64, 16 x 16: 128 -> 12 channels 7.6 ms -> 5.6 ms, 128 -> 6 channels 7.9 -> 4.1 ms).
    """
    kernel_h, kernel_w, n_in, n_out = kernel.shape
    if kernel_h * kernel_w * n_out > n_in:
        return tf.nn.conv2d(x, kernel, 1, "SAME")
    pad_h, pad_w = kernel_h // 2, kernel_w // 2
    height, width = x.shape[1], x.shape[2]
    taps_kernel = tf.reshape(tf.transpose(kernel, [2, 0, 1, 3]), [n_in, kernel_h * kernel_w * n_out])
    taps = tf.matmul(tf.reshape(x, [-1, n_in]), taps_kernel)  # [N*H*W, kh*kw*n_out]
    taps = tf.reshape(taps, [-1, height, width, kernel_h * kernel_w, n_out])  # [N, H, W, kh*kw, n_out]
    padded = tf.pad(taps, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0], [0, 0]])
    return tf.add_n([padded[:, i:i + height, j:j + width, i * kernel_w + j]
                     for i in range(kernel_h) for j in range(kernel_w)])  # [N, H, W, n_out]


def compiled_by_xla() -> bool:
    """Whether the ops being built now are compiled by XLA (``tf.function(jit_compile=True)``, TPUs)."""
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


@functools.lru_cache(maxsize=None)
def _has_accelerator() -> bool:
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def conv2d_same(x, kernel):
    """``tf.nn.conv2d(x, kernel, 1, "SAME")`` for odd kernels, on the fastest kernels of the engine
    that runs it: as matmuls (``_matmul_conv2d_same``) under XLA without accelerators; elsewhere
    TensorFlow's own, with the kernel's gradient as one matmul when the outputs are few
    (``_few_outputs_conv2d_same``); inside ``base.plain_ops()`` TensorFlow's own with its gradients."""
    if only_plain_ops():
        return tf.nn.conv2d(x, kernel, 1, "SAME")
    if compiled_by_xla() and not _has_accelerator():
        return _matmul_conv2d_same(x, kernel)
    kernel_h, kernel_w, n_in, n_out = kernel.shape
    if kernel_h * kernel_w * n_out <= n_in:
        return _few_outputs_conv2d_same(x, kernel)
    return tf.nn.conv2d(x, kernel, 1, "SAME")


def _in_scope(scope):
    """The name scope ``scope`` (absolute) again: a hand-written gradient's ops are named as the
    layer whose forward they differentiate (profiles and graph dumps name them by layer)."""
    return tf.name_scope(scope + "/" if scope else "")


def _kernel_gradient(x, grad_out, kernel_shape):
    """The gradient of a SAME convolution's kernel, as one matmul over all pixels: of the input's
    neighbourhoods with the output gradient, or of the input with the output gradient's
    (flipped) neighbourhoods, whichever has fewer channels."""
    kernel_h, kernel_w, n_in, n_out = kernel_shape
    if n_in <= n_out:
        patches = tf.reshape(_neighbourhoods(x, kernel_h, kernel_w), [-1, kernel_h * kernel_w * n_in])
        grad_kernel = tf.matmul(patches, tf.reshape(grad_out, [-1, n_out]), transpose_a=True)
        return tf.reshape(grad_kernel, kernel_shape)
    patches = tf.reshape(_neighbourhoods(grad_out, kernel_h, kernel_w, flip=True), [-1, kernel_h * kernel_w * n_out])
    grad_kernel = tf.matmul(tf.reshape(x, [-1, n_in]), patches, transpose_a=True)  # [n_in, kh*kw*n_out]
    return tf.transpose(tf.reshape(grad_kernel, [n_in, kernel_h, kernel_w, n_out]), [1, 2, 0, 3])


@tf.autograph.experimental.do_not_convert
@tf.custom_gradient
def _matmul_conv2d_same(x, kernel):
    """``tf.nn.conv2d(x, kernel, 1, "SAME")`` for odd kernels as matmuls, with hand-written gradients.

    The input gradient is the SAME convolution of the output gradient with the flipped,
    transposed kernel; the kernel's is ``_kernel_gradient``.
    """
    scope = tf.get_current_name_scope()

    def grad(grad_out):
        with _in_scope(scope):
            flipped = tf.transpose(kernel[::-1, ::-1], [0, 1, 3, 2])  # [kh, kw, n_out, n_in]
            return _conv_same(grad_out, flipped), _kernel_gradient(x, grad_out, kernel.shape)

    return _conv_same(x, kernel), grad


@tf.autograph.experimental.do_not_convert
@tf.custom_gradient
def _few_outputs_conv2d_same(x, kernel):
    """TensorFlow's SAME convolution with few outputs; its kernel's gradient is ``_kernel_gradient``
    (oneDNN's kernel gradient of a 128 -> 12 channel convolution ran at half its matmul's rate)."""
    scope = tf.get_current_name_scope()

    def grad(grad_out):
        with _in_scope(scope):
            grad_x = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=kernel, out_backprop=grad_out,
                                                    strides=[1, 1, 1, 1], padding="SAME")
            return grad_x, _kernel_gradient(x, grad_out, kernel.shape)

    return tf.nn.conv2d(x, kernel, 1, "SAME"), grad


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
    return conv2d_same(x, kernel[:, :, :n_in]) + _edge_term(kernel[:, :, n_in:], x.shape[1], x.shape[2])


def edge_padded(x, kernel_h, kernel_w):
    """The original's ``add_edge_padding``: x zero-padded for a VALID conv, and the border channel
    (1 on the padding, 0 inside) appended: [N, H + kh - 1, W + kw - 1, C + 1]."""
    pad_h, pad_w = kernel_h // 2, kernel_w // 2
    height, width = x.shape[1], x.shape[2]
    border = np.pad(np.zeros([1, height, width, 1]), [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]],
                    constant_values=1.0)  # [1, H + 2 pad_h, W + 2 pad_w, 1]
    padded = tf.pad(x, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]])
    border = tf.broadcast_to(tf.constant(border, x.dtype), tf.concat([tf.shape(x)[:1], border.shape[1:]], 0))
    return tf.concat([padded, border], axis=3)


def edge_padded_conv2d(x, kernel):
    """The VALID conv of ``edge_padded(x)`` with ``kernel`` [kh, kw, C + 1, n_out] (= edge_bias_conv2d).

    Its input's gradient is written out (``_edge_padded_conv2d``) unless ``only_plain_ops()``.
    """
    if only_plain_ops():
        return tf.nn.conv2d(edge_padded(x, kernel.shape[0], kernel.shape[1]), kernel, 1, "VALID")
    return _edge_padded_conv2d(x, kernel)


@tf.autograph.experimental.do_not_convert
@tf.custom_gradient
def _edge_padded_conv2d(x, kernel):
    """``edge_padded_conv2d`` with its gradient written out.

    Its input's gradient is the SAME convolution's of x's own C channels: TensorFlow's gradient
    of the padded input computes one more channel and the padding ring, and slices them off.
    """
    kernel_h, kernel_w, n_in, _ = kernel.shape
    padded = edge_padded(x, kernel_h, kernel_w)
    scope = tf.get_current_name_scope()

    def grad(grad_out):
        with _in_scope(scope):
            grad_x = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=kernel[:, :, :n_in - 1],
                                                    out_backprop=grad_out, strides=[1, 1, 1, 1], padding="SAME")
            grad_kernel = tf.raw_ops.Conv2DBackpropFilter(input=padded, filter_sizes=kernel.shape,
                                                          out_backprop=grad_out, strides=[1, 1, 1, 1], padding="VALID")
            return grad_x, grad_kernel

    return tf.nn.conv2d(padded, kernel, 1, "VALID"), grad


def scaled_conv2d(x, kernel, bias, scale):
    """``(edge_bias_conv2d(x, kernel) + bias) * scale`` with a per-output-channel ``scale``, in x's dtype.

    Computed as conv(x, W * s) + b * s: scaling the small kernel instead of the output saves a
    pass over the activations, and the gradient of s needs no sum over every pixel (slow under
    XLA on CPU). The float32 parameters are combined first, then cast to x's dtype (bfloat16
    under mixed precision).

    Outside XLA the bias is a BiasAdd straight after the convolution, which Grappler fuses with
    it (and with a relu that follows) into one oneDNN or cuDNN op; the border channel joins the
    input where the input has fewer channels than the output (the original's padding, then a
    VALID conv), else its constant contribution joins the bias.
    """
    kernel = tf.cast(kernel * scale, x.dtype)
    bias = tf.cast(bias * scale, x.dtype)
    if compiled_by_xla():
        return edge_bias_conv2d(x, kernel) + bias
    kernel_h, kernel_w, n_in, n_out = kernel.shape
    bias = tf.reshape(bias, [n_out])
    if kernel_h == kernel_w == 1:
        return tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "VALID"), bias)
    if n_in <= n_out:
        return tf.nn.bias_add(edge_padded_conv2d(x, kernel), bias)
    kernel, border_kernel = tf.split(kernel, [n_in - 1, 1], axis=2)  # (a Split's gradient is a concat)
    return conv2d_same(x, kernel) + (_edge_term(border_kernel, x.shape[1], x.shape[2]) + bias)


def _kernel_shape(n_in, n_out, kernel_size):
    padded = kernel_size != (1, 1)
    return [kernel_size[0], kernel_size[1], n_in + int(padded), n_out]


class ConvActNorm(keras.layers.Layer):
    """The original's ``conv2d``: edge-bias conv, no bias, N(0, 0.05) init, then ActNorm.

    Computes in the dtype of its input (bfloat16 in a mixed_bfloat16 coupling network); its
    variables, the actnorm's included, are float32.
    """

    def __init__(self, n_in, n_out, kernel_size=(3, 3), **kwargs):
        kwargs.setdefault("dtype", FLOAT32)
        super().__init__(**kwargs)
        # autocast=False: read as float32 under any policy; the layer casts what it computes with.
        self.kernel = self.add_weight(
            "W", shape=_kernel_shape(n_in, n_out, tuple(kernel_size)),
            initializer=keras.initializers.RandomNormal(0.0, 0.05), autocast=False)
        self.actnorm = ActNorm(n_out, name="actnorm")

    def call(self, x):
        if initializing():  # the actnorm initialises (in float32) from the conv's own output
            out = edge_bias_conv2d(x, tf.cast(read(self.kernel), x.dtype))
            return tf.cast(self.actnorm.forward(tf.cast(out, tf.float32))[0], x.dtype)
        # The actnorm after the conv: (conv(x, W) + b) * exp(logs).
        return scaled_conv2d(x, read(self.kernel), read(self.actnorm.bias), tf.exp(self.actnorm.logs))


def _even_channels_first(parameter):
    """``parameter`` [..., n] with its last axis in the order 0, 2, 4, ..., 1, 3, 5, ...

    As a product with the permutation matrix (exact): one small matmul, and one for its gradient
    (strided slices, a concat and their gradients, or a gather and its gradient, are each
    several ops; they ran once per flow step and cost a tenth of a training step's time).
    """
    n = parameter.shape[-1]
    order = np.concatenate([np.arange(0, n, 2), np.arange(1, n, 2)])
    permutation = tf.constant(np.eye(n)[:, order], parameter.dtype)  # column j = e_order[j]
    flat = tf.matmul(tf.reshape(parameter, [-1, n]), permutation)  # [prod(shape[:-1]), n]
    return tf.reshape(flat, parameter.shape)


class ZeroConv2D(keras.layers.Layer):
    """The original's ``conv2d_zeros``: ``(conv(x) + b) * exp(3 * logs)``, all zeros at init.

    Computes in the dtype of its input. With ``even_channels_first`` its output holds the
    original's output channels 0, 2, 4, ... and then 1, 3, 5, ...: where the original splits
    them as h[..., 0::2] and h[..., 1::2], the two are contiguous halves (a strided slice of
    the activations, and its gradient, cost a pass each over them outside XLA; the parameters'
    columns are permuted instead). The variables keep the original's layout.
    """

    def __init__(self, n_in, n_out, kernel_size=(3, 3), even_channels_first=False, **kwargs):
        kwargs.setdefault("dtype", FLOAT32)
        super().__init__(**kwargs)
        self.even_channels_first = even_channels_first
        # autocast=False: read as float32 under any policy; the layer casts what it computes with.
        self.kernel = self.add_weight("W", shape=_kernel_shape(n_in, n_out, tuple(kernel_size)),
                                      initializer="zeros", autocast=False)
        self.bias = self.add_weight("b", shape=[1, 1, 1, n_out], initializer="zeros", autocast=False)
        self.scaled_logs = self.add_weight("logs", shape=[1, n_out], initializer="zeros", autocast=False)

    def output_scale(self):
        return tf.exp(read(self.scaled_logs) * LOGSCALE_FACTOR)  # [1, n_out]

    def call(self, x):
        kernel, bias, scale = read(self.kernel), read(self.bias), self.output_scale()
        if self.even_channels_first:
            kernel, bias, scale = (_even_channels_first(p) for p in (kernel, bias, scale))
        return scaled_conv2d(x, kernel, bias, scale)

    def on_zeros(self, height, width):
        """The output for an all-zero input, [1, H, W, n_out]: only bias and border remain."""
        n_in = self.kernel.shape[2] - 1
        edge = _edge_term(read(self.kernel)[:, :, n_in:], height, width)
        return (edge + read(self.bias)) * self.output_scale()


class LinearZeros(keras.layers.Layer):
    """The original's ``linear_zeros``: ``(x @ W + b) * exp(3 * logs)``, all zeros at init."""

    def __init__(self, n_in, n_out, **kwargs):
        kwargs.setdefault("dtype", FLOAT32)
        super().__init__(**kwargs)
        self.kernel = self.add_weight("W", shape=[n_in, n_out], initializer="zeros")
        self.bias = self.add_weight("b", shape=[1, n_out], initializer="zeros")
        self.scaled_logs = self.add_weight("logs", shape=[1, n_out], initializer="zeros")

    def call(self, x):
        return (tf.matmul(x, read(self.kernel)) + read(self.bias)) * tf.exp(read(self.scaled_logs) * LOGSCALE_FACTOR)

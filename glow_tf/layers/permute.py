"""Channel permutations of a flow step: reverse, fixed shuffle, invertible 1x1 convolution.

All act on the channel axis of [N, H, W, C] inputs. Reverse and shuffle are volume-preserving
(log-det 0). The invertible 1x1 conv multiplies every pixel's channel vector by W:

    z[n, h, w, :] = x[n, h, w, :] @ W,     log|det dz/dx| = H * W * log|det W|

with the determinant computed in float64, as the original does. ``InvertibleConv1x1LU`` is the
original's LU-decomposed variant (W = P L (U + diag(sign_s * exp(log_s)))), whose log-det is
H * W * sum(log_s).
"""
import numpy as np
import scipy.linalg
import tensorflow as tf

from glow_tf.layers.base import FlowLayer, batch_constant, read
from glow_tf.layers.nn import pointwise


def _check_channels(name, n_channels):
    if not isinstance(n_channels, int) or n_channels < 1:
        raise ValueError(f"{name}: expected n_channels a positive int, got {n_channels!r}")


def _random_orthogonal(n_channels, rng):
    """The original's init: Q of the QR decomposition of a standard Gaussian matrix."""
    return np.linalg.qr(rng.standard_normal((n_channels, n_channels)))[0].astype(np.float32)


def _pixels(x):
    return tf.cast(tf.shape(x)[1] * tf.shape(x)[2], x.dtype)


class Reverse(FlowLayer):
    """Reverses the channel order (the original's flow_permutation=0)."""

    def __init__(self, n_channels, **kwargs):
        super().__init__(**kwargs)
        _check_channels("Reverse", n_channels)
        self.n_channels = n_channels

    def forward(self, x, cond=None):
        return x[..., ::-1], batch_constant(0.0, x)

    def inverse(self, z, cond=None):
        return self.forward(z, cond)


class Shuffle(FlowLayer):
    """A fixed random channel permutation (flow_permutation=1).

    ``z[..., i] = x[..., indices[i]]``. The indices are non-trainable variables (the original's
    ``shuffle/indices`` and ``shuffle/indices_inverse``) so they survive save/restore.
    """

    def __init__(self, n_channels, seed=0, **kwargs):
        super().__init__(**kwargs)
        _check_channels("Shuffle", n_channels)
        self.n_channels = n_channels
        permutation = np.random.RandomState(seed).permutation(n_channels).astype(np.int32)
        self.indices = self.add_weight(
            "indices", shape=[n_channels], dtype=tf.int32, trainable=False,
            initializer=tf.constant_initializer(permutation))
        self.indices_inverse = self.add_weight(
            "indices_inverse", shape=[n_channels], dtype=tf.int32, trainable=False,
            initializer=tf.constant_initializer(np.argsort(permutation).astype(np.int32)))

    def forward(self, x, cond=None):
        return tf.gather(x, read(self.indices), axis=3), batch_constant(0.0, x)

    def inverse(self, z, cond=None):
        return tf.gather(z, read(self.indices_inverse), axis=3), batch_constant(0.0, z)


class InvertibleConv1x1(FlowLayer):
    """Invertible 1x1 convolution with a plain weight matrix W (flow_permutation=2).

    Initialised to a random orthogonal matrix drawn from a numpy RandomState(seed).
    """

    def __init__(self, n_channels, seed=0, **kwargs):
        super().__init__(**kwargs)
        _check_channels("InvertibleConv1x1", n_channels)
        self.n_channels = n_channels
        w_init = _random_orthogonal(n_channels, np.random.RandomState(seed))
        self.kernel = self.add_weight("W", shape=[n_channels, n_channels],
                                      initializer=tf.constant_initializer(w_init))

    def log_abs_det(self):
        """log|det W| in float64, cast back to float32, as the original.

        Computed as logdet(W^T W) / 2 through a Cholesky factorisation: XLA compiles that (and
        its gradient W^{-T}), while determinant and LU ops have no XLA kernel on CPU.
        """
        w = tf.cast(read(self.kernel), tf.float64)
        return tf.cast(0.5 * tf.linalg.logdet(tf.matmul(w, w, transpose_a=True)), tf.float32)

    def forward(self, x, cond=None):
        return pointwise(x, read(self.kernel)), batch_constant(self.log_abs_det() * _pixels(x), x)

    def inverse(self, z, cond=None):
        w_inverse = tf.cast(tf.linalg.inv(tf.cast(read(self.kernel), tf.float64)), tf.float32)
        return pointwise(z, w_inverse), batch_constant(-self.log_abs_det() * _pixels(z), z)


class InvertibleConv1x1LU(FlowLayer):
    """Invertible 1x1 convolution, LU-decomposed as the original's disabled variant (option 3).

    W = P @ L @ (U + diag(sign_s * exp(log_s))) with P a fixed permutation, L unit lower
    triangular and U strictly upper triangular; computed in float64.
    """

    def __init__(self, n_channels, seed=0, **kwargs):
        super().__init__(**kwargs)
        _check_channels("InvertibleConv1x1LU", n_channels)
        self.n_channels = n_channels
        w_init = _random_orthogonal(n_channels, np.random.RandomState(seed))
        p, lower, upper = scipy.linalg.lu(w_init)
        s = np.diag(upper)

        def weight(name, value, trainable=True):
            return self.add_weight(name, shape=value.shape, trainable=trainable,
                                   initializer=tf.constant_initializer(value.astype(np.float32)))

        self.p = weight("P", p, trainable=False)
        self.lower = weight("L", lower)
        self.sign_s = weight("sign_S", np.sign(s), trainable=False)
        self.log_s = weight("log_S", np.log(np.abs(s)))
        self.upper = weight("U", np.triu(upper, k=1))
        self._lower_mask = np.tril(np.ones([n_channels, n_channels]), -1)

    def _factors(self):
        f64 = lambda v: tf.cast(read(v), tf.float64)  # noqa: E731
        eye = tf.eye(self.n_channels, dtype=tf.float64)
        lower = f64(self.lower) * self._lower_mask + eye
        upper = f64(self.upper) * self._lower_mask.T + tf.linalg.diag(f64(self.sign_s) * tf.exp(f64(self.log_s)))
        return f64(self.p), lower, upper

    def weight_matrix(self):
        p, lower, upper = self._factors()
        return tf.cast(p @ lower @ upper, tf.float32)

    def forward(self, x, cond=None):
        log_det = tf.reduce_sum(read(self.log_s)) * _pixels(x)
        return pointwise(x, self.weight_matrix()), batch_constant(log_det, x)

    def inverse(self, z, cond=None):
        p, lower, upper = self._factors()
        eye = tf.eye(self.n_channels, dtype=tf.float64)
        upper_inv = tf.linalg.triangular_solve(upper, eye, lower=False)
        lower_inv = tf.linalg.triangular_solve(lower, eye, lower=True)
        w_inverse = tf.cast(upper_inv @ lower_inv @ tf.transpose(p), tf.float32)
        log_det = -tf.reduce_sum(read(self.log_s)) * _pixels(z)
        return pointwise(z, w_inverse), batch_constant(log_det, z)


def make_permutation(flow_permutation, n_channels, seed=0, name=None):
    """The permutation layer for the original's ``flow_permutation`` code (3 = LU 1x1 conv)."""
    if flow_permutation == 0:
        return Reverse(n_channels, name=name or "reverse")
    if flow_permutation == 1:
        return Shuffle(n_channels, seed=seed, name=name or "shuffle")
    if flow_permutation == 2:
        return InvertibleConv1x1(n_channels, seed=seed, name=name or "invconv")
    if flow_permutation == 3:
        return InvertibleConv1x1LU(n_channels, seed=seed, name=name or "invconv")
    raise ValueError(f"flow_permutation: expected 0, 1, 2 or 3, got {flow_permutation!r}")

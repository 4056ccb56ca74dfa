"""The flattened latent: every level's eps flattened and joined, level 0 first.

This is the original's ``flatten_eps`` / ``unflatten_eps`` (its demo), the event of
``GlowBijector``'s base distribution, the ``z`` of inference mode's latents.npz and the space of
``sampling.manipulate``'s attribute directions. ``eps_shapes`` is ``GlowConfig.eps_shapes()``.

``draw`` is how every sampler (``Glow.sample_eps``, the SavedModel's ``sample``) draws latents,
from ``normal``'s stateless draws or the caller's random source:

    eps_i = temperature * e_i,   e_i ~ N(0, I) of shape [n, h_i, w_i, c_i],   i = 0 .. L-1
"""
import numpy as np
import tensorflow as tf


def flatten(eps):
    """List of latents [N, h_i, w_i, c_i] -> [N, D], D = sum_i h_i * w_i * c_i."""
    return tf.concat([tf.reshape(e, [tf.shape(e)[0], -1]) for e in eps], axis=1)  # [N, D]


def unflatten(flat, eps_shapes):
    """[N, D] -> list of latents [N, h_i, w_i, c_i] (the inverse of ``flatten``)."""
    sizes = [int(np.prod(shape)) for shape in eps_shapes]
    pieces = tf.split(flat, sizes, axis=1)  # [N, h_i * w_i * c_i] each
    return [tf.reshape(piece, [-1, *shape]) for piece, shape in zip(pieces, eps_shapes)]  # [N, h_i, w_i, c_i]


def size(eps_shapes) -> int:
    """D: the length of the flattened latent."""
    return sum(int(np.prod(shape)) for shape in eps_shapes)


def draw(eps_shapes, n, temperature, normal):
    """Every level's latent for n images at ``temperature`` (a scalar or [n]), level 0 first.

    ``normal(shape, level)``: a standard normal draw of ``shape`` (the caller's random source).
    """
    temperature = tf.reshape(tf.cast(temperature, tf.float32), [-1, 1, 1, 1])  # [n or 1, 1, 1, 1]
    return [normal(tf.concat([[n], shape], axis=0), level) * temperature for level, shape in enumerate(eps_shapes)]


def normal(seed=None):
    """``draw``'s random source: stateful draws (``seed`` None) or stateless ones from the seed pair
    ``seed`` [a, b], level l drawing with l folded in (the same numbers on every call)."""
    if seed is None:
        return lambda shape, level: tf.random.normal(shape)
    seed = tf.cast(seed, tf.int64)
    if seed.shape != [2]:
        raise ValueError(f"seed: expected None or a stateless seed pair [a, b], got shape {seed.shape}")
    return lambda shape, level: tf.random.stateless_normal(
        shape, seed=tf.random.experimental.stateless_fold_in(seed, level))

"""The flattened latent: every level's eps flattened and joined, level 0 first.

This is the original's ``flatten_eps`` / ``unflatten_eps`` (its demo), the event of
``GlowBijector``'s base distribution, the ``z`` of inference mode's latents.npz and the space of
``sampling.manipulate``'s attribute directions. ``eps_shapes`` is ``GlowConfig.eps_shapes()``.

``draw`` is how every sampler (``Glow.sample_eps``, the SavedModel's ``sample``) draws latents:

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

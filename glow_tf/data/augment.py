"""Data augmentation of the original's Keras 2.2 ImageDataGenerator, on batches, stateless.

Level 1 (the original's mnist, and cifar10 with ``--dal 1``): ImageDataGenerator(
width_shift_range=0.1, height_shift_range=0.1): each image shifted by a continuous offset
drawn uniformly from (-0.1 * size, 0.1 * size) pixels on each axis.
Level 2 (the original's cifar10 ``--dal 2``): also horizontal_flip=True, rotation_range=15
(degrees), zoom_range=0.1 (independent row/col zoom in [0.9, 1.1]), shear_range=0.02 (degrees).

As Keras 2.2 (keras_preprocessing 1.0): one affine map per image, rotation @ shift @ shear @
zoom about the image centre, in (row, col) coordinates, sampled bilinearly (scipy order=1)
with edges extended (fill_mode='nearest'), flipped after the transform. The caller floors the
float result to uint8 as the original. Randomness is stateless: one ``seed`` gives one batch
on any machine, so pipelines are deterministic and resumable.
"""
import math

import tensorflow as tf

SHIFT_RANGE = 0.1
ROTATION_DEGREES = 15.
ZOOM_RANGE = 0.1
SHEAR_DEGREES = 0.02


def random_affine(images, level: int, seed):
    """Augments a float batch [B, H, W, C] at ``level`` (1 or 2) with stateless ``seed`` [2]."""
    batch = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    seeds = tf.random.experimental.stateless_split(seed, num=7)

    def uniform(i, half_range, centre=0.):
        return tf.random.stateless_uniform([batch], seeds[i], centre - half_range,
                                           centre + half_range)

    shifts = dict(shift_rows=uniform(0, SHIFT_RANGE) * height,
                  shift_cols=uniform(1, SHIFT_RANGE) * width)
    if level == 1:
        return affine_transform(images, **shifts)
    images = affine_transform(images, theta=uniform(2, ROTATION_DEGREES),
                              shear=uniform(3, SHEAR_DEGREES), zoom_rows=uniform(4, ZOOM_RANGE, 1.),
                              zoom_cols=uniform(5, ZOOM_RANGE, 1.), **shifts)
    flip = tf.random.stateless_uniform([batch], seeds[6]) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)


def affine_transform(images, theta=0., shift_rows=0., shift_cols=0., shear=0., zoom_rows=1.,
                     zoom_cols=1.):
    """Keras 2.2's apply_affine_transform on a batch [B, H, W, C] (float).

    Parameters are scalars or [B]: angles in degrees, shifts in pixels. Output pixel (r, c)
    samples the input at M @ (r, c, 1), M = offset @ rotation @ shift @ shear @ zoom @ reset,
    where offset/reset move the origin to the centre (h/2 + .5, w/2 + .5) as Keras does.
    """
    batch = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]

    def per_image(value):
        return tf.broadcast_to(tf.cast(value, tf.float32), [batch])

    theta, shear = per_image(theta) * (math.pi / 180.), per_image(shear) * (math.pi / 180.)
    zeros, ones = tf.zeros([batch]), tf.ones([batch])
    rotation = _matrices([[tf.cos(theta), -tf.sin(theta), zeros],
                          [tf.sin(theta), tf.cos(theta), zeros]])
    shift = _matrices([[ones, zeros, per_image(shift_rows)], [zeros, ones, per_image(shift_cols)]])
    shearing = _matrices([[ones, -tf.sin(shear), zeros], [zeros, tf.cos(shear), zeros]])
    zoom = _matrices([[per_image(zoom_rows), zeros, zeros], [zeros, per_image(zoom_cols), zeros]])
    centre_row, centre_col = height / 2 + 0.5, width / 2 + 0.5
    offset = tf.constant([[1., 0., centre_row], [0., 1., centre_col], [0., 0., 1.]])
    reset = tf.constant([[1., 0., -centre_row], [0., 1., -centre_col], [0., 0., 1.]])
    m = offset @ rotation @ shift @ shearing @ zoom @ reset  # [B, 3, 3], (row, col) coordinates
    # ImageProjectiveTransform works in (x=col, y=row): x_in = a0 x + a1 y + a2, y_in = b0 x + ...
    transforms = tf.stack([m[:, 1, 1], m[:, 1, 0], m[:, 1, 2],
                           m[:, 0, 1], m[:, 0, 0], m[:, 0, 2], zeros, zeros], axis=1)  # [B, 8]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=0., interpolation="BILINEAR", fill_mode="NEAREST")


def _matrices(rows):
    """Two rows of three [B] tensors -> [B, 3, 3] affine matrices (last row 0, 0, 1)."""
    batch = tf.shape(rows[0][0])[0]
    last = [tf.zeros([batch]), tf.zeros([batch]), tf.ones([batch])]
    return tf.stack([tf.stack(row, axis=-1) for row in rows + [last]], axis=1)  # [B, 3, 3]

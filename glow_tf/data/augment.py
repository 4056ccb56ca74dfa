"""Data augmentation of the original's Keras ImageDataGenerator, on whole batches, stateless.

Level 1 (the original's mnist, and cifar10 with ``--dal 1``): ImageDataGenerator(
width_shift_range=0.1, height_shift_range=0.1): each image shifted by a continuous offset
drawn uniformly from (-0.1 * size, 0.1 * size) pixels on each axis.
Level 2 (the original's cifar10 ``--dal 2``): also horizontal_flip=True, rotation_range=15
(degrees), zoom_range=0.1 (independent x/y zoom in [0.9, 1.1]), shear_range=0.02 (degrees, as
keras_preprocessing reads it).

As Keras: one affine map per image, composed rotation @ shift @ shear @ zoom about the image
centre, sampled bilinearly (scipy ``order=1``) with edges extended (``fill_mode='nearest'``),
flipped after the transform; the caller floors the float result to uint8 as the original.
Randomness is stateless: the same ``seed`` gives the same batch, on any machine, so pipelines
are deterministic and resumable.
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
    seeds = tf.random.experimental.stateless_split(seed, num=6)

    def uniform(i, low, high):
        return tf.random.stateless_uniform([batch], seeds[i], low, high)

    zeros, ones = tf.zeros([batch]), tf.ones([batch])
    shift_rows = uniform(0, -SHIFT_RANGE, SHIFT_RANGE) * height
    shift_cols = uniform(1, -SHIFT_RANGE, SHIFT_RANGE) * width
    if level == 1:
        # In (row, col) coordinates: input = output + shift.
        matrices = _matrices([[ones, zeros, shift_rows], [zeros, ones, shift_cols]])
    else:
        deg = math.pi / 180.
        theta = uniform(2, -ROTATION_DEGREES, ROTATION_DEGREES) * deg
        shear = uniform(3, -SHEAR_DEGREES, SHEAR_DEGREES) * deg
        zoom = tf.random.stateless_uniform([batch, 2], seeds[4], 1. - ZOOM_RANGE, 1. + ZOOM_RANGE)
        rotation = _matrices([[tf.cos(theta), -tf.sin(theta), zeros],
                              [tf.sin(theta), tf.cos(theta), zeros]])
        shift = _matrices([[ones, zeros, shift_rows], [zeros, ones, shift_cols]])
        shearing = _matrices([[ones, -tf.sin(shear), zeros], [zeros, tf.cos(shear), zeros]])
        zooming = _matrices([[zoom[:, 0], zeros, zeros], [zeros, zoom[:, 1], zeros]])
        matrices = _about_centre(rotation @ shift @ shearing @ zooming, height, width)
    images = _transform(images, matrices)
    if level == 2:
        flip = tf.random.stateless_uniform([batch], seeds[5]) < 0.5
        images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
    return images


def _matrices(rows):
    """Two rows of three [B] tensors -> [B, 3, 3] affine matrices (last row 0, 0, 1)."""
    batch = tf.shape(rows[0][0])[0]
    last = [tf.zeros([batch]), tf.zeros([batch]), tf.ones([batch])]
    return tf.stack([tf.stack(row, axis=-1) for row in rows + [last]], axis=1)  # [B, 3, 3]


def _about_centre(matrices, height, width):
    """Keras' transform_matrix_offset_center: apply ``matrices`` about (h/2 + .5, w/2 + .5)."""
    centre_row, centre_col = height / 2 + 0.5, width / 2 + 0.5
    offset = tf.constant([[1., 0., centre_row], [0., 1., centre_col], [0., 0., 1.]])
    reset = tf.constant([[1., 0., -centre_row], [0., 1., -centre_col], [0., 0., 1.]])
    return offset @ matrices @ reset


def _transform(images, matrices):
    """Samples images[input] at input = M @ output (row, col), bilinear, edges extended."""
    # ImageProjectiveTransform works in (x=col, y=row): x_in = a0 x + a1 y + a2, y_in = b0 x + ...
    m = matrices
    transforms = tf.stack([m[:, 1, 1], m[:, 1, 0], m[:, 1, 2],
                           m[:, 0, 1], m[:, 0, 0], m[:, 0, 2],
                           tf.zeros_like(m[:, 0, 0]), tf.zeros_like(m[:, 0, 0])], axis=1)  # [B, 8]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=0., interpolation="BILINEAR", fill_mode="NEAREST")

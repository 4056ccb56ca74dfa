"""Image arithmetic shared by the sources and the pipeline, with the original's rounding rules.

Rules:
  * Channels: grayscale (1 channel) is replicated to RGB, as the original does for MNIST; a
    4th (alpha) channel is dropped; any other channel count is an error.
  * Area-downsampling by an integer factor (the original's mnist/cifar10 ``image_size`` < 32)
    averages each block and floors, as the original's ``downsample`` + ``x_to_uint8``.
  * Resampling to another size (tfds sources, image folders) is bilinear with antialiasing
    and rounds to the nearest integer.
"""
import numpy as np
import tensorflow as tf

from glow_tf.data.errors import checked


def pad_and_tile_mnist(digits: np.ndarray) -> np.ndarray:
    """[N, 28, 28] uint8 -> [N, 32, 32, 3]: the original's 'minimum' padding and RGB tiling."""
    padded = np.pad(digits, ((0, 0), (2, 2), (2, 2)), "minimum")  # [N, 32, 32]
    return np.repeat(padded[..., np.newaxis], 3, axis=-1)  # [N, 32, 32, 3]


def to_uint8(x):
    """The original's x_to_uint8: floor, clip to [0, 255], cast."""
    return tf.cast(tf.clip_by_value(tf.floor(x), 0., 255.), tf.uint8)


def area_downsample(x, size: int):
    """[B, S, S, C] float -> [B, size, size, C]: mean over (S/size)**2 blocks (S % size == 0)."""
    s, c = x.shape[1], x.shape[3]
    factor = s // size
    if factor == 1:
        return x
    blocks = tf.reshape(x, [-1, size, factor, size, factor, c])  # [B, size, f, size, f, C]
    return tf.reduce_mean(blocks, axis=[2, 4])


def to_rgb(image, where="image"):
    """[H, W, C] -> [H, W, 3] by the channel rule; C may be unknown until run time.

    ``where`` (a string or string tensor, e.g. the file name) prefixes the error message (a
    DataError through ``errors.reading``).
    """
    channels = tf.shape(image)[-1]
    rgb = tf.where(tf.equal(channels, 1), tf.zeros([3], tf.int32), tf.range(3))
    rgb = checked(rgb, tf.reduce_any(tf.equal(channels, [1, 3, 4])), where,
                  ["expected 1 (grayscale), 3 (RGB) or 4 (RGBA) channels, got", channels])
    return tf.gather(image, rgb, axis=-1)  # [H, W, 3]


def resize(image, height, width):
    """[H, W, 3] uint8 -> [height, width, 3] uint8, bilinear with antialiasing, rounded."""
    resized = tf.image.resize(image, [height, width], method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0., 255.), tf.uint8)


def centre_crop(image):
    """[H, W, C] -> [m, m, C], m = min(H, W): the central square, as the original's tools."""
    shape = tf.shape(image)
    side = tf.minimum(shape[0], shape[1])
    top, left = (shape[0] - side) // 2, (shape[1] - side) // 2
    return image[top:top + side, left:left + side]


def centre_crop_and_resize(image, size: int):
    """[H, W, 3] -> [size, size, 3]: central square, then resized (CelebA, LSUN, ImageNet)."""
    return resize(centre_crop(image), size, size)


def resize_shortest_side(image, side: int):
    """[H, W, 3] -> shortest side = ``side``, aspect kept (the original's lsun_realnvp: 96)."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = side / tf.reduce_min(shape)
    new_shape = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), side)
    return resize(image, new_shape[0], new_shape[1])

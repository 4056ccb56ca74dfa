"""scikit-learn's bundled 8x8 handwritten digits: the offline default, no download needed.

1,797 images with values 0..16, scaled to 0..255 (round(v * 255 / 16)), upscaled by pixel
replication (nearest neighbour) to ``image_size`` (a multiple of 8; default 16), tiled to 3
channels. Fixed split: the first 1,500 images train, the last 297 are held out.
"""
import numpy as np

from glow_tf.data.errors import DataError
from glow_tf.data.source import ArraySplit, Source, check_labels

TRAIN_EXAMPLES = 1500
NATIVE_SIZE = 8
MAX_VALUE = 16


def load_digits(image_size: int) -> Source:
    if image_size % NATIVE_SIZE:
        raise DataError(f"digits: image_size must be a multiple of {NATIVE_SIZE} (8x8 images "
                        f"upscaled by pixel replication), got {image_size}")
    from sklearn.datasets import load_digits as load_sklearn_digits  # slow import: only here
    bunch = load_sklearn_digits()
    scaled = np.round(bunch.images * (255. / MAX_VALUE)).astype(np.uint8)  # [N, 8, 8]
    factor = image_size // NATIVE_SIZE
    upscaled = np.repeat(np.repeat(scaled, factor, axis=1), factor, axis=2)  # [N, S, S]
    rgb = np.repeat(upscaled[..., np.newaxis], 3, axis=-1)  # [N, S, S, 3]
    labels = check_labels(bunch.target, 10, "sklearn digits")
    n = TRAIN_EXAMPLES
    return Source(train=ArraySplit(rgb[:n], labels[:n]), test=ArraySplit(rgb[n:], labels[n:]),
                  n_y=10, image_size=image_size,
                  description=(f"scikit-learn digits 8x8 upscaled x{factor} to {image_size}x"
                               f"{image_size}: first {n:,} train / last {len(labels) - n} held out"))

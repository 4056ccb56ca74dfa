"""Writes generated images as tfrecords in the original's CelebA-HQ layout (no real data needed).

The layout and features of the original's generate_tfr/generate.py (TFRecordExporter), as
glow_tf.data.tfrecords reads them::

    DIR/train/train-r08-s-0000-of-0004.tfrecords ...       (r08: log2 of the image size)
    DIR/validation/validation-r08-s-0000-of-0001.tfrecords

Each record: ``shape`` int64 [H, W, C], ``data`` the uint8 HWC pixels, ``label`` int64 [1]
and ``attr`` int64 [40]. The images are smooth random colour fields (not noise), so a model
trained on them has something to learn.

    python benchmarks/celeba_tfrecords.py DIR [--image_size 256] [--n_train 32] [--n_validation 8]
"""
import argparse
import math
import os

import numpy as np
import tensorflow as tf


def _int64s(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def write_split(root, split, images, labels, shards, attr=True):
    """Writes ``images`` [N, H, W, C] uint8 with ``labels`` [N] as ``shards`` files; returns the folder."""
    folder = os.path.join(root, split)
    os.makedirs(folder, exist_ok=True)
    log2_size = int(math.log2(images.shape[1]))
    for shard in range(shards):
        path = os.path.join(folder, f"{split}-r{log2_size:02d}-s-{shard:04d}-of-{shards:04d}.tfrecords")
        with tf.io.TFRecordWriter(path) as writer:
            for image, label in list(zip(images, labels))[shard::shards]:
                feature = {"shape": _int64s(image.shape),
                           "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
                           "label": _int64s([label])}
                if attr:
                    feature["attr"] = _int64s(np.arange(40) % 2)
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return folder


def smooth_images(n, image_size, seed=0):
    """[n, S, S, 3] uint8: random 4x4 colour fields upsampled bilinearly to S x S."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, [n, 4, 4, 3]).astype(np.float32)
    fine = tf.image.resize(coarse, [image_size, image_size], method="bilinear")
    return np.clip(np.round(fine.numpy()), 0, 255).astype(np.uint8)


def write_celeba(root, image_size=256, n_train=32, n_validation=8, seed=0):
    """The train and validation splits (4 and 1 shards) of generated images under ``root``."""
    images = smooth_images(n_train + n_validation, image_size, seed)
    labels = np.zeros(len(images), np.int64)  # the original's celeba labels are all 0
    write_split(root, "train", images[:n_train], labels[:n_train], shards=4)
    write_split(root, "validation", images[n_train:], labels[n_train:], shards=1)
    return root


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir")
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--n_train", type=int, default=32)
    parser.add_argument("--n_validation", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_celeba(args.dir, args.image_size, args.n_train, args.n_validation, args.seed)
    print(f"wrote {args.n_train} train and {args.n_validation} validation {args.image_size}x{args.image_size} "
          f"images in the original's celeba tfrecords layout under {args.dir}")


if __name__ == "__main__":
    main()

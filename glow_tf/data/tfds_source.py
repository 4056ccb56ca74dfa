"""Problems read from TensorFlow Datasets, only when already prepared: never downloads.

| problem       | tfds name                          | train / held out     | label       |
|---------------|------------------------------------|----------------------|-------------|
| mnist         | mnist                              | train / test         | digit       |
| cifar10       | cifar10                            | train / test         | class       |
| imagenet-oord | downsampled_imagenet/{32x32,64x64} | train / validation   | 0 (as orig.)|
| imagenet      | imagenet2012                       | train / validation   | class       |
| celeba        | celeb_a                            | train / validation   | 0 (as orig.)|
| lsun, lsun_realnvp | lsun/{category}               | train / validation   | 0 (as orig.)|

mnist and cifar10 are loaded into memory as the original's Keras loaders (mnist padded and
tiled as the original). The others stream: centre square crop, resized to image_size
(celeb_a is 218x178 CelebA, not the original's CelebA-HQ); lsun_realnvp is resized to a
shortest side of 1.5 * image_size (96 for 64, as the original's preprocessing) and randomly
cropped to image_size, with fixed seeds for the held-out split.
"""
import numpy as np
import tensorflow as tf

from glow_tf.data import images as image_ops
from glow_tf.data.errors import DataError
from glow_tf.data.source import ArraySplit, Source, StreamSplit, check_labels

IN_MEMORY = ("mnist", "cifar10")
_HELD_OUT = {"mnist": "test", "cifar10": "test"}  # else "validation"
_LABELLED = ("mnist", "cifar10", "imagenet")
_READ_CHUNK = 10000  # examples per read when loading a split into memory


def tfds_name(problem: str, image_size: int, category: str) -> str:
    if problem == "imagenet-oord":
        if image_size not in (32, 64):
            raise DataError(f"imagenet-oord: tfds has downsampled_imagenet at 32x32 and 64x64 only, "
                            f"got image_size {image_size}")
        return f"downsampled_imagenet/{image_size}x{image_size}"
    if problem in ("lsun", "lsun_realnvp"):
        if not category:
            raise DataError(f"{problem}: --category is required (an LSUN category, e.g. bedroom, "
                            f"church_outdoor, tower)")
        return f"lsun/{category}"
    return {"mnist": "mnist", "cifar10": "cifar10", "imagenet": "imagenet2012",
            "celeba": "celeb_a"}[problem]


def load_tfds(problem: str, data_dir: str, image_size: int, category: str, n_y: int, fmap: int,
              not_found_hint: str) -> Source:
    """The problem's tfds source; DataError saying how to provide the data when absent.

    ``not_found_hint`` is appended to that error: the other ways to give this problem's data.
    """
    name = tfds_name(problem, image_size, category)
    splits = ("train", _HELD_OUT.get(problem, "validation"))
    where = data_dir or "tfds' default data dir ($TFDS_DATA_DIR or ~/tensorflow_datasets)"
    description = f"tfds '{name}' in {where} ({' / '.join(splits)})"
    if problem in IN_MEMORY:
        train, test = (_array_split(problem, name, split, data_dir, n_y, not_found_hint)
                       for split in splits)
        return Source(train=train, test=test, n_y=n_y, image_size=32, description=description)
    train, test = (_stream_split(problem, name, split, data_dir, image_size, fmap, not_found_hint)
                   for split in splits)
    return Source(train=train, test=test, n_y=n_y, image_size=image_size, description=description)


def _load(name, split, data_dir, not_found_hint, **kwargs):
    """tfds.load(download=False), with an absent data set turned into an actionable DataError."""
    import tensorflow_datasets as tfds  # slow import: only for tfds problems
    try:
        return tfds.load(name, split=split, data_dir=data_dir or None, download=False,
                         with_info=True, **kwargs)
    except (AssertionError, ValueError, FileNotFoundError) as e:
        # tfds raises AssertionError for "not prepared"; its advice (download=True) is not ours.
        reason = "not prepared there" if isinstance(e, AssertionError) else str(e).split("\n")[0]
        raise DataError(
            f"tfds data set '{name}' (split {split}) is not available in "
            f"{data_dir or '$TFDS_DATA_DIR or ~/tensorflow_datasets'}: {reason}. glow_tf never "
            f"downloads: on a machine with internet run `tfds build {name}` (some, like "
            f"imagenet2012, first need a manual download: see the tfds catalog), copy the tfds "
            f"data dir here and pass --data_dir DIR or set TFDS_DATA_DIR=DIR; "
            f"{not_found_hint}") from None


def _array_split(problem, name, split, data_dir, n_y, not_found_hint):
    import tensorflow_datasets as tfds
    dataset, _ = _load(name, split, data_dir, not_found_hint, as_supervised=True)
    chunks = list(tfds.as_numpy(dataset.batch(_READ_CHUNK)))
    images = np.concatenate([chunk[0] for chunk in chunks])  # [N, H, W, C]
    labels = np.concatenate([chunk[1] for chunk in chunks])  # [N]
    if problem == "mnist":
        images = image_ops.pad_and_tile_mnist(images[..., 0])  # [N, 32, 32, 3]
    return ArraySplit(np.ascontiguousarray(images, np.uint8),
                      check_labels(labels, n_y, f"tfds {name} {split}"))


def _stream_split(problem, name, split, data_dir, image_size, fmap, not_found_hint):
    import tensorflow_datasets as tfds
    _, info = _load(name, split, data_dir, not_found_hint)  # fails early if absent
    known = info.splits[split].num_examples if split in info.splits else None

    def read(shuffle_files: bool, seed: int):
        dataset, _ = _load(name, split, data_dir, not_found_hint, shuffle_files=shuffle_files,
                           read_config=tfds.ReadConfig(shuffle_seed=seed,
                                                       interleave_cycle_length=fmap))
        return dataset

    def parse(example, seed):
        image = image_ops.to_rgb(example["image"], name)
        if problem == "lsun_realnvp":
            image = image_ops.resize_shortest_side(image, image_size * 3 // 2)
            image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], seed)
        else:
            image = image_ops.centre_crop_and_resize(image, image_size)
        label = tf.cast(example["label"], tf.int32) if problem in _LABELLED else tf.constant(0)
        return image, label

    if known is None:
        cardinality = int(read(False, 0).cardinality())
        known = cardinality if cardinality >= 0 else None
    return StreamSplit(read=read, parse=parse, num_examples=known)

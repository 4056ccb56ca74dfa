"""An image folder: PNG/JPEG files, optionally in class sub-folders, loaded into memory.

Rules:
  * Labels: if ``data_dir`` has sub-folders holding images, each such sub-folder is a class
    (sorted names -> labels 0..k-1, images found recursively) and images lying directly in
    ``data_dir`` are ignored with a warning; otherwise every image is class 0 (n_y = 1).
    Hidden files and folders (name starting with '.') are ignored.
  * Files: names ending in .png, .jpg or .jpeg (any case); other files are ignored.
  * Pixels: converted with PIL's convert('RGB'): grayscale replicated to 3 channels, alpha
    dropped, palettes expanded.
  * Size: any size is accepted: the central square is cropped and resized to ``image_size``
    by ``images.centre_crop_and_resize`` (bilinear, antialiased, rounded), the rule of every
    source that resizes and of ``sampling.read_image``.
  * Bad files: an image file that cannot be decoded to the end (corrupt, truncated, not an
    image) is skipped; the count and the first names go to a warning. No readable image at
    all, or fewer than 2, is a DataError.
  * Split: a fixed permutation (seed 0, independent of ``--seed``) of the readable images,
    sorted by path; its first ``n_test`` images are held out (n_test = -1: 10%, at least 1).
"""
import concurrent.futures
import os

import numpy as np
from absl import logging
from PIL import Image

from glow_tf.data.errors import DataError
from glow_tf.data.images import centre_crop_and_resize
from glow_tf.data.source import ArraySplit, Source

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
HELD_OUT_FRACTION = 0.1
SPLIT_SEED = 0
_MAX_NAMED_IN_WARNING = 5


def load_folder(data_dir: str, image_size: int, n_test: int, workers: int = 8) -> Source:
    if not data_dir:
        raise DataError("folder: --data_dir is required (a folder of PNG/JPEG images)")
    if not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: folder does not exist")
    paths, labels, class_names = _list_images(data_dir)
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        decoded = list(pool.map(lambda p: _read_image(p, image_size), paths))
    bad = [p for p, image in zip(paths, decoded) if image is None]
    if bad:
        logging.warning("folder %s: skipped %d of %d image files that could not be decoded: %s%s",
                        data_dir, len(bad), len(paths), ", ".join(bad[:_MAX_NAMED_IN_WARNING]),
                        ", ..." if len(bad) > _MAX_NAMED_IN_WARNING else "")
    keep = [i for i, image in enumerate(decoded) if image is not None]
    if len(keep) < 2:
        raise DataError(f"{data_dir}: {len(keep)} readable images of {len(paths)} image files "
                        f"(need at least 2: one to train on, one held out)")
    images = np.stack([decoded[i] for i in keep])  # [N, S, S, 3]
    labels = np.asarray([labels[i] for i in keep], np.int32)  # [N]
    n_held_out = max(1, round(HELD_OUT_FRACTION * len(keep))) if n_test == -1 else n_test
    if n_held_out >= len(keep):
        raise DataError(f"{data_dir}: n_test={n_test} leaves no training image of {len(keep)}")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(keep))
    test, train = order[:n_held_out], order[n_held_out:]
    classes = f"{len(class_names)} classes" if class_names else "no class sub-folders (n_y=1)"
    description = (f"image folder {data_dir}, {classes}: {len(train):,} train / {len(test):,} "
                   f"held out (fixed 10% split), {len(bad)} unreadable skipped")
    logging.info("folder: %s", description)
    return Source(train=ArraySplit(images[train], labels[train]),
                  test=ArraySplit(images[test], labels[test]),
                  n_y=max(1, len(class_names)), image_size=image_size, description=description)


def _list_images(data_dir):
    """(sorted image paths, their labels, class names) by the module's label rule."""
    class_names, paths, labels = [], [], []
    for name in sorted(os.listdir(data_dir)):
        folder = os.path.join(data_dir, name)
        if name.startswith(".") or not os.path.isdir(folder):
            continue
        found = _images_under(folder)
        if found:
            paths += found
            labels += [len(class_names)] * len(found)
            class_names.append(name)
    loose = _images_in(data_dir)
    if class_names and loose:
        logging.warning("folder %s: %d images directly in the folder ignored (class sub-folders "
                        "%s hold the data)", data_dir, len(loose), class_names)
    if not class_names:
        paths, labels = loose, [0] * len(loose)
    if not paths:
        raise DataError(f"{data_dir}: no images (files ending in {', '.join(IMAGE_EXTENSIONS)}) "
                        f"in the folder or its sub-folders")
    return paths, labels, class_names


def _images_in(folder):
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
                  and os.path.isfile(os.path.join(folder, f)))


def _images_under(folder):
    found = []
    for root, dirs, _ in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += _images_in(root)
    return found


def _read_image(path: str, size: int):
    """uint8 [size, size, 3] by the module's pixel and size rules, or None if unreadable."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")  # decodes the whole file: raises if truncated
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return None
    return centre_crop_and_resize(np.asarray(image), size).numpy()  # [S, S, 3]

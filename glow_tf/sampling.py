"""Using a trained Glow: sample grids, interpolation, attribute manipulation, reconstruction.

Everything works through the SavedModel's signatures (``glow_tf.export``), so a model
behaves the same whether it was exported (``load_model`` of a SavedModel needs only
TensorFlow) or is restored from a glow_tf checkpoint (its signatures are built in memory).

* Samples: each level's eps ~ N(0, t^2) for temperature t; a temperature sweep puts one
  temperature per row (the original's [0, .25, .5, .6, .7, .8, .9, 1]) and reseeds before
  every row, so a column is one latent draw seen at every temperature. Class-conditional
  models label image i with class i % n_y, as the original's ``draw_samples``, unless a
  class is given.
* Interpolation: eps_t = (1 - t) * eps_a + t * eps_b at every level, t = 0 .. 1 in equal steps
  (t = 0 and t = 1 decode to the inputs, up to the dequantisation of the encoding).
* Manipulation (the original's demo, ``get_manipulators.py``): the direction of an attribute
  is mean(eps of images with it) - mean(eps of images without it), eps flattened and joined
  over levels; image i of the row decodes eps + alpha_i * direction. Labelled data sets label
  classes, so an attribute is a class k: images of class k against all others. The original
  demo stored 1.6 * direction, so its alpha 1 is alpha 1.6 here.
* Input images: read with PIL and converted to the model's channels (grayscale replicated
  to RGB, alpha dropped). An image of another size is centre-cropped to a square and resized
  (bilinear, antialiased: the input pipeline's rule for image folders) with a warning. Images
  of more than 8 bits per channel (16-bit, 32-bit integer and float: PIL modes I;16, I, F) are
  refused: converting them to 8 bits clips every value above 255, mostly to white.
* Rasters (``to_raster``, the sample grids training writes) are the original's
  ``graphics.save_raster``: tiles edge to edge in row-major order, grayscale tiled to RGB; unlike
  the original a last partial row is kept (the empty cells are black) instead of dropped.
* Figures (``figure``, what glow-sample writes) are for people: at 16x16 pixels, tiles edge to
  edge read as stripes, so each tile is upscaled (nearest neighbour, to at least FIGURE_MIN_TILE
  pixels), FIGURE_GAP pixels apart on white, with rows and columns labelled (temperature, class).
  Files are written to a temp file, then renamed.
* Progress: with ``ServedGlow.progress`` set (glow-sample sets it), a call that runs several
  batches and the class means of a data set show a progress bar (``glow_tf.progress``).
"""
import hashlib
import json
import os

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from glow_tf import files, latents, progress
from glow_tf.data.errors import DataError
from glow_tf.errors import ModelError
from glow_tf.files import write_atomic
from glow_tf.model import check_labels

# The original's sampling temperatures (train.py draw_samples): one grid per temperature in
# training, one row each in a sweep.
SWEEP_TEMPERATURES = (0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# Figures: tile size reached by upscaling, pixels between tiles and around the figure, label font.
FIGURE_MIN_TILE, FIGURE_GAP, FIGURE_PAD, FIGURE_FONT_SIZE = 64, 4, 8, 14
# PIL modes of at most 8 bits per channel: those that convert to RGB or L without loss of range.
EIGHT_BIT_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")


class ServedGlow:
    """A Glow behind its SavedModel signatures, with numpy in and out, batched.

    Args:
      signatures: {name: callable(**inputs) -> dict of tensors} for the signatures of
        ``glow_tf.export`` (encode, decode, sample).
      module: the exported module or the loaded SavedModel (``reseed``, ``config_json``,
        ``model_variables``).
      batch_size: examples per signature call.

    ``progress``: show progress bars (see the module docstring); off by default, for library use.
    """

    def __init__(self, signatures, module, batch_size=64):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
        self._signatures = signatures
        self._module = module
        self.batch_size = batch_size
        self.progress = False
        description = json.loads(module.config_json.numpy())
        self.config = description["model"]  # GlowConfig.to_dict()
        self.eps_shapes = [tuple(shape) for shape in description["eps_shapes"]]
        self.image_shape = (self.config["image_size"], self.config["image_size"], self.config["n_channels"])
        # What the coupling networks compute in (SavedModels exported before it was recorded: float32).
        self.precision = description.get("precision", "float32")

    @property
    def ycond(self) -> bool:
        return self.config["ycond"]

    def fingerprint(self) -> str:
        """SHA-256 of every weight: identifies the model in caches."""
        digest = hashlib.sha256()
        for variable in self._module.model_variables:
            digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
        return digest.hexdigest()

    def reseed(self, seed: int):
        """Restarts the model's noise generator (dequantisation noise, sample's eps)."""
        self._module.reseed(tf.constant(seed, tf.int64))

    def labels(self, y, n):
        """int32 [n] labels for a class-conditional model (y: one int or n ints); None otherwise."""
        if not self.ycond:
            if y is not None:
                raise ValueError(f"y: this model is not class-conditional (ycond=False); expected no "
                                 f"class, got {y!r}")
            return None
        if y is None:
            raise ValueError(f"y: this model is class-conditional (n_y={self.config['n_y']}); expected a "
                             "class, got none")
        return check_labels(np.broadcast_to(np.asarray(y), [n]), self.config["n_y"], n).numpy()

    def progress_bar(self, iterable=None, **kwargs):
        """A progress bar (``progress.bar``) if ``progress`` is set."""
        return progress.bar(iterable, show=self.progress, **kwargs)

    def _batched(self, name, inputs, labels):
        """Calls signature ``name`` on slices of ``inputs`` (dict of [N, ...]); concatenated outputs."""
        n = len(next(iter(inputs.values())))
        outputs = []
        with self.progress_bar(total=n, desc=name, unit="image") as bar:
            for start in range(0, n, self.batch_size):
                batch = {key: value[start:start + self.batch_size] for key, value in inputs.items()}
                if labels is not None:
                    batch["y"] = labels[start:start + self.batch_size]
                outputs.append({key: value.numpy() for key, value in self._signatures[name](**batch).items()})
                bar.update(min(self.batch_size, n - start))
        return {key: np.concatenate([o[key] for o in outputs]) for key in outputs[0]}

    def encode(self, images, labels=None):
        """uint8 [N, H, W, C] -> list of n_levels float32 latents [N, h, w, c], level 0 first."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.shape[1:] != self.image_shape:
            raise ValueError(f"images: expected uint8 [N, {', '.join(map(str, self.image_shape))}], "
                             f"got {images.dtype} {list(images.shape)}")
        outputs = self._batched("encode", {"x": images}, labels)
        return [outputs[f"eps_{level}"] for level in range(len(self.eps_shapes))]

    def decode(self, eps, labels=None):
        """List of latents (level 0 first) -> uint8 images [N, H, W, C]."""
        inputs = {f"eps_{level}": np.asarray(e, np.float32) for level, e in enumerate(eps)}
        return self._batched("decode", inputs, labels)["image"]

    def sample(self, temperatures, labels=None):
        """uint8 images [N, H, W, C], image i with every level's eps ~ N(0, temperatures[i]^2)."""
        return self._batched("sample", {"temperature": np.asarray(temperatures, np.float32)}, labels)["image"]

    def flatten(self, eps):
        """List of latents -> [N, D] numpy (``latents.flatten``, the demo's ``flatten_eps``)."""
        return latents.flatten(eps).numpy()

    def unflatten(self, flat):
        """[N, D] -> list of numpy latents [N, h, w, c] (``latents.unflatten``)."""
        return [e.numpy() for e in latents.unflatten(flat, self.eps_shapes)]

    @classmethod
    def from_saved_model(cls, path, batch_size=64):
        """A SavedModel written by ``glow_tf.export`` (plain TensorFlow does the loading); ModelError
        naming ``path`` for one that cannot be loaded or that glow_tf did not write."""
        path = os.fspath(path)
        expected = "a SavedModel written by glow_tf (glow-export, or a training run's saved_model/)"
        try:
            loaded = tf.saved_model.load(path)
        except (OSError, ValueError, tf.errors.OpError) as e:  # TensorFlow's for a damaged saved_model.pb
            raise ModelError(f"model: expected {expected}, got {path!r}, which cannot be loaded "
                             f"({files.error_text(e)})") from None
        missing = [name for name in ("config_json", "reseed", "model_variables") if not hasattr(loaded, name)]
        missing += [f"signature {name!r}" for name in ("encode", "decode", "sample") if name not in loaded.signatures]
        if missing:
            raise ModelError(f"model: expected {expected}, got {path!r}, a SavedModel without {', '.join(missing)}")
        return cls(loaded.signatures, loaded, batch_size)

    @classmethod
    def from_model(cls, model, batch_size=64, precision="float32"):
        """A live ``glow_tf.Glow``, behind the signatures it would be exported with in ``precision``."""
        from glow_tf import export
        module = export.ServingModule(model, precision=precision)
        return cls({name: _by_keyword(fn) for name, fn in module.signatures().items()}, module, batch_size)


def _by_keyword(function):
    """An in-memory signature (positional tf.function) called like a loaded one, by input name."""
    names = [spec.name for spec in function.input_signature]
    return lambda **inputs: function(*[inputs[name] for name in names])


def is_saved_model(path) -> bool:
    return os.path.isfile(os.path.join(os.fspath(path), "saved_model.pb"))


def load_model(path, use_ema=True, batch_size=64, precision="") -> ServedGlow:
    """A SavedModel directory, or a glow_tf checkpoint (training logdir, checkpoints dir, prefix).

    use_ema: for checkpoints, use the Polyak (EMA) weights when the checkpoint holds them.
    precision: what the coupling networks compute in ('': float32 for checkpoints, the export's
      precision for a SavedModel, which computes in nothing else).
    """
    path = os.fspath(path)
    if is_saved_model(path):
        served = ServedGlow.from_saved_model(path, batch_size)
        if precision and precision != served.precision:
            raise ValueError(f"precision: this SavedModel computes in {served.precision} (its export's "
                             f"--precision); expected {served.precision} or a checkpoint, got {precision!r}")
        return served
    if not os.path.exists(path) and not os.path.exists(path + ".index"):
        raise ModelError(f"model: expected a SavedModel directory, a training logdir, a checkpoint "
                         f"directory or a checkpoint prefix, got missing path {path!r}")
    from glow_tf import checkpoints
    precision = precision or "float32"
    return ServedGlow.from_model(checkpoints.restore_model(path, use_ema=use_ema, precision=precision), batch_size,
                                 precision)


# ---------------------------------------------------------------------------- operations
def sample_grid(served: ServedGlow, n, temperatures, y=None, seed=0):
    """uint8 [len(temperatures), n, H, W, C]: row r holds n samples at temperatures[r].

    Every row starts from ``seed``, so column j is the same latent draw at every temperature.
    y: one class for every image; None: class i % n_y for image i (class-conditional models).
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an int >= 1, got {n!r}")
    labels = grid_classes(served, n, y)
    rows = []
    for temperature in temperatures:
        served.reseed(seed)
        rows.append(served.sample(np.full([n], temperature, np.float32), labels))
    return np.stack(rows)


def column_classes(n, n_y):
    """int32 [n]: the original's classes of a sample row, class i % n_y for image i."""
    return (np.arange(n) % n_y).astype(np.int32)


def grid_rows(image_size):
    """The rows (and columns) of the original's training sample grids: 10 up to 64 pixels, else 4."""
    return 10 if image_size <= 64 else 4


def grid_classes(served: ServedGlow, n, y=None):
    """int32 [n] classes of a sample row (y, or ``column_classes``); None if not ycond."""
    if y is None and served.ycond:
        y = column_classes(n, served.config["n_y"])
    return served.labels(y, n)


def interpolation_weights(steps):
    """t = 0 .. 1 in ``steps`` equal steps, both ends included: the weights of eps_b."""
    return np.linspace(0.0, 1.0, steps, dtype=np.float32)


def interpolate(served: ServedGlow, image_a, image_b, steps, y=None):
    """uint8 [steps, H, W, C]: decodes (1 - t) * eps_a + t * eps_b for t = 0 .. 1 per level."""
    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps: expected an int >= 2, got {steps!r}")
    ends = served.encode(np.stack([image_a, image_b]), served.labels(y, 2))  # per level [2, h, w, c]
    return interpolate_latents(served, ends, interpolation_weights(steps), y)


def interpolate_latents(served: ServedGlow, ends, weights, y=None):
    """uint8 [len(weights), H, W, C]: decodes (1 - t) * eps_a + t * eps_b per level for each weight t.

    ends: per level [2, h, w, c], eps_a then eps_b (``encode`` of the two images).
    """
    t = np.asarray(weights, np.float32).reshape(-1, 1, 1, 1)  # [T, 1, 1, 1]
    eps = [(1.0 - t) * e[0] + t * e[1] for e in ends]  # per level [T, h, w, c]
    return served.decode(eps, served.labels(y, len(t)))


def reconstruct(served: ServedGlow, images, y=None):
    """uint8 [N, H, W, C]: decode(encode(images)), the same class for encoding and decoding."""
    labels = served.labels(y, len(images))
    return served.decode(served.encode(images, labels), labels)


def manipulate(served: ServedGlow, image, direction, alphas, y=None):
    """uint8 [len(alphas), H, W, C]: decodes eps(image) + alpha * direction ([D]) per alpha."""
    z = served.flatten(served.encode(image[np.newaxis], served.labels(y, 1)))[0]  # [D]
    return manipulate_latent(served, z, direction, alphas, y)


def manipulate_latent(served: ServedGlow, z, direction, alphas, y=None):
    """uint8 [len(alphas), H, W, C]: decodes z + alpha * direction (flattened latents [D]) per alpha."""
    z, direction = np.asarray(z, np.float32), np.asarray(direction, np.float32)
    if direction.shape != z.shape:
        raise ValueError(f"direction: expected shape [{z.shape[0]}] (the flattened latent), got {list(direction.shape)}")
    alphas = np.asarray(alphas, np.float32).reshape(-1, 1)
    return served.decode(served.unflatten(z + alphas * direction), served.labels(y, len(alphas)))


def heldout_datasets(served: ServedGlow, problem, data_dir="", n_images=-1):
    """``glow_tf.data``'s Datasets of ``problem`` at the model's image size, held-out batches of
    ``served.batch_size``: ``test`` holds the first ``n_images`` held-out images (-1: the problem's
    test split), which attribute directions are averaged over; iterate it within ``reading()``."""
    from glow_tf import data
    return data.make_datasets(data.DataConfig(problem=problem, data_dir=data_dir, image_size=served.image_shape[0],
                                              n_test=n_images, global_batch_test=served.batch_size, init_batch=1))


def class_mean_latents(served: ServedGlow, batches, n_y):
    """(means [n_y, D], counts [n_y]) of the flattened eps of (x uint8, y) batches, by class."""
    sums, counts = None, np.zeros([n_y], np.int64)
    for x, y in served.progress_bar(batches, desc="class mean latents", unit="batch"):
        x, y = np.asarray(x), np.asarray(y)
        z = served.flatten(served.encode(x, served.labels(y, len(x)) if served.ycond else None))  # [B, D]
        if sums is None:
            sums = np.zeros([n_y, z.shape[1]], np.float64)
        np.add.at(sums, y, z)
        counts += np.bincount(y, minlength=n_y)
    if sums is None:
        raise ValueError("class_mean_latents: expected labelled images, got an empty data set")
    return (sums / np.maximum(counts, 1)[:, np.newaxis]).astype(np.float32), counts


def attribute_direction(means, counts, k):
    """mean latent of class k minus the mean latent of all other classes ([D])."""
    n_y = len(counts)
    if not 0 <= k < n_y:
        raise ValueError(f"attribute: expected a class in [0, {n_y}), got {k}")
    rest = np.arange(n_y) != k
    if counts[k] == 0 or counts[rest].sum() == 0:
        raise ValueError(f"attribute: class {k} needs images with and without it; the data set has "
                         f"{counts[k]} with and {counts[rest].sum()} without")
    mean_rest = (means[rest] * counts[rest, np.newaxis]).sum(0) / counts[rest].sum()
    return means[k] - mean_rest


def cached_class_means(served: ServedGlow, cache_path, key: dict, compute):
    """Class means from the .npz at ``cache_path`` if made for ``key`` and this model, else computed.

    ``compute()`` -> (means, counts) runs on a miss; the result is written atomically.
    """
    key = json.dumps(dict(key, model=served.fingerprint()), sort_keys=True)
    if os.path.exists(cache_path):
        with np.load(cache_path) as cached:
            if str(cached["key"]) == key:
                return cached["means"], cached["counts"]
        logging.info("%s was made for another model or data set; recomputing", cache_path)
    means, counts = compute()
    write_atomic(cache_path, lambda f: np.savez(f, key=key, means=means, counts=counts))
    return means, counts


def parse_attribute(name) -> int:
    """'3' or 'class 3' -> 3."""
    text = str(name).strip()
    if text.lower().startswith("class"):
        text = text[len("class"):].strip()
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"attribute: expected a class number such as '3' or 'class 3', got {name!r}") from None


# ---------------------------------------------------------------------------- image files
def read_image(path, image_shape):
    """uint8 [H, W, C] of an image file, by the rules in the module docstring (DataError if it is none)."""
    path = os.fspath(path)
    try:
        with Image.open(path) as image:
            return image_array(image, image_shape, f"image {path!r}")
    except FileNotFoundError:
        raise DataError(f"image {path!r}: no such file") from None
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"image {path!r}: expected an image file PIL can read, got: {e}") from None


def image_array(image: Image.Image, image_shape, name):
    """uint8 [H, W, C] of an opened PIL image, by the rules in the module docstring.

    ``name`` says which image in messages ("image 'a.png'"). PIL decodes lazily, so reading a
    damaged file fails in here with PIL's OSError, as ``Image.open`` does for one it cannot identify.
    """
    height, width, channels = image_shape
    if channels not in (1, 3):
        raise ValueError(f"read_image: expected a model with 1 or 3 channels, got {channels}")
    if image.mode not in EIGHT_BIT_MODES:
        raise DataError(f"{name}: expected 8 bits per channel (PIL modes {', '.join(EIGHT_BIT_MODES)}), "
                        f"got mode {image.mode}")
    array = np.asarray(image.convert("RGB" if channels == 3 else "L"))
    array = array.reshape(array.shape[:2] + (channels,))  # [h, w, C]
    if array.shape[:2] != (height, width):
        from glow_tf.data import images as image_ops  # the pipeline's crop and resize rule
        logging.warning("%s is %dx%d; centre-cropped to a square and resized to %dx%d",
                        name, array.shape[1], array.shape[0], width, height)
        array = image_ops.resize(image_ops.centre_crop(array), height, width).numpy()  # [height, width, C]
    return array


def _rgb(images, caller):
    """uint8 [N, H, W, 3] of uint8 [N, H, W, C] images, grayscale tiled to RGB."""
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"{caller}: expected uint8 [N, H, W, C], got {images.dtype} {list(images.shape)}")
    return np.repeat(images, 3, axis=3) if images.shape[3] == 1 else images


def to_raster(images, cols):
    """[N, H, W, C] uint8 -> [rows*H, cols*W, 3] tiles in row-major order (graphics.to_raster)."""
    images = _rgb(images, "to_raster")
    n, height, width, _ = images.shape
    rows = -(-n // cols)
    raster = np.zeros([rows * height, cols * width, 3], np.uint8)
    for index in range(n):
        i, j = divmod(index, cols)
        raster[i * height:(i + 1) * height, j * width:(j + 1) * width] = images[index]
    return raster


def figure_scale(image_size) -> int:
    """The nearest-neighbour factor that makes a tile at least FIGURE_MIN_TILE pixels (16 px: 4)."""
    return max(1, -(-FIGURE_MIN_TILE // image_size))


def figure(images, cols, row_labels=(), col_labels=(), title=""):
    """uint8 [H', W', 3]: images [N, H, W, C] in row-major order on ``cols`` columns, for people.

    Each tile is upscaled ``figure_scale`` times; tiles are FIGURE_GAP pixels apart, the grid
    FIGURE_PAD pixels from the bottom and right edges. Above it: ``title`` (one line), then
    ``col_labels`` (one per column, centred); left of it ``row_labels`` (one per row). The
    margins grow only for the labels given, so an unlabelled figure is just pad, tiles and gaps.
    """
    images = _rgb(images, "figure")
    rows = -(-len(images) // cols)
    for name, labels, count in (("row_labels", row_labels, rows), ("col_labels", col_labels, cols)):
        if len(labels) not in (0, count):
            raise ValueError(f"figure: expected {count} {name} or none, got {len(labels)}")
    scale = figure_scale(max(images.shape[1:3]))
    tiles = images.repeat(scale, axis=1).repeat(scale, axis=2)  # [N, H * scale, W * scale, 3]
    step_y, step_x = tiles.shape[1] + FIGURE_GAP, tiles.shape[2] + FIGURE_GAP
    font = ImageFont.load_default(size=FIGURE_FONT_SIZE)
    left, top = _figure_margins(font, row_labels, bool(col_labels), bool(title))
    canvas = Image.new("RGB", (left + cols * step_x - FIGURE_GAP + FIGURE_PAD,
                               top + rows * step_y - FIGURE_GAP + FIGURE_PAD), "white")
    for index, tile in enumerate(tiles):
        i, j = divmod(index, cols)
        canvas.paste(Image.fromarray(tile), (left + j * step_x, top + i * step_y))
    draw = ImageDraw.Draw(canvas)
    text = dict(fill="black", font=font)
    if title:
        draw.text((FIGURE_PAD, FIGURE_PAD), title, anchor="la", **text)
    for j, label in enumerate(col_labels):
        draw.text((left + j * step_x + tiles.shape[2] // 2, top - FIGURE_GAP), label, anchor="md", **text)
    for i, label in enumerate(row_labels):
        draw.text((left - FIGURE_PAD, top + i * step_y + tiles.shape[1] // 2), label, anchor="rm", **text)
    return np.asarray(canvas)


def _figure_margins(font, row_labels, col_labels: bool, title: bool):
    """(left, top) pixels before the first tile: the pad plus room for the labels given."""
    left = FIGURE_PAD
    if row_labels:
        left += int(np.ceil(max(font.getlength(label) for label in row_labels))) + FIGURE_PAD
    return left, FIGURE_PAD + (FIGURE_FONT_SIZE + FIGURE_GAP) * (col_labels + title)


def save_raster(raster, path):
    """Writes a uint8 image [H, W, C] (``to_raster``'s or ``figure``'s) as a PNG."""
    write_atomic(path, lambda f: Image.fromarray(raster).save(f, format="PNG", optimize=True))

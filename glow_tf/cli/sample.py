"""glow-sample (and sample.py): sample grids, interpolations, manipulations and reconstructions of a trained Glow.

    glow-sample --model demo_out/saved_model --out samples.png            # temperature sweep
    glow-sample --model demo_out --temperature 0.7 --n 64 --out t07.png   # training logdir
    glow-sample --model M --interpolate a.png b.png --steps 8 --out lerp.png
    glow-sample --model M --manipulate a.png --attribute 3 --problem digits --out edit.png
    glow-sample --model M --reconstruct a.png,b.png --out recon.png

--model is a SavedModel directory (needs only TensorFlow) or a glow_tf checkpoint: a training
--logdir (its latest checkpoint), its checkpoints/ directory or a checkpoint prefix. --out is a
figure for people: tiles upscaled and apart, rows and columns labelled (temperature, class, t,
alpha), not the edge-to-edge raster training writes. The rules (figure layout, image resizing,
attribute directions) are in glow_tf/sampling.py. Work that takes more than a few seconds (a
large grid, the class means of --manipulate) shows a progress bar.
"""
import dataclasses
import os
from typing import Optional, Tuple

import numpy as np
from absl import flags, logging

from glow_tf import cli, sampling
from glow_tf.layers import PRECISIONS

FLAGS = flags.FLAGS


def _define_flags():
    """The flags, defined when the program runs (glow_tf.export defines some of the same names)."""
    flags.DEFINE_string("model", None, "SavedModel directory, glow_tf training logdir, checkpoints directory "
                        "or checkpoint prefix.")
    flags.DEFINE_bool("use_ema", True, "For checkpoints: use the Polyak (EMA) weights when present.")
    flags.DEFINE_string("out", "samples.png", "PNG file to write the figure to: tiles upscaled "
                        "(nearest neighbour) and apart, rows and columns labelled.")
    flags.DEFINE_integer("n", 10, "Samples per temperature (one grid row each in a sweep; the original's "
                         "grids have 10 columns).")
    flags.DEFINE_string("temperature", "sweep", "One temperature (a grid of --n samples: a column per "
                        "class for class-conditional models without --y, else ceil(sqrt(n)) columns), "
                        "or 'sweep': one row per temperature of the original's "
                        f"{list(sampling.SWEEP_TEMPERATURES)}, same latents in a column.")
    flags.DEFINE_integer("y", None, "Class for class-conditional (ycond) models. Samples default to class "
                         "i % n_y for column i (the original's draw_samples); the image modes need it.")
    flags.DEFINE_integer("seed", 0, "Seed of the model's noise generator (sample latents, dequantisation).")
    flags.DEFINE_list("interpolate", None, "Two images A,B (or '--interpolate A B'): one row of --steps "
                      "decodes of the per-level linear interpolation of their latents.")
    flags.DEFINE_integer("steps", 8, "Interpolation steps, both ends included.")
    flags.DEFINE_string("manipulate", None, "Image whose latent is moved along --attribute's direction, "
                        "one grid column per --alpha.")
    flags.DEFINE_string("attribute", None, "With --manipulate: the class whose direction to use, '3' or "
                        "'class 3' (direction = mean latent of the class - mean latent of the other classes).")
    flags.DEFINE_list("alpha", ["-1", "-.5", "0", ".5", "1"], "With --manipulate: multiples of the direction.")
    flags.DEFINE_string("problem", "digits", "With --manipulate: labelled data set of the directions "
                        "(a glow_tf.data problem: mnist, cifar10, digits, folder, ...).")
    flags.DEFINE_string("data_dir", "", "With --manipulate: data directory of --problem ('' = its default).")
    flags.DEFINE_integer("attribute_images", -1, "With --manipulate: held-out images the directions are "
                         "averaged over (-1: the problem's test split).")
    flags.DEFINE_string("attribute_cache", None, "With --manipulate: .npz cache of the class mean latents "
                        "(default: attributes_<problem>.npz beside --out); reused when made for the same "
                        "model, problem, data_dir and image count.")
    flags.DEFINE_list("reconstruct", None, "Images to encode and decode: row 1 the inputs, row 2 the "
                      "reconstructions.")
    flags.DEFINE_integer("batch_size", 64, "Images per model call.")
    flags.DEFINE_enum("precision", "float32", list(PRECISIONS), "For checkpoints: what the coupling networks "
                      "compute in, whatever the model trained in (float32: the original's numbers; "
                      "mixed_bfloat16: faster). A SavedModel computes in the precision it was exported with.")
    flags.mark_flag_as_required("model")


@dataclasses.dataclass(frozen=True)
class SampleOptions:
    """The flags of one glow-sample call, read once (``from_flags``); each is its flag (--help)."""
    model: str
    use_ema: bool
    out: str
    n: int
    temperature: str
    y: Optional[int]
    seed: int
    interpolate: Optional[Tuple[str, ...]]
    steps: int
    manipulate: Optional[str]
    attribute: Optional[str]
    alpha: Tuple[str, ...]
    problem: str
    data_dir: str
    attribute_images: int
    attribute_cache: Optional[str]
    reconstruct: Optional[Tuple[str, ...]]
    batch_size: int
    precision: str  # '' when --precision is not given: a SavedModel's own, a checkpoint's float32

    @classmethod
    def from_flags(cls, flag_values) -> "SampleOptions":
        values = {f.name: flag_values[f.name].value for f in dataclasses.fields(cls)}
        modes = [name for name in ("interpolate", "manipulate", "reconstruct") if values[name] is not None]
        if len(modes) > 1:
            raise ValueError(f"expected at most one of --interpolate, --manipulate, --reconstruct, got {modes}")
        for name in ("interpolate", "reconstruct", "alpha"):
            values[name] = tuple(values[name]) if values[name] is not None else None
        values["precision"] = values["precision"] if flag_values["precision"].present else ""
        return cls(**values)


def _temperatures(text):
    if text == "sweep":
        return list(sampling.SWEEP_TEMPERATURES)
    try:
        return [float(text)]
    except ValueError:
        raise ValueError(f"--temperature: expected a number or 'sweep', got {text!r}") from None


def _manipulation_figure(options, served, image):
    if options.attribute is None:
        raise ValueError("--attribute: expected a class with --manipulate, got none")
    k = sampling.parse_attribute(options.attribute)
    cache = options.attribute_cache or os.path.join(os.path.dirname(os.path.abspath(options.out)),
                                                  f"attributes_{options.problem}.npz")

    def compute():
        datasets = sampling.heldout_datasets(served, options.problem, options.data_dir, options.attribute_images)
        logging.info("computing class mean latents over %d images of %s", datasets.info.n_test, options.problem)
        with datasets.reading():
            return sampling.class_mean_latents(served, datasets.test, datasets.info.n_y)

    key = {"problem": options.problem, "data_dir": options.data_dir, "images": options.attribute_images}
    means, counts = sampling.cached_class_means(served, cache, key, compute)
    direction = sampling.attribute_direction(means, counts, k)
    alphas = [float(a) for a in options.alpha]
    row = sampling.manipulate(served, image, direction, alphas, options.y)
    return sampling.figure(row, len(row), col_labels=[f"alpha {a:g}" for a in alphas],
                           title=_titled(options, f"towards class {k}"))


def _second_interpolation_image(arguments):
    """absl keeps only the first value of '--interpolate A B'; B arrives as an argument and is taken back."""
    if FLAGS.interpolate is not None and len(FLAGS.interpolate) == 1 and arguments:
        FLAGS.interpolate = FLAGS.interpolate + arguments[:1]
        return arguments[1:]
    return arguments


def _titled(options, *parts):
    """A figure's title: the parts, and the class --y fixed for every image."""
    return ", ".join(list(parts) + ([f"class {options.y}"] if options.y is not None else []))


def _class_labels(options, served, n):
    """Column labels 'class c' of a sample row when the model picks class i % n_y; [] otherwise."""
    classes = sampling.grid_classes(served, n) if served.ycond and options.y is None else ()
    return [f"class {c}" for c in classes]


def _sample_figure(options, served):
    """A sweep: one row per temperature, one column per latent draw (and class); else one temperature."""
    temperatures = _temperatures(options.temperature)
    grid = sampling.sample_grid(served, options.n, temperatures, options.y, options.seed)  # [T, n, H, W, C]
    if len(temperatures) > 1:
        return sampling.figure(grid.reshape((-1,) + grid.shape[2:]), options.n,
                               row_labels=[f"T = {t:g}" for t in temperatures],
                               col_labels=_class_labels(options, served, options.n), title=_titled(options))
    labels = _class_labels(options, served, min(options.n, served.config["n_y"]))  # column j: class j
    cols = len(labels) or int(np.ceil(np.sqrt(options.n)))  # else square-ish, as the original
    return sampling.figure(grid[0], cols, col_labels=labels, title=_titled(options, f"T = {temperatures[0]:g}"))


def _interpolation_figure(options, served, a, b):
    row = sampling.interpolate(served, a, b, options.steps, options.y)
    weights = sampling.interpolation_weights(options.steps)  # column j: t_j of eps_b
    return sampling.figure(row, len(row), col_labels=[f"t = {t:.2f}" for t in weights],
                           title=_titled(options, "interpolation"))


def _figure(options, served):
    """The labelled figure (sampling.figure) of the mode the flags ask for."""
    read = lambda path: sampling.read_image(path, served.image_shape)  # noqa: E731
    if options.interpolate is not None:
        if len(options.interpolate) != 2:
            raise ValueError(f"--interpolate: expected two images, got {options.interpolate}")
        return _interpolation_figure(options, served, *map(read, options.interpolate))
    if options.manipulate is not None:
        return _manipulation_figure(options, served, read(options.manipulate))
    if options.reconstruct is not None:
        images = np.stack([read(path) for path in options.reconstruct])  # [N, H, W, C]
        both = np.concatenate([images, sampling.reconstruct(served, images, options.y)])
        return sampling.figure(both, len(images), row_labels=["input", "decoded"], title=_titled(options))
    return _sample_figure(options, served)


def _sample():
    options = SampleOptions.from_flags(FLAGS)
    served = sampling.load_model(options.model, use_ema=options.use_ema, batch_size=options.batch_size,
                                 precision=options.precision)
    served.progress = True
    served.reseed(options.seed)
    image = _figure(options, served)
    sampling.save_raster(image, options.out)
    print(f"wrote {options.out}: {image.shape[1]}x{image.shape[0]} pixels")


def main():
    """The glow-sample console script and sample.py."""
    _define_flags()
    cli.run(_sample, take_arguments=_second_interpolation_image)

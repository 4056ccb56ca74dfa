"""Sample grids, interpolations, attribute manipulations and reconstructions of a trained Glow.

    python sample.py --model demo_out/saved_model --out samples.png            # temperature sweep
    python sample.py --model demo_out --temperature 0.7 --n 64 --out t07.png   # training logdir
    python sample.py --model M --interpolate a.png b.png --steps 8 --out lerp.png
    python sample.py --model M --manipulate a.png --attribute 3 --problem digits --out edit.png
    python sample.py --model M --reconstruct a.png,b.png --out recon.png

--model is a SavedModel directory (needs only TensorFlow) or a glow_tf checkpoint: a training
--logdir (its latest checkpoint), its checkpoints/ directory or a checkpoint prefix. The rules
(grid layout, image resizing, attribute directions) are in glow_tf/sampling.py.
"""
import os

import numpy as np
from absl import app, flags, logging

from glow_tf import sampling

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "SavedModel directory, glow_tf training logdir, checkpoints directory "
                    "or checkpoint prefix.")
flags.DEFINE_bool("use_ema", True, "For checkpoints: use the Polyak (EMA) weights when present.")
flags.DEFINE_string("out", "samples.png", "PNG file to write the grid to.")
flags.DEFINE_integer("n", 10, "Samples per temperature (one grid row each in a sweep; the original's "
                     "grids have 10 columns).")
flags.DEFINE_string("temperature", "sweep", "One temperature (a grid of --n samples, ceil(sqrt(n)) "
                    "columns), or 'sweep': one row per temperature of the original's "
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
flags.mark_flag_as_required("model")


def _temperatures(text):
    if text == "sweep":
        return list(sampling.SWEEP_TEMPERATURES)
    try:
        return [float(text)]
    except ValueError:
        raise app.UsageError(f"--temperature: expected a number or 'sweep', got {text!r}") from None


def _manipulation_grid(served, image):
    from glow_tf import data
    if FLAGS.attribute is None:
        raise app.UsageError("--manipulate needs --attribute")
    k = sampling.parse_attribute(FLAGS.attribute)
    config = data.DataConfig(problem=FLAGS.problem, data_dir=FLAGS.data_dir, image_size=served.image_shape[0],
                             n_test=FLAGS.attribute_images, n_batch_test=FLAGS.batch_size,
                             n_batch_init=1)
    cache = FLAGS.attribute_cache or os.path.join(os.path.dirname(os.path.abspath(FLAGS.out)),
                                                  f"attributes_{FLAGS.problem}.npz")

    def compute():
        datasets = data.make_datasets(config)
        logging.info("computing class mean latents over %d images of %s", datasets.info.n_test, FLAGS.problem)
        return sampling.class_mean_latents(served, datasets.test, datasets.info.n_y)

    key = {"problem": FLAGS.problem, "data_dir": FLAGS.data_dir, "images": FLAGS.attribute_images}
    means, counts = sampling.cached_class_means(served, cache, key, compute)
    direction = sampling.attribute_direction(means, counts, k)
    alphas = [float(a) for a in FLAGS.alpha]
    return sampling.manipulate(served, image, direction, alphas, FLAGS.y)[None]  # [1, alphas, H, W, C]


def main(argv):
    extra = argv[1:]
    # absl keeps only the first value of '--interpolate A B'; the second arrives as an argument.
    if FLAGS.interpolate is not None and len(FLAGS.interpolate) == 1 and len(extra) == 1:
        FLAGS.interpolate, extra = FLAGS.interpolate + extra, []
    if extra:
        raise app.UsageError(f"unexpected arguments {extra}")
    modes = [name for name in ("interpolate", "manipulate", "reconstruct") if FLAGS[name].value is not None]
    if len(modes) > 1:
        raise app.UsageError(f"expected at most one of --interpolate, --manipulate, --reconstruct, got {modes}")
    try:
        served = sampling.load_model(FLAGS.model, use_ema=FLAGS.use_ema, batch_size=FLAGS.batch_size)
        served.reseed(FLAGS.seed)
        read = lambda path: sampling.read_image(path, served.image_shape)  # noqa: E731
        if FLAGS.interpolate is not None:
            if len(FLAGS.interpolate) != 2:
                raise app.UsageError(f"--interpolate: expected two images, got {FLAGS.interpolate}")
            a, b = map(read, FLAGS.interpolate)
            grid = sampling.interpolate(served, a, b, FLAGS.steps, FLAGS.y)[None]  # [1, steps, H, W, C]
        elif FLAGS.manipulate is not None:
            grid = _manipulation_grid(served, read(FLAGS.manipulate))
        elif FLAGS.reconstruct is not None:
            images = np.stack([read(path) for path in FLAGS.reconstruct])  # [N, H, W, C]
            grid = np.stack([images, sampling.reconstruct(served, images, FLAGS.y)])
        else:
            temperatures = _temperatures(FLAGS.temperature)
            grid = sampling.sample_grid(served, FLAGS.n, temperatures, FLAGS.y, FLAGS.seed)
            if len(temperatures) == 1:
                grid = grid[0]  # [n, H, W, C]: a square-ish grid as the original
    except ValueError as e:  # bad input: the message says what was expected; no traceback
        raise SystemExit(f"sample.py: error: {e}") from None
    height, width, _ = sampling.save_grid(grid, FLAGS.out)
    print(f"wrote {FLAGS.out}: {width}x{height} pixels")


if __name__ == "__main__":
    app.run(main)

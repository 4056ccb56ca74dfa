"""glow-export (and python -m glow_tf.cli.export): a glow_tf run or an original checkpoint as a SavedModel.

    glow-export --checkpoint LOGDIR --out DIR                          # glow_tf run
    glow-export --openai_checkpoint PREFIX --hparams FILE --out DIR   # the original's

What the SavedModel holds, and how to load it: glow_tf/export.py.
"""
import time

from absl import flags

from glow_tf import checkpoints, cli, export, progress
from glow_tf.layers import PRECISIONS

FLAGS = flags.FLAGS


def _define_flags():
    flags.DEFINE_string("checkpoint", None, "glow_tf training --logdir, its checkpoints/ directory or a "
                        "checkpoint prefix to export (restored with glow_tf.checkpoints.restore_model).")
    cli.define_original_checkpoint_flags("checkpoint", __name__)
    flags.DEFINE_string("out", None, "SavedModel directory to write (must not exist unless --overwrite).")
    flags.DEFINE_bool("overwrite", False, "Replace an existing --out directory.")
    flags.DEFINE_bool("use_ema", True, "Export the Polyak-averaged (EMA) weights when the checkpoint holds "
                      "them (the original's '.../ExponentialMovingAverage' shadows for --openai_checkpoint; "
                      "the original itself evaluates the raw weights).")
    flags.DEFINE_integer("seed", 0, "Seed of the SavedModel's noise generator (dequantisation noise, "
                         "sample's eps): a fresh load draws the same numbers in the same order.")
    flags.DEFINE_enum("precision", "float32", list(PRECISIONS), "What the SavedModel's coupling networks compute "
                      "in, whatever the model trained in: float32 (the original's numbers) or mixed_bfloat16 "
                      "(bfloat16 convolutions: faster where bfloat16 is).")
    flags.mark_flag_as_required("out")


def _restore():
    """The model the flags name (the slow first stage: reading the checkpoint)."""
    return (cli.original_checkpoint("checkpoint", use_ema=FLAGS.use_ema)
            or checkpoints.restore_model(FLAGS.checkpoint, use_ema=FLAGS.use_ema))


def _export():
    start = time.perf_counter()
    export.check_target(FLAGS.out, FLAGS.overwrite)  # before the slow restore
    # Two stages, each one call that reports nothing while it runs: the bar names the stage and
    # the time so far (on a terminal only).
    with progress.bar(total=2, initial=1, desc="restoring the checkpoint", delay=0,
                      bar_format="{desc} (stage {n}/{total}, {elapsed})") as stages:
        model = _restore()
        stages.set_description_str("tracing and writing the SavedModel")
        stages.update()
        path = export.export_saved_model(model, FLAGS.out, overwrite=FLAGS.overwrite, seed=FLAGS.seed,
                                         precision=FLAGS.precision)
    print(f"wrote SavedModel {path}: {export.directory_size(path) / 2**20:.1f} MiB on disk, "
          f"{time.perf_counter() - start:.1f} s (restore + trace + save)")


def main():
    """The glow-export console script and ``python -m glow_tf.cli.export``."""
    _define_flags()
    cli.run(_export)


if __name__ == "__main__":
    main()

"""The on-disk layout of a training run, and ``restore_model`` to get a trained Glow back.

A training ``--logdir`` holds::

    config.json            {"model": GlowConfig.to_dict(), "train": {every flag + derived values}}
    checkpoints/           tf.train.CheckpointManager: latest checkpoints (ckpt-<step>.*)
    model_best_loss/       the checkpoint with the best test loss (the original's model_best_loss)
    train.txt, test.txt    the original's JSON-lines logs
    saved_model/           the SavedModel export at the end of training

Each checkpoint is ``tf.train.Checkpoint(model=Glow, ema=PolyakAverage, optimizer=AdamFamily,
step=..., iterator=..., rng=..., ...)`` (see ``train_lib``). ``restore_model`` needs only the
model and the EMA from it.
"""
import json
import os
import re

import tensorflow as tf
from absl import logging

from glow_tf import files, openai, optim
from glow_tf.config import GlowConfig
from glow_tf.model import Glow

CONFIG_FILE = "config.json"
CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "model_best_loss"
EMA_KEY = "ema"


def read_run_config(logdir):
    """The run's config.json as {"model": {...}, "train": {...}}."""
    path = os.path.join(logdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise ValueError(f"expected a training run's {CONFIG_FILE} in {logdir!r}, found none")
    with open(path) as f:
        values = json.load(f)
    if not isinstance(values, dict) or "model" not in values:
        raise ValueError(f"{path}: expected a JSON object with a 'model' entry, got {str(values)[:200]}")
    return values


def resolve(path):
    """(logdir, checkpoint prefix) for a training logdir, a checkpoint dir or a checkpoint prefix.

    A logdir (a directory with ``config.json``) resolves to the latest checkpoint in its
    ``checkpoints/``; a checkpoint dir to its latest checkpoint, with its parent as the logdir.
    """
    path = os.path.abspath(os.fspath(path))
    expected = "a training logdir, a checkpoint dir or a checkpoint prefix"
    if os.path.isdir(path) and os.path.exists(os.path.join(path, CONFIG_FILE)):
        return path, files.checkpoint_prefix(os.path.join(path, CHECKPOINTS_DIR), expected)
    prefix = files.checkpoint_prefix(path, expected)
    return os.path.dirname(path if os.path.isdir(path) else os.path.dirname(path)), prefix


# A key of the per-step layout (before flow steps were stacked): model/levels/0/flow_layers/3/...
_PER_STEP_KEY = re.compile(r"(^|/)levels/\d+/flow_layers/\d+/")


def check_layout(prefix):
    """Raises a ValueError, saying what to do, for a checkpoint of glow_tf's old per-step layout.

    Since the flow steps of a level run as one loop (``layers.FlowScan``), each level stores
    every parameter once, stacked over its steps; a checkpoint with one variable per step
    would restore only the rest of the model, silently.
    """
    old = [name for name, _ in tf.train.list_variables(prefix) if _PER_STEP_KEY.search(name)]
    if old:
        raise ValueError(
            f"{prefix}: this checkpoint has glow_tf's old per-step layout (one variable per flow step, e.g. "
            f"{old[0]!r}); this glow_tf stacks each level's steps and cannot restore it. Either retrain, or "
            "export it with the glow_tf that wrote it (commit 75a29d9: python -m glow_tf.export --checkpoint "
            "LOGDIR --out DIR): a SavedModel does not depend on the layout and loads without glow_tf.")


def is_glow_tf_checkpoint(prefix):
    """glow_tf's (TF2 object-based) checkpoint, as opposed to the original's TF1 name-based one."""
    return any(name == "_CHECKPOINTABLE_OBJECT_GRAPH" for name, _ in tf.train.list_variables(prefix))


def has_openai_ema(prefix):
    """Whether an original checkpoint holds the Polyak averages (``.../ExponentialMovingAverage``)."""
    return any(name.endswith(openai.EMA_SUFFIX) for name, _ in tf.train.list_variables(prefix))


def has_ema(prefix):
    """Whether the checkpoint holds the Polyak averages."""
    return any(name.startswith(EMA_KEY + "/") for name, _ in tf.train.list_variables(prefix))


def restore_model(path, use_ema=True) -> Glow:
    """The Glow of a glow_tf training run, with the Polyak-averaged weights when ``use_ema``.

    Args:
      path: a training logdir, its checkpoints dir (or model_best_loss/), or a checkpoint prefix.
      use_ema: swap in the Polyak averages (if the checkpoint has them; logged either way).

    Returns the model; ``model.ema_weights`` says whether it holds the averages.
    """
    logdir, prefix = resolve(path)
    check_layout(prefix)
    config = GlowConfig.from_dict(read_run_config(logdir)["model"])
    model = Glow(config)
    tf.train.Checkpoint(model=model).restore(prefix).expect_partial()
    if not bool(model.initialized.numpy()):
        raise ValueError(f"{prefix}: the checkpoint holds no initialised Glow (model/initialized is not set)")
    swap = use_ema and has_ema(prefix)
    if swap:  # each average straight into its weight: no second copy of the weights (0.65 GiB at CelebA-HQ size)
        averages = optim.PolyakAverage.checkpoint_view(model.trainable_variables)
        tf.train.Checkpoint(**{EMA_KEY: averages}).restore(prefix).expect_partial().assert_existing_objects_matched()
    model.ema_weights = swap
    logging.info("restored %s from %s (%s)", config, prefix,
                 "Polyak-averaged weights" if swap else
                 "raw weights" + (": the checkpoint has no averages" if use_ema else ""))
    return model

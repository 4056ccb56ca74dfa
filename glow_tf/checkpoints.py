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

Damaged checkpoints. A training run resumes from ``find_resumable``'s checkpoint: the newest one
of ``checkpoints/`` whose every tensor reads back (TensorFlow's reader checks each one's
checksum), so a checkpoint cut short or damaged on disk is passed over, and ``set_aside`` renames
its files to ``ckpt-N.damaged.*`` (kept, never deleted; tf.train.CheckpointManager neither reads
nor deletes files by those names) and writes the checkpoint state without it. The candidates are
the checkpoint state's (TensorFlow's ``checkpoint`` file, which names a checkpoint only once it is
written whole), newest first, or without a readable state the ``ckpt-N`` files there. When
checkpoints exist but none reads back, nothing is changed and CheckpointError says so: a run
never starts over silently. Elsewhere (``restore_model``, --restore_path) a checkpoint that
cannot be read is a CheckpointError naming it.
"""
import contextlib
import dataclasses
import glob
import json
import os
import re
import shutil
from typing import Optional, Tuple

import tensorflow as tf
from absl import logging

from glow_tf import files, optim
from glow_tf.config import CHECKPOINT_NEUTRAL, GlowConfig
from glow_tf.errors import CheckpointError, RunFileError, WriteError
from glow_tf.model import Glow

CONFIG_FILE = "config.json"
CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "model_best_loss"
EMA_KEY = "ema"
STATE_FILE = "checkpoint"  # tf.train.CheckpointManager's checkpoint state
DAMAGED = ".damaged"  # ckpt-N.damaged.index: a checkpoint set aside (``set_aside``)
_NUMBERED = re.compile(r"^ckpt-(\d+)\.index$")


def read_run_config(logdir):
    """The run's config.json as {"model": {...}, "train": {...}}; RunFileError if it is not that."""
    path = os.path.join(logdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise RunFileError(f"expected a training run's {CONFIG_FILE} in {logdir!r}, found none")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        values = json.loads(text)
    except (OSError, UnicodeDecodeError) as e:
        raise RunFileError(f"{path}: expected the run's config as JSON, could not read it ({e})") from None
    except json.JSONDecodeError as e:
        raise RunFileError(f"{path}: expected the run's config as JSON, got text that is not ({e.msg} at line "
                           f"{e.lineno}, column {e.colno}: {text[:80]!r})") from None
    if not isinstance(values, dict) or not isinstance(values.get("model"), dict):
        raise RunFileError(f"{path}: expected a JSON object with a 'model' entry, got {str(values)[:200]}")
    return values


@contextlib.contextmanager
def reading(prefix):
    """Within it, TensorFlow's errors of a damaged checkpoint become a CheckpointError naming ``prefix``."""
    try:
        yield
    except (tf.errors.OpError, IndexError) as e:  # IndexError: TensorFlow's reader past a file's end
        raise CheckpointError(f"{prefix}: the checkpoint cannot be read ({files.error_text(e)})") from None


def read_failure(prefix) -> Optional[str]:
    """None when every tensor of the checkpoint ``prefix`` reads back, else why not.

    TensorFlow's reader checks each tensor's checksum; the tensors are read one at a time (the
    memory of the largest), variants (the data iterator's state) included.
    """
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name, dtype in reader.get_variable_to_dtype_map().items():
            tf.raw_ops.RestoreV2(prefix=prefix, tensor_names=[name], shape_and_slices=[""], dtypes=[dtype])
    except (tf.errors.OpError, IndexError) as e:
        return files.error_text(e)
    return None


@dataclasses.dataclass(frozen=True)
class Resumable:
    """What a run's checkpoints directory offers to resume from (``find_resumable``).

    Attributes:
      directory: the checkpoints directory.
      kept: (prefix, timestamp) of the checkpoint to resume from, last, and the older candidates
        (not read), oldest first; empty when there is none yet.
      damaged: the newer candidates that do not read back, newest first, as (prefix, why).
      state_note: why the checkpoint state was not used ('' when it was).
    """
    directory: str
    kept: Tuple[Tuple[str, float], ...] = ()
    damaged: Tuple[Tuple[str, str], ...] = ()
    state_note: str = ""

    @property
    def prefix(self) -> Optional[str]:
        """The newest checkpoint that reads back whole; None when there is none yet."""
        return self.kept[-1][0] if self.kept else None

    @property
    def needs_new_state(self) -> bool:
        """Whether the checkpoint state must be written anew (``set_aside``) before resuming."""
        return bool(self.prefix and (self.damaged or self.state_note))


def _candidates(directory):
    """([(prefix, timestamp)] oldest first, note): the checkpoint state's, else the ckpt-N files'."""
    state_path = os.path.join(directory, STATE_FILE)
    note = ""
    if os.path.exists(state_path):
        try:
            state = tf.train.get_checkpoint_state(directory)
        except ValueError:  # a state without a latest checkpoint
            state = None
        if state is not None:
            paths = list(state.all_model_checkpoint_paths)
            if state.model_checkpoint_path not in paths:
                paths.append(state.model_checkpoint_path)
            stamps = list(state.all_model_checkpoint_timestamps)
            stamps = stamps if len(stamps) == len(paths) else [state.last_preserved_timestamp] * len(paths)
            return list(zip(paths, stamps)), note
        note = f"{state_path} cannot be read; looking at the ckpt-N files beside it"
    found = [(int(match.group(1)), name) for name in os.listdir(directory) if (match := _NUMBERED.match(name))]
    prefixes = [os.path.join(directory, name[:-len(".index")]) for _, name in sorted(found)]
    return [(prefix, os.path.getmtime(prefix + ".index")) for prefix in prefixes], note


def find_resumable(directory) -> Resumable:
    """The checkpoint a run in ``directory`` resumes from, and the newer damaged ones (module docstring).

    Raises CheckpointError when checkpoints exist and none of them can be read.
    """
    if not os.path.isdir(directory):
        return Resumable(directory)
    candidates, note = _candidates(directory)
    damaged = []
    for index in reversed(range(len(candidates))):
        prefix = candidates[index][0]
        reason = read_failure(prefix)
        if reason is None:
            return Resumable(directory, tuple(candidates[:index + 1]), tuple(damaged), note)
        damaged.append((prefix, reason))
    if damaged:
        found = "; ".join(f"{os.path.basename(prefix)}: {reason}" for prefix, reason in damaged)
        found += f"; {note}" if note else ""
        raise CheckpointError(
            f"{directory}: none of its {len(damaged)} checkpoint(s) can be read ({found}). Nothing was changed. "
            "To resume, put back a copy of that folder; to start this run over, move the folder aside (or train "
            "in another --logdir)")
    return Resumable(directory, state_note=note)


def set_aside(resumable: Resumable):
    """Renames the damaged checkpoints' files to ``ckpt-N.damaged[-k].*`` and writes the checkpoint
    state naming ``resumable.prefix`` as the latest; returns [(old prefix, new prefix)].

    The state keeps the timestamps of the checkpoints it lists, and marks none as preserved, so
    that tf.train.CheckpointManager deletes them in turn as newer ones are written.
    """
    moved = []
    for prefix, _ in resumable.damaged:
        target, k = prefix + DAMAGED, 1
        while glob.glob(glob.escape(target) + ".*"):
            k += 1
            target = f"{prefix}{DAMAGED}-{k}"
        for path in _checkpoint_files(prefix):
            try:
                os.rename(path, target + path[len(prefix):])
            except OSError as e:
                raise WriteError(f"could not rename {path} to set it aside ({files.write_failure(e, path)})") from None
        moved.append((prefix, target))
    kept = resumable.kept
    lines = [f"model_checkpoint_path: {json.dumps(os.path.basename(resumable.prefix))}"]
    lines += [f"all_model_checkpoint_paths: {json.dumps(os.path.basename(prefix))}" for prefix, _ in kept]
    lines += [f"all_model_checkpoint_timestamps: {stamp!r}" for _, stamp in kept]
    lines.append(f"last_preserved_timestamp: {min(stamp for _, stamp in kept) - 1.0!r}")
    text = ("\n".join(lines) + "\n").encode()
    files.write_atomic(os.path.join(resumable.directory, STATE_FILE), lambda f: f.write(text))
    return moved


def _checkpoint_files(prefix):
    """The files of checkpoint ``prefix`` (its index and data shards)."""
    return [path for path in [prefix + ".index"] + glob.glob(glob.escape(prefix) + ".data-*-of-*")
            if os.path.exists(path)]


def remove_partial(prefix):
    """Removes what a failed write of checkpoint ``prefix`` left: its files and TensorFlow's temp folder."""
    for path in _checkpoint_files(prefix):
        os.remove(path)
    for temp in glob.glob(glob.escape(prefix) + "_temp*"):
        if os.path.isdir(temp):
            shutil.rmtree(temp, ignore_errors=True)


def save(manager, step):
    """``manager``'s checkpoint of ``step``; a failed write leaves nothing of it and raises WriteError.

    The checkpoint state (written last, atomically) then still names the previous checkpoint,
    which the manager deletes only after a newer one is written whole.
    """
    try:
        manager.save(checkpoint_number=step)
    except (tf.errors.OpError, OSError) as e:
        prefix = os.path.join(manager.directory, f"ckpt-{step}")
        if tf.train.latest_checkpoint(manager.directory) != prefix:
            remove_partial(prefix)
        raise WriteError(f"could not write checkpoint {prefix} ({files.write_failure(e, prefix)})") from None


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
    old = [name for name in variable_names(prefix) if _PER_STEP_KEY.search(name)]
    if old:
        raise ValueError(
            f"{prefix}: this checkpoint has glow_tf's old per-step layout (one variable per flow step, e.g. "
            f"{old[0]!r}); this glow_tf stacks each level's steps and cannot restore it. Either retrain, or "
            "export it with the glow_tf that wrote it (its own python -m glow_tf.export --checkpoint "
            "LOGDIR --out DIR): a SavedModel does not depend on the layout and loads without glow_tf.")


def variable_names(prefix):
    """The names in the checkpoint ``prefix`` (CheckpointError if its index cannot be read)."""
    with reading(prefix):
        return [name for name, _ in tf.train.list_variables(prefix)]


def is_glow_tf_checkpoint(prefix):
    """glow_tf's (TF2 object-based) checkpoint, as opposed to the original's TF1 name-based one."""
    return "_CHECKPOINTABLE_OBJECT_GRAPH" in variable_names(prefix)


def has_ema(prefix):
    """Whether the checkpoint holds the Polyak averages."""
    return any(name.startswith(EMA_KEY + "/") for name in variable_names(prefix))


def precision_change(saved_model, precision):
    """A note when a model trained in one precision (``saved_model``: GlowConfig.to_dict() of its
    run) is restored to compute in another, '' when not: its weights are float32 in both."""
    trained = saved_model.get("precision") or "float32"  # runs from before --precision trained in float32
    if not precision or precision == trained:
        return ""
    return (f"the checkpoint was trained with --precision {trained}; restored to compute in {precision} "
            "(its variables are float32 in every precision)")


def model_flag_differences(saved: dict, current: GlowConfig):
    """['--depth 2 (now 4)', ...] for the model hyper-parameters that differ, those that change
    nothing a checkpoint holds aside (``GlowConfig``'s checkpoint-neutral fields)."""
    current = current.to_dict()
    return [f"--{k} {saved.get(k)!r} (now {current[k]!r})" for k in current
            if k not in CHECKPOINT_NEUTRAL and saved.get(k) != current[k]]


def check_same_model(saved: dict, current: GlowConfig, where):
    """A ValueError naming the flags if the model of ``saved`` (GlowConfig.to_dict()) is another one."""
    differences = model_flag_differences(saved, current)
    if differences:
        raise ValueError(f"{where} holds a model with different flags: {', '.join(differences)}. "
                         "Pass the same model flags (or use another --logdir).")


def describe_last(prefix) -> str:
    """'the last good checkpoint is PREFIX (step N)' for a run's latest checkpoint; None: none written yet."""
    if prefix is None:
        return "no checkpoint was written yet"
    return f"the last good checkpoint is {prefix} (step {prefix.rsplit('-', 1)[1]})"


def restore_model(path, use_ema=True, precision="") -> Glow:
    """The Glow of a glow_tf training run, with the Polyak-averaged weights when ``use_ema``.

    Args:
      path: a training logdir, its checkpoints dir (or model_best_loss/), or a checkpoint prefix.
      use_ema: swap in the Polyak averages (if the checkpoint has them; logged either way).
      precision: what the coupling networks compute in (``layers.PRECISIONS``); '': what the run
        trained in.

    Returns the model; ``model.ema_weights`` says whether it holds the averages.
    """
    logdir, prefix = resolve(path)
    check_layout(prefix)
    saved = read_run_config(logdir)["model"]
    config = GlowConfig.from_dict({**saved, "precision": precision or saved.get("precision", "")})
    note = precision_change(saved, precision)
    if note:
        logging.warning("%s: %s", prefix, note)
    model = Glow(config)
    with reading(prefix):
        tf.train.Checkpoint(model=model).restore(prefix).expect_partial()
    if not bool(model.initialized.numpy()):
        raise ValueError(f"{prefix}: the checkpoint holds no initialised Glow (model/initialized is not set)")
    swap = use_ema and has_ema(prefix)
    if swap:  # each average straight into its weight: no second copy of the weights (0.65 GiB at CelebA-HQ size)
        averages = optim.PolyakAverage.checkpoint_view(model.trainable_variables)
        with reading(prefix):
            restored = tf.train.Checkpoint(**{EMA_KEY: averages}).restore(prefix)
            restored.expect_partial().assert_existing_objects_matched()
    model.ema_weights = swap
    logging.info("restored %s from %s (%s)", config, prefix,
                 "Polyak-averaged weights" if swap else
                 "raw weights" + (": the checkpoint has no averages" if use_ema else ""))
    return model

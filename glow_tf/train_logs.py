"""Training logs: the original's JSON-lines files and TensorBoard summaries.

``train.txt`` / ``test.txt`` are the original's ``utils.ResultLogger`` files: the first line
holds the hps, then one record per epoch (per test pass) with epoch, n_processed, n_images,
[train_time,] loss, bits_x, bits_y, pred_loss, the statistics formatted as the original's
``process_results`` ("%.4f" strings). ``train_steps.txt`` (``--log_steps``) has one record per
step with exact floats. Records are appended whole or not at all (``files.append_whole``: a
failed write is cut back), so a killed process or a full disk leaves no partial line; on resume
a file is rewritten (temp file, then rename) without the records written after the checkpoint.
A file that is not such a log (its first line not a JSON object, or a record other than the last
not JSON) is a RunFileError; a last line cut short (a kill mid-write) is dropped.

Summaries are written with core ``tf.summary.write`` in the formats of TensorBoard's scalars
and images plugins, so training does not need the tensorboard package (viewing does).
"""
import json
import math
import os

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from glow_tf.config import LOSS_TERMS
from glow_tf.errors import RunFileError
from glow_tf.files import append_whole, write_atomic


def _plugin_metadata(plugin):
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin)).SerializeToString()


def summary_scalar(tag, value, step):
    """A TensorBoard scalar, written with core TensorFlow (the tensorboard package is not needed)."""
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=_plugin_metadata("scalars"))


def summary_image(tag, image, step):
    """A TensorBoard image (uint8 [H, W, 3]) in the images plugin's format: [width, height, png]."""
    height, width = image.shape[:2]
    tensor = tf.stack([tf.constant(str(width)), tf.constant(str(height)), tf.io.encode_png(image)])
    tf.summary.write(tag, tensor, step=step, metadata=_plugin_metadata("images"))


class JsonLinesLog:
    """The original's ResultLogger (first line: the hps), resumable.

    Args:
      path: the file.
      hps: the first line's dict (written only when the file starts).
      keep: on resume, a predicate on the old records: those it rejects (written after the
        checkpoint resumed from) and a last line cut short are dropped; None starts the file anew.
      enabled: False makes ``log`` a no-op (non-chief workers).
    """

    def __init__(self, path, hps, keep=None, enabled=True):
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        lines = [json.dumps(hps)]
        if keep is not None and os.path.exists(path):
            old = _read_records(path)
            lines = old[:1] or lines
            lines += [line for line, record in old[1:] if keep(record)]
        text = "".join(line + "\n" for line in lines).encode()
        write_atomic(path, lambda f: f.write(text))

    def log(self, *records):
        """Appends each record as one JSON line, all in one write."""
        if self.enabled and records:
            append_whole(self.path, "".join(json.dumps(r) + "\n" for r in records).encode())


def _read_records(path):
    """[first line, (line, record), ...] of a log; RunFileError where it is not one (see the module docstring)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise RunFileError(f"{path}: expected a JSON-lines log glow_tf wrote, could not read it ({e})") from None
    if not lines:
        return []
    if not isinstance(_json_or_none(lines[0]), dict):
        raise RunFileError(f"{path}: line 1: expected the run's hps as a JSON object, got {lines[0][:80]!r}. Move "
                           "the file aside to resume without it (a new one is started)")
    result = [lines[0]]
    for number, line in enumerate(lines[1:], start=2):
        record = _json_or_none(line)
        if isinstance(record, dict):
            result.append((line, record))
        elif number < len(lines):  # only the last line can be cut short by a kill
            raise RunFileError(f"{path}: line {number}: expected a JSON record, got {line[:80]!r}. Remove the "
                               "line, or move the file aside to resume without it (a new one is started)")
    return result


def _json_or_none(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def format_results(values):
    """The original's process_results: {stat: '%.4f' string}."""
    return {name: "{:.4f}".format(float(v)) for name, v in zip(LOSS_TERMS, values)}


class RunLogs:
    """A run's logs: the console lines, then (``open``) train.txt, test.txt, train_steps.txt
    (--log_steps) and TensorBoard summaries in ``tensorboard/``. Only the chief writes (``chief``).

    Args:
      logdir, hps: the run's directory and the logs' first line.
      plan: the run's ``plan.Plan`` (images seen per step).
      chief, log_steps: whether this process writes, and train_steps.txt too.
    """

    def __init__(self, logdir, hps, plan, chief, log_steps):
        self.logdir, self.hps, self.plan, self.chief, self.log_steps = logdir, hps, plan, chief, log_steps
        self.train = self.test = self.steps = self.writer = None

    def open(self, resumed_at=None):
        """Opens the logs; ``resumed_at``: the step of the checkpoint the run resumes from (None: a new
        run). The records written up to it stay: epoch records of its step were written before it, step
        records of its step after it."""
        by_images = by_step = None
        if resumed_at is not None:
            n_processed = self.plan.n_processed(resumed_at)
            by_images = lambda record: record.get("n_processed", math.inf) <= n_processed  # noqa: E731
            by_step = lambda record: record.get("step", math.inf) < resumed_at  # noqa: E731
        path = lambda name: os.path.join(self.logdir, name)  # noqa: E731
        self.train = JsonLinesLog(path("train.txt"), self.hps, by_images, self.chief)
        self.test = JsonLinesLog(path("test.txt"), self.hps, by_images, self.chief)
        self.steps = JsonLinesLog(path("train_steps.txt"), self.hps, by_step, self.chief and self.log_steps)
        self.writer = (tf.summary.create_file_writer(path("tensorboard")) if self.chief
                       else tf.summary.create_noop_writer())

    def print(self, *args):
        """A console line."""
        if self.chief:
            print(*args, flush=True)

    def chunk(self, step, stats, ok, seconds, lr, nonfinite_total, verbose=False):
        """The steps of a chunk from ``step`` (stats [n, 4], ok [n]): train_steps.txt, --verbose lines, summaries."""
        records = [{"step": step + i, **{name: float(v) for name, v in zip(LOSS_TERMS, s)}, "ok": bool(o)}
                   for i, (s, o) in enumerate(zip(stats, ok))]
        self.steps.log(*records)
        if verbose:
            for record in records:
                self.print(self.plan.n_processed(record["step"]), record)
        end = step + len(ok)
        with self.writer.as_default():
            if ok.any():
                for index, name in enumerate(LOSS_TERMS[:2]):
                    summary_scalar(f"train/{name}", float(stats[ok, index].mean()), end)
            summary_scalar("train/lr", lr, end)
            summary_scalar("train/images_per_sec", len(ok) * self.plan.global_batch_train / seconds, end)
            summary_scalar("train/nonfinite_steps", float(nonfinite_total), end)

    def epoch(self, epoch, step, train_time, results):
        """The original's train.txt record of an epoch ending at ``step``."""
        self.train.log(dict(epoch=epoch, n_processed=self.plan.n_processed(step), n_images=self.plan.n_images(step),
                            train_time=train_time, **format_results(results)))

    def test_pass(self, epoch, step, results):
        """The original's test.txt record, and the test summaries."""
        self.test.log(dict(epoch=epoch, n_processed=self.plan.n_processed(step), n_images=self.plan.n_images(step),
                           **format_results(results)))
        with self.writer.as_default():
            for index, name in enumerate(LOSS_TERMS[:2]):
                summary_scalar(f"test/{name}", float(results[index]), step)

    def image(self, tag, image, step):
        """A TensorBoard image summary."""
        with self.writer.as_default():
            summary_image(tag, image, step)

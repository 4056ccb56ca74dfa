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
import os

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from glow_tf.errors import RunFileError
from glow_tf.files import append_whole, write_atomic

STATS = ("loss", "bits_x", "bits_y", "pred_loss")


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
    return {name: "{:.4f}".format(float(v)) for name, v in zip(STATS, values)}

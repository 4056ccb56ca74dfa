"""Training logs: the original's JSON-lines files and TensorBoard summaries.

``train.txt`` / ``test.txt`` are the original's ``utils.ResultLogger`` files: the first line
holds the hps, then one record per epoch (per test pass) with epoch, n_processed, n_images,
[train_time,] loss, bits_x, bits_y, pred_loss, the statistics formatted as the original's
``process_results`` ("%.4f" strings). ``train_steps.txt`` (``--log_steps``) has one record per
step with exact floats. Records are appended with one ``write`` each, so a killed process
leaves no partial line; on resume a file is rewritten (temp file, then rename) without the
records written after the checkpoint.

Summaries are written with core ``tf.summary.write`` in the formats of TensorBoard's scalars
and images plugins, so training does not need the tensorboard package (viewing does).
"""
import json
import os

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from glow_tf.files import write_atomic

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
        checkpoint resumed from) and a partial last line are dropped; None starts the file anew.
      enabled: False makes ``log`` a no-op (non-chief workers).
    """

    def __init__(self, path, hps, keep=None, enabled=True):
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        lines = [json.dumps(hps)]
        if keep is not None and os.path.exists(path):
            with open(path) as f:
                old = f.read().splitlines()
            lines = old[:1] or lines
            for line in old[1:]:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut short: written after the checkpoint anyway
                    continue
                if keep(record):
                    lines.append(line)
        text = "".join(line + "\n" for line in lines).encode()
        write_atomic(path, lambda f: f.write(text))

    def log(self, *records):
        """Appends each record as one JSON line, all in one write."""
        if self.enabled and records:
            text = "".join(json.dumps(r) + "\n" for r in records).encode()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, text)
            finally:
                os.close(fd)


def format_results(values):
    """The original's process_results: {stat: '%.4f' string}."""
    return {name: "{:.4f}".format(float(v)) for name, v in zip(STATS, values)}

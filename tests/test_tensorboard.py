"""TensorBoard reads a run's summaries: scalars and images under stable tags, read with the
EventAccumulator that TensorBoard's own server uses (tags grouped by the plugin that shows them)."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator

from conftest import tiny_digits
from glow_tf import train_lib

MAX_STEPS = 4  # one epoch of the tiny run: a test pass at its end, samples at the end of the run
SCALARS = ("train/loss", "train/bits_x", "train/lr", "train/images_per_sec", "train/nonfinite_steps",
           "test/loss", "test/bits_x")
# One grid per sampling temperature of the original (0, .25, .5, .6, .7, .8, .9, 1), spelled out:
# the tags are what dashboards and scripts look for.
IMAGES = ("samples/temperature_0.0", "samples/temperature_0.25", "samples/temperature_0.5",
          "samples/temperature_0.6", "samples/temperature_0.7", "samples/temperature_0.8",
          "samples/temperature_0.9", "samples/temperature_1.0")


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    """The summaries of a short run, as TensorBoard loads them from LOGDIR/tensorboard."""
    config = tiny_digits(tmp_path_factory.mktemp("run"), max_steps=MAX_STEPS, log_steps=False)
    train_lib.train_and_evaluate(config)
    accumulator = EventAccumulator(f"{config.logdir}/tensorboard", size_guidance={"tensors": 0})
    accumulator.Reload()
    return accumulator


def _values(events, tag):
    """[(step, value)] of a summary tag, values as numpy."""
    return [(event.step, tf.make_ndarray(event.tensor_proto)) for event in events.Tensors(tag)]


def test_scalars_are_on_the_scalars_dashboard(events):
    assert set(SCALARS) <= set(events.PluginTagToContent("scalars"))
    for tag in SCALARS:
        steps, values = zip(*_values(events, tag))
        assert all(np.ndim(v) == 0 and np.isfinite(v) for v in values), (tag, values)
        assert steps[-1] == MAX_STEPS, (tag, steps)
    assert [float(v) for _, v in _values(events, "train/lr")] == [np.float32(0.003)] * MAX_STEPS  # no warm-up
    for tag in ("train/bits_x", "test/bits_x"):
        assert all(0 < v < 16 for _, v in _values(events, tag)), tag  # bits per 8-bit subpixel, an untrained model


def test_sample_grids_are_on_the_images_dashboard(events):
    assert set(events.PluginTagToContent("images")) == set(IMAGES)
    for tag in IMAGES:
        (step, value), = _values(events, tag)
        width, height, png = value
        image = np.asarray(Image.open(io.BytesIO(png)))
        assert step == MAX_STEPS
        assert image.shape == (int(height), int(width), 3) == (160, 160, 3), tag  # 10 x 10 digits of 16 px

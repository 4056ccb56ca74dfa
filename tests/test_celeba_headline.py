"""The headline path: the original README's CelebA-HQ command on tfrecords in the original's
layout, with XLA on, at a size a test can run (64x64, 6 levels, depth 2, one step)."""
import json
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from benchmarks import bench_celeba, celeba_tfrecords
from glow_tf import data


def test_generated_tfrecords_are_the_originals_celeba_layout(tmp_path):
    root = celeba_tfrecords.write_celeba(str(tmp_path), image_size=64, n_train=8, n_validation=4)
    assert sorted(os.listdir(os.path.join(root, "train"))) == [
        f"train-r06-s-{i:04d}-of-0004.tfrecords" for i in range(4)]
    datasets = data.make_datasets(data.DataConfig(problem="celeba", data_dir=root, image_size=64, n_train=8, global_batch_train=8,
                                                  global_batch_test=4, init_batch=8))
    assert datasets.info.image_size == 64
    test_images = np.concatenate([x.numpy() for x, _ in datasets.test])
    expected = celeba_tfrecords.smooth_images(12, 64)[8:]
    np.testing.assert_array_equal(np.sort(test_images.reshape(4, -1), axis=0), np.sort(expected.reshape(4, -1), axis=0))


def test_celeba_command_trains_one_step_tests_samples_and_exports(tmp_path):
    data_dir = celeba_tfrecords.write_celeba(str(tmp_path / "data"), image_size=64)
    logdir = str(tmp_path / "logs")
    result = bench_celeba.run(data_dir, logdir, quick=True, max_steps=1)
    assert result["returncode"] == 0, "\n".join(line for *_, line in result["lines"][-30:])
    assert result["first_step_seconds"] is not None and result["kernel_peak_rss_mib"] > 0
    # Every progress line carries the process's RSS then and its peak so far, both from the same
    # sampler (rounded to MiB); the sampled peaks never exceed the sampler's own final peak. The
    # kernel's high-water mark (ru_maxrss) is another accounting, bounded by neither (bench_celeba.run).
    peaks = [peak for _, _, peak, _ in result["lines"]]
    assert result["lines"] and all(0 < rss <= peak for _, rss, peak, _ in result["lines"])
    assert peaks == sorted(peaks) and peaks[-1] <= round(result["sampled_peak_rss_mib"])
    assert result["peak_rss_mib"] == max(result["kernel_peak_rss_mib"], result["sampled_peak_rss_mib"])
    with open(os.path.join(logdir, "train_steps.txt")) as f:
        steps = [json.loads(line) for line in f.readlines()[1:]]
    assert [s["step"] for s in steps] == [0] and steps[0]["ok"] and np.isfinite(steps[0]["bits_x"])
    with open(os.path.join(logdir, "train.txt")) as f:
        hps = json.loads(f.readline())
    assert (hps["n_levels"], hps["image_size"], hps["n_bits_x"], hps["learntop"]) == (6, 64, 5, True)
    with open(os.path.join(logdir, "test.txt")) as f:
        test = [json.loads(line) for line in f.readlines()[1:]]
    assert test and np.isfinite(float(test[-1]["bits_x"]))  # the end-of-run test pass
    with Image.open(os.path.join(logdir, "epoch_1_sample_7.png")) as grid:  # 10 x 10 images of 64 x 64
        assert grid.size == (640, 640)
    loaded = tf.saved_model.load(os.path.join(logdir, "saved_model"))
    images = loaded.signatures["sample"](temperature=tf.fill([2], 0.5))["image"]
    assert images.shape == (2, 64, 64, 3)

"""sample.py and glow_tf.sampling: grids, interpolation, manipulation, reconstruction, image files."""
import io
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageFont

from conftest import REPO_ROOT, build_model, random_images, tiny_config, write_run
from glow_tf import data, errors, export, sampling

SAMPLE_PY = os.path.join(REPO_ROOT, "sample.py")
# 8x8 RGB, 8 bits: reconstructions must give back the input pixels themselves.
YCOND = tiny_config(image_size=8, flow_permutation=2, flow_coupling=1, learntop=True, ycond=True, n_y=10)
UNCOND = tiny_config(image_size=8, flow_permutation=2, flow_coupling=1, n_bits_x=5)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A SavedModel of a perturbed class-conditional model (non-trivial samples)."""
    model = build_model(YCOND, perturb_scale=0.03)
    return export.export_saved_model(model, tmp_path_factory.mktemp("sample") / "saved_model")


@pytest.fixture(scope="module")
def served():
    """An unconditional 5-bit model served in memory (the checkpoint path of sample.py)."""
    return sampling.ServedGlow.from_model(build_model(UNCOND, perturb_scale=0.03), batch_size=4)


def _quantised(images, n_bits):
    """What a model with n_bits_x sees of uint8 images, as postprocess writes it back."""
    return (images >> (8 - n_bits)) << (8 - n_bits)


def _assert_reconstructs(actual, images, n_bits):
    """Equal to the quantised input; a pixel may be one bin off where float rounding meets a bin edge."""
    diff = np.abs(actual.astype(int) - _quantised(images, n_bits).astype(int))
    assert diff.max() <= 2 ** (8 - n_bits) and (diff == 0).mean() > 0.99, (diff.max(), (diff == 0).mean())


def _run_sample_py(*args, cwd):
    return subprocess.run([sys.executable, SAMPLE_PY, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def _write_png(path, image):
    Image.fromarray(image).save(path)
    return str(path)


def _figure_tiles(figure, rows, cols, size=8):
    """[rows, cols, size, size, 3]: a figure's tiles (a PNG's path or the array), found from its
    bottom-right corner (labels are left and above), scaled back down: every scale-th pixel."""
    figure = np.asarray(Image.open(figure)) if isinstance(figure, (str, os.PathLike)) else figure
    scale, gap, pad = sampling.figure_scale(size), sampling.FIGURE_GAP, sampling.FIGURE_PAD
    step = size * scale + gap
    top, left = figure.shape[0] - pad - rows * step + gap, figure.shape[1] - pad - cols * step + gap
    return np.stack([[figure[top + i * step:top + i * step + size * scale:scale,
                             left + j * step:left + j * step + size * scale:scale] for j in range(cols)]
                     for i in range(rows)])


# ---------------------------------------------------------------------------- sample.py
def test_sweep_figure_has_one_labelled_row_per_temperature_of_the_library_samples(saved_model, tmp_path):
    out = tmp_path / "grid.png"
    result = _run_sample_py("--model", saved_model, "--n", "5", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    figure = np.asarray(Image.open(out))
    rows, step = len(sampling.SWEEP_TEMPERATURES), 8 * sampling.figure_scale(8) + sampling.FIGURE_GAP
    pad, line = sampling.FIGURE_PAD, sampling.FIGURE_FONT_SIZE + sampling.FIGURE_GAP
    assert figure.shape[0] == pad + line + rows * step - sampling.FIGURE_GAP + pad  # a line of class labels
    assert figure.shape[1] > 2 * pad + 5 * step  # and room for the temperatures on the left
    assert (figure[:, :pad] == 255).all() and (figure[:, pad:pad + 30] < 128).any()  # labels drawn there
    served = sampling.load_model(saved_model)
    expected = sampling.sample_grid(served, 5, sampling.SWEEP_TEMPERATURES)  # sample.py's seed, 0
    np.testing.assert_array_equal(_figure_tiles(out, rows, 5), expected)
    assert expected.std() > 10 and not np.array_equal(expected[0], expected[-1])  # temperature 0 and 1 differ


def test_interpolate_with_space_separated_images(saved_model, tmp_path):
    a, b = random_images(YCOND, 2, seed=3)
    out = tmp_path / "lerp.png"
    result = _run_sample_py("--model", saved_model, "--interpolate", _write_png(tmp_path / "a.png", a),
                            _write_png(tmp_path / "b.png", b), "--steps", "4", "--y", "1", "--out", str(out),
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    row = _figure_tiles(out, 1, 4)[0]  # [steps, H, W, C]
    _assert_reconstructs(row[0], a, 8)
    _assert_reconstructs(row[-1], b, 8)


def test_manipulate_from_digits_with_alpha_zero_reconstructs(saved_model, tmp_path):
    image = random_images(YCOND, 1, seed=4)[0]
    out, cache = tmp_path / "edit.png", tmp_path / "directions.npz"
    args = ("--model", saved_model, "--manipulate", _write_png(tmp_path / "in.png", image), "--attribute",
            "class 2", "--alpha", "0,4", "--y", "0", "--problem", "digits", "--attribute_images", "60",
            "--attribute_cache", str(cache), "--out", str(out))
    result = _run_sample_py(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    row = _figure_tiles(out, 1, 2)[0]  # [alphas, H, W, C]
    _assert_reconstructs(row[0], image, 8)
    assert np.abs(row[1].astype(int) - image.astype(int)).mean() > 5  # alpha 4 moves the image
    with np.load(cache) as cached:
        assert cached["means"].shape == (10, 8 * 8 * 3) and cached["counts"].sum() == 60  # digits: 10 classes


def test_bad_image_paths_give_clear_errors(saved_model, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    result = _run_sample_py("--model", saved_model, "--reconstruct", str(bad), "--y", "0", "--out",
                            str(tmp_path / "r.png"), cwd=tmp_path)
    assert result.returncode != 0
    assert str(bad) in result.stderr and "expected an image file" in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and not os.path.exists(tmp_path / "r.png")
    with pytest.raises(data.DataError, match="missing.png.*no such file"):
        sampling.read_image(tmp_path / "missing.png", (8, 8, 3))
    with pytest.raises(data.DataError, match=r"expected an image file PIL can read, got: \[Errno 21\] Is a directory"):
        sampling.read_image(tmp_path, (8, 8, 3))


def test_checkpoint_directory_as_model(tmp_path):
    write_run(build_model(UNCOND, perturb_scale=0.03), str(tmp_path / "run"))
    out = tmp_path / "t05.png"
    result = _run_sample_py("--model", str(tmp_path / "run" / "checkpoints"), "--temperature", "0.5", "--n", "4",
                            "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    tiles = _figure_tiles(out, 2, 2)  # 4 samples: 2 columns, as the original's square-ish grid
    assert tiles.std() > 10 and not np.array_equal(tiles[0, 0], tiles[1, 1])


def test_a_path_that_holds_no_glow_tf_model_is_a_clear_error(tmp_path):
    with pytest.raises(errors.ModelError, match="SavedModel directory.*missing path"):
        sampling.load_model(tmp_path / "nothing")
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "saved_model.pb").write_bytes(b"not a protocol buffer")
    with pytest.raises(errors.ModelError, match=r"^model: expected a SavedModel written by glow_tf .*, got "
                                                r"'.*damaged', which cannot be loaded \(Cannot parse file"):
        sampling.load_model(tmp_path / "damaged")

    class NotGlow(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def double(self, x):
            return 2 * x

    tf.saved_model.save(NotGlow(), str(tmp_path / "other"))
    with pytest.raises(errors.ModelError, match=r"got '.*other', a SavedModel without config_json, reseed, "
                                                r"model_variables, signature 'encode', signature 'decode'"):
        sampling.load_model(tmp_path / "other")
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(errors.CheckpointError, match=r"got '.*notes.txt', a file that is not a checkpoint"):
        sampling.load_model(tmp_path / "notes.txt")
    result = _run_sample_py("--model", str(tmp_path / "damaged"), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"sample.py: error: model: expected a SavedModel written by glow_tf (glow-export, or a training run's "
        f"saved_model/), got '{tmp_path / 'damaged'}', which cannot be loaded (Cannot parse file")


# ---------------------------------------------------------------------------- library
def test_single_temperature_grid_and_reseeding(served, tmp_path):
    cold = sampling.sample_grid(served, 3, [0.0])[0]  # [3, H, W, C]
    assert all(np.array_equal(cold[0], image) for image in cold)  # t = 0: every eps is 0
    warm = sampling.sample_grid(served, 5, [1.0], seed=1)
    np.testing.assert_array_equal(warm, sampling.sample_grid(served, 5, [1.0], seed=1))
    assert not np.array_equal(warm, sampling.sample_grid(served, 5, [1.0], seed=2))


def test_figure_tiles_are_the_upscaled_images_apart_with_room_for_labels():
    images = random_images(UNCOND, 5, seed=8)  # [5, 8, 8, 3]
    assert (sampling.figure_scale(8), sampling.figure_scale(16), sampling.figure_scale(256)) == (8, 4, 1)
    tile, gap, pad, font_size = 64, sampling.FIGURE_GAP, sampling.FIGURE_PAD, sampling.FIGURE_FONT_SIZE
    bare = sampling.figure(images, 3)  # 2 rows, the last one partial
    assert bare.shape == (pad + 2 * tile + gap + pad, pad + 3 * tile + 2 * gap + pad, 3)
    labelled = sampling.figure(images, 3, row_labels=["T = 0", "T = 0.25"], col_labels=["a", "b", "c"], title="t")
    label_width = ImageFont.load_default(size=font_size).getlength("T = 0.25")
    assert labelled.shape[1] - bare.shape[1] == int(np.ceil(label_width)) + pad  # the widest row label
    assert labelled.shape[0] - bare.shape[0] == 2 * (font_size + gap)  # the title and the column labels
    upscaled = images.repeat(8, axis=1).repeat(8, axis=2)
    for figure in (bare, labelled):
        top, left = figure.shape[0] - pad - 2 * tile - gap, figure.shape[1] - pad - 3 * tile - 2 * gap
        for index, image in enumerate(upscaled):
            i, j = divmod(index, 3)
            y, x = top + i * (tile + gap), left + j * (tile + gap)
            np.testing.assert_array_equal(figure[y:y + tile, x:x + tile], image)
            assert (figure[y:y + tile, x + tile:x + tile + gap] == 255).all()  # the gap right of it: white
        assert (figure[top + tile + gap:, left + 2 * (tile + gap):] == 255).all()  # the missing sixth tile
    assert (bare[:pad] == 255).all() and (bare[:, :pad] == 255).all()  # no labels: only the pad
    assert (labelled[:top, left:] < 128).any() and (labelled[top:, :left] < 128).any()  # labels: drawn
    gray = sampling.figure(images[:, :, :, :1], 3)
    np.testing.assert_array_equal(_figure_tiles(gray, 2, 3)[0], np.repeat(images[:3, :, :, :1], 3, axis=3))
    with pytest.raises(ValueError, match="expected 2 row_labels or none, got 1"):
        sampling.figure(images, 3, row_labels=["T = 0"])


def test_reconstruct_and_manipulate_with_alpha_zero(served):
    images = random_images(UNCOND, 3, seed=5)
    _assert_reconstructs(sampling.reconstruct(served, images), images, 5)
    direction = np.random.RandomState(0).standard_normal(8 * 8 * 3).astype(np.float32)
    row = sampling.manipulate(served, images[0], direction, [0.0, 3.0])
    _assert_reconstructs(row[0], images[0], 5)
    assert not np.array_equal(row[1], row[0])
    with pytest.raises(ValueError, match=r"expected shape \[192\]"):
        sampling.manipulate(served, images[0], direction[:5], [0.0])


def test_flatten_is_the_demos_layout_and_unflatten_inverts_it(served):
    eps = [np.random.RandomState(level).standard_normal((2,) + shape).astype(np.float32)
           for level, shape in enumerate(UNCOND.eps_shapes())]
    flat = served.flatten(eps)
    np.testing.assert_array_equal(flat[1, :eps[0][1].size], eps[0][1].ravel())  # level 0 first, NHWC
    for restored, original in zip(served.unflatten(flat), eps):
        np.testing.assert_array_equal(restored, original)


def test_attribute_direction_is_class_mean_minus_mean_of_the_rest(served):
    latents = {0: [1.0, 3.0], 1: [10.0], 2: [20.0, 22.0, 24.0]}  # one number per image
    means = np.array([[np.mean(v)] for v in latents.values()])
    counts = np.array([len(v) for v in latents.values()])
    np.testing.assert_allclose(sampling.attribute_direction(means, counts, 2), [22.0 - np.mean([1, 3, 10])])
    with pytest.raises(ValueError, match="with and without"):
        sampling.attribute_direction(means, np.array([0, 1, 3]), 0)
    assert sampling.parse_attribute("class 7") == 7 and sampling.parse_attribute(" 2") == 2
    with pytest.raises(ValueError, match="class number"):
        sampling.parse_attribute("Smiling")


def test_class_means_are_cached_per_model_and_data(served, tmp_path):
    images = random_images(UNCOND, 6, seed=6)
    labels = np.array([0, 1, 1, 2, 2, 2], np.int32)
    served.reseed(0)
    means, counts = sampling.class_mean_latents(served, [(images[:4], labels[:4]), (images[4:], labels[4:])], 3)
    np.testing.assert_array_equal(counts, [1, 2, 3])
    served.reseed(0)  # the same dequantisation draws, batch by batch, as class_mean_latents saw
    z = np.concatenate([served.flatten(served.encode(images[:4])), served.flatten(served.encode(images[4:]))])
    np.testing.assert_allclose(means[2], z[3:].mean(0), atol=1e-4)

    cache, key = tmp_path / "means.npz", {"problem": "p", "data_dir": "d", "images": 6}
    first = sampling.cached_class_means(served, cache, key, lambda: (means, counts))
    again = sampling.cached_class_means(served, cache, key, lambda: pytest.fail("recomputed a cached result"))
    np.testing.assert_array_equal(first[0], again[0])
    other = sampling.cached_class_means(served, cache, dict(key, images=5), lambda: (means + 1, counts))
    np.testing.assert_array_equal(other[0], means + 1)


def test_labels_follow_the_model(served):
    with pytest.raises(ValueError, match="not class-conditional"):
        served.labels(1, 2)
    ycond = sampling.ServedGlow.from_model(build_model(tiny_config(ycond=True, n_y=3)))
    with pytest.raises(ValueError, match="expected a class"):
        ycond.labels(None, 2)
    with pytest.raises(ValueError, match=r"labels in \[0, 3\)"):
        ycond.labels(3, 2)
    np.testing.assert_array_equal(ycond.labels(2, 3), [2, 2, 2])


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal, as tqdm asks before drawing."""

    def isatty(self):
        return True


def test_a_long_call_shows_a_progress_bar_when_asked(served, monkeypatch):
    monkeypatch.setattr("glow_tf.progress.DELAY", 0.0)  # every call counts as long
    shown = []
    for progress in (False, True):
        monkeypatch.setattr(served, "progress", progress)
        monkeypatch.setattr(sys, "stderr", _Terminal())
        served.sample(np.full([10], 0.5, np.float32))  # 3 batches of 4
        shown.append(sys.stderr.getvalue())
    off, on = shown
    assert off == "" and on.startswith("\rsample:") and "/10 [" in on, shown  # a bar of the 10 images


# ---------------------------------------------------------------------------- image files
def test_read_image_converts_channels_and_resizes_with_a_warning(tmp_path, caplog):
    rgb = random_images(UNCOND, 1, seed=7)[0]
    np.testing.assert_array_equal(sampling.read_image(_write_png(tmp_path / "rgb.png", rgb), (8, 8, 3)), rgb)
    gray = rgb[..., 0]
    read_gray = sampling.read_image(_write_png(tmp_path / "gray.png", gray), (8, 8, 3))
    np.testing.assert_array_equal(read_gray, np.repeat(gray[..., None], 3, axis=2))
    rgba = np.concatenate([rgb, np.full((8, 8, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(sampling.read_image(_write_png(tmp_path / "rgba.png", rgba), (8, 8, 3)), rgb)

    # 16x24: the centre 16x16 square one colour, the 4-pixel sides others; cropped, then resized.
    wide = np.zeros((16, 24, 3), np.uint8)
    wide[:, :4], wide[:, 4:20], wide[:, 20:] = (255, 0, 0), (10, 200, 30), (0, 0, 255)
    with caplog.at_level(logging.WARNING):
        resized = sampling.read_image(_write_png(tmp_path / "wide.png", wide), (8, 8, 3))
    assert "wide.png' is 24x16" in caplog.text
    np.testing.assert_array_equal(resized, np.broadcast_to(np.uint8([10, 200, 30]), (8, 8, 3)))



def test_read_image_refuses_more_than_8_bits_per_channel(tmp_path):
    """A 16-bit PNG converted to 8 bits would be clipped to 255 (white): refused, naming its mode."""
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(path)
    with pytest.raises(data.DataError, match=r"deep.png'.*expected 8 bits per channel .*got mode I;16"):
        sampling.read_image(path, (8, 8, 3))

def test_to_raster_tiles_in_row_major_order_like_the_original():
    colours = np.arange(1, 7, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 3, 1), np.uint8)  # [6, 2, 3, 1]
    raster = sampling.to_raster(colours, cols=4)
    assert raster.shape == (2 * 2, 4 * 3, 3)
    for index in range(6):
        i, j = divmod(index, 4)  # the original: result[i, j] = x[width * i + j]
        assert (raster[2 * i:2 * i + 2, 3 * j:3 * j + 3] == index + 1).all()
    assert (raster[2:, 6:] == 0).all()  # the partial last row is padded with black

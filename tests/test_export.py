"""SavedModel export: signatures, numbers equal to the live model, loading without glow_tf."""
import errno
import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from conftest import (REPO_ROOT, build_model, perturb, random_images, random_labels, tiny_config, tiny_digits,
                      write_run)
from glow_tf import checkpoints, errors, export, optim, train_lib

SEED = 7
BATCHES = (1, 37)
# A class-conditional model with a classifier (y input, y_logits output) and an unconditional
# one, 8x8 images, both with perturbed weights so every layer matters.
CONFIGS = {
    "ycond": tiny_config(image_size=8, flow_permutation=2, flow_coupling=1, learntop=True, ycond=True, n_y=3,
                         weight_y=0.01),
    "uncond": tiny_config(image_size=8, flow_permutation=1, flow_coupling=0, n_bits_x=5),
}

# Runs in a fresh interpreter where glow_tf cannot be imported (None in sys.modules makes every
# import of it fail, installed or not): plain TensorFlow only.
LOADER = textwrap.dedent("""
    import json, sys
    sys.modules["glow_tf"] = None
    import numpy as np
    import tensorflow as tf
    saved_model, inputs_path, outputs_path, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    inputs = dict(np.load(inputs_path))
    loaded = tf.saved_model.load(saved_model)
    config = json.loads(loaded.config_json.numpy())
    labels = lambda n: {"y": inputs[f"y_{n}"]} if config["model"]["ycond"] else {}
    out = {}
    for n in (1, 37):
        x = inputs[f"x_{n}"]
        for name in ("encode", "bits_per_dim"):
            loaded.reseed(tf.constant(seed, tf.int64))
            for key, value in loaded.signatures[name](x=x, **labels(n)).items():
                out[f"{name}_{key}_{n}"] = value.numpy()
        eps = {key[:-len(f"_{n}")]: v for key, v in inputs.items() if key.startswith("eps_") and key.endswith(f"_{n}")}
        for key, value in loaded.signatures["decode"](**eps, **labels(n)).items():
            out[f"decode_{key}_{n}"] = value.numpy()
        for name in ("sample", "serving_default"):
            loaded.reseed(tf.constant(seed, tf.int64))
            out[f"{name}_{n}"] = loaded.signatures[name](temperature=inputs[f"t_{n}"], **labels(n))["image"].numpy()
        out[f"log_prob_{n}"] = loaded.log_prob(inputs[f"xc_{n}"], **labels(n)).numpy()
        xc = tf.constant(inputs[f"xc_{n}"])
        with tf.GradientTape() as tape:  # TensorFlow's own gradients through the SavedModel
            tape.watch(xc)
            log_prob = loaded.log_prob(xc, **labels(n))
        out[f"grad_x_{n}"], out[f"grad_first_variable_{n}"] = (
            g.numpy() for g in tape.gradient(log_prob, [xc, loaded.model_variables[0]]))
        out[f"tfp_sample_{n}"] = loaded.sample(n, **labels(n)).numpy()
        out[f"tfp_sample_cold_{n}"] = loaded.sample(n, **labels(n), temperature=0.0).numpy()
    np.savez(outputs_path, config=json.dumps(config), **out)
""")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{name: (live model, SavedModel path)} for both CONFIGS."""
    root = tmp_path_factory.mktemp("export")
    result = {}
    for name, config in CONFIGS.items():
        model = build_model(config, perturb_scale=0.03)
        result[name] = model, export.export_saved_model(model, root / name, seed=SEED)
    return result


def _live_inputs(model, n):
    config = model.config
    rng = np.random.RandomState(n)
    inputs = {f"x_{n}": random_images(config, n, seed=n),
              f"t_{n}": rng.uniform(0.0, 1.0, n).astype(np.float32),
              f"xc_{n}": rng.uniform(-0.5, 0.5, (n,) + config.image_shape).astype(np.float32)}
    inputs.update({f"eps_{level}_{n}": rng.standard_normal((n,) + shape).astype(np.float32)
                   for level, shape in enumerate(config.eps_shapes())})
    if config.ycond:
        inputs[f"y_{n}"] = random_labels(config, n, seed=n)
    return inputs


def _assert_images_close(actual, expected, n_bins):
    """Equal up to float rounding at a bin edge: at most one bin apart, and almost all equal."""
    diff = np.abs(actual.astype(int) - expected.astype(int))
    assert diff.max() <= 256 // n_bins and (diff == 0).mean() > 0.99, (diff.max(), (diff == 0).mean())


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_saved_model_without_glow_tf_gives_the_live_models_numbers(exported, tmp_path, name):
    model, path = exported[name]
    config = model.config
    inputs = {}
    for n in BATCHES:
        inputs.update(_live_inputs(model, n))
    np.savez(tmp_path / "inputs.npz", **inputs)
    script = tmp_path / "load.py"
    script.write_text(LOADER)
    result = subprocess.run([sys.executable, str(script), path, str(tmp_path / "inputs.npz"),
                             str(tmp_path / "outputs.npz"), str(SEED)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "unsaved custom gradients" not in result.stderr  # absl's warning when a SavedModel holds gradient overrides
    out = np.load(tmp_path / "outputs.npz")
    assert json.loads(str(out["config"]))["model"] == config.to_dict()

    for n in BATCHES:
        x = inputs[f"x_{n}"]
        y = inputs.get(f"y_{n}")
        # The documented noise: the first draw after reseed(SEED).
        noise = tf.random.Generator.from_seed(SEED).uniform(x.shape, 0.0, 1.0 / config.n_bins)
        continuous = model.preprocess(x, noise)
        for level, eps in enumerate(model.encode(continuous, y)):
            np.testing.assert_allclose(out[f"encode_eps_{level}_{n}"], eps, atol=1e-5)
        bits = model.bits_per_dim(x, y, noise)
        np.testing.assert_allclose(out[f"encode_bits_per_dim_{n}"], bits, atol=1e-5)
        np.testing.assert_allclose(out[f"bits_per_dim_bits_per_dim_{n}"], bits, atol=1e-5)
        if config.has_classifier:
            np.testing.assert_allclose(out[f"encode_y_logits_{n}"], model.y_logits(continuous), atol=1e-5)
        else:
            assert f"encode_y_logits_{n}" not in out

        eps_in = [inputs[f"eps_{level}_{n}"] for level in range(config.n_levels)]
        decoded = model.decode(eps_in, y)
        np.testing.assert_allclose(out[f"decode_x_{n}"], decoded, atol=1e-5)
        _assert_images_close(out[f"decode_image_{n}"], model.postprocess(decoded).numpy(), config.n_bins)

        generator = tf.random.Generator.from_seed(SEED)
        t = inputs[f"t_{n}"].reshape(-1, 1, 1, 1)
        sample_eps = [generator.normal((n,) + shape) * t for shape in config.eps_shapes()]
        expected_sample = model.postprocess(model.decode(sample_eps, y)).numpy()
        _assert_images_close(out[f"sample_{n}"], expected_sample, config.n_bins)
        np.testing.assert_array_equal(out[f"serving_default_{n}"], out[f"sample_{n}"])

        np.testing.assert_allclose(out[f"log_prob_{n}"], model.log_prob(inputs[f"xc_{n}"], y), rtol=1e-5)
        xc = tf.constant(inputs[f"xc_{n}"])
        with tf.GradientTape() as tape:
            tape.watch(xc)
            log_prob = model.log_prob(xc, y)
        grad_x, grad_variable = tape.gradient(log_prob, [xc, model.variables[0]])
        np.testing.assert_allclose(out[f"grad_x_{n}"], grad_x, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(out[f"grad_first_variable_{n}"], grad_variable, rtol=1e-4, atol=1e-3)
        cold = model.postprocess(model.decode([np.zeros((n,) + s, np.float32) for s in config.eps_shapes()], y))
        _assert_images_close(out[f"tfp_sample_cold_{n}"], cold.numpy(), config.n_bins)
        assert out[f"tfp_sample_{n}"].shape == (n,) + config.image_shape
        assert out[f"tfp_sample_{n}"].dtype == np.uint8


def _signature_blocks(text):
    """{signature name: (input names, output names)} from `saved_model_cli show --all`."""
    blocks = {}
    for match in re.finditer(r"signature_def\['(\w+)'\]:(.*?)(?=signature_def\[|\Z)", text, re.S):
        body = match.group(2)
        blocks[match.group(1)] = (set(re.findall(r"inputs\['(\w+)'\]", body)),
                                  set(re.findall(r"outputs\['(\w+)'\]", body)))
    return blocks


def test_saved_model_cli_lists_the_signatures(exported):
    _, path = exported["ycond"]
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run([cli, "show", "--all", "--dir", path], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    blocks = _signature_blocks(result.stdout)
    assert blocks["encode"] == ({"x", "y"}, {"eps_0", "eps_1", "bits_per_dim", "y_logits"})
    assert blocks["decode"] == ({"eps_0", "eps_1", "y"}, {"image", "x"})
    assert blocks["sample"] == ({"temperature", "y"}, {"image"})
    assert blocks["serving_default"] == blocks["sample"]
    assert blocks["bits_per_dim"] == ({"x", "y"}, {"bits_per_dim"})
    assert re.search(r"inputs\['x'\] tensor_info:\s+dtype: DT_UINT8\s+shape: \(-1, -1, -1, -1\)", result.stdout)
    assert re.search(r"inputs\['temperature'\] tensor_info:\s+dtype: DT_FLOAT\s+shape: \(-1\)", result.stdout)


def test_unconditional_signatures_have_no_labels_or_logits(exported):
    _, path = exported["uncond"]
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"encode", "decode", "sample", "bits_per_dim", "serving_default"}
    encode = loaded.signatures["encode"]
    assert set(encode.structured_input_signature[1]) == {"x"}
    assert set(encode.structured_outputs) == {"eps_0", "eps_1", "bits_per_dim"}


def test_labels_and_shapes_are_checked_at_run_time_naming_what_was_expected(exported):
    _, path = exported["ycond"]
    loaded = tf.saved_model.load(path)  # kept: its variables die with it
    sample = loaded.signatures["sample"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"expected labels in \[0, 3\)"):
        sample(temperature=tf.ones([2]), y=tf.constant([0, 3]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one label per example"):
        sample(temperature=tf.ones([2]), y=tf.constant([0]))
    y = tf.constant([0, 1])
    for call, message in (
            (lambda: loaded.signatures["encode"](x=tf.zeros([2, 16, 16, 3], tf.uint8), y=y),
             r"\[x: expected shape \[N, 8, 8, 3\], got\] \[2 16 16 3\]"),
            (lambda: loaded.signatures["bits_per_dim"](x=tf.zeros([2, 8, 8, 1], tf.uint8), y=y),
             r"\[x: expected shape \[N, 8, 8, 3\], got\] \[2 8 8 1\]"),
            (lambda: loaded.signatures["decode"](eps_0=tf.zeros([2, 4, 4, 6]), eps_1=tf.zeros([2, 4, 4, 6]), y=y),
             r"\[eps_1: expected shape \[N, 2, 2, 24\], got\] \[2 4 4 6\]"),
            (lambda: loaded.log_prob(tf.zeros([2, 16, 16, 3]), y=y), r"\[x: expected shape \[N, 8, 8, 3\], got\]")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            call()
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a uint8 tensor but is a float tensor"):
        loaded.signatures["encode"](x=tf.zeros([2, 8, 8, 3], tf.float32), y=y)  # TensorFlow's own check


def test_existing_target_needs_overwrite_and_is_replaced_whole(exported, tmp_path):
    model, _ = exported["uncond"]
    target = tmp_path / "model"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    with pytest.raises(ValueError, match="existing"):
        export.export_saved_model(model, target)
    assert os.listdir(target) == ["stale.txt"]
    export.export_saved_model(model, target, overwrite=True)
    assert os.path.isfile(target / "saved_model.pb") and not os.path.exists(target / "stale.txt")
    assert os.listdir(tmp_path) == ["model"]  # no staging or old copies left beside it


@pytest.mark.parametrize("error, raised, message", [
    (RuntimeError("disk full"), RuntimeError, "disk full"),
    (OSError(errno.ENOSPC, "No space left on device"), errors.WriteError,
     r"^could not write the SavedModel .*model \(No space left on device; .* free on its disk"),
])
def test_failed_save_leaves_nothing(exported, tmp_path, monkeypatch, error, raised, message):
    model, _ = exported["uncond"]

    def crash(module, path, signatures=None, options=None):
        open(os.path.join(path, "saved_model.pb"), "w").close()
        raise error

    monkeypatch.setattr(tf.saved_model, "save", crash)
    with pytest.raises(raised, match=message):
        export.export_saved_model(model, tmp_path / "model")
    assert os.listdir(tmp_path) == []


def test_uninitialised_model_is_rejected(tmp_path):
    import glow_tf
    with pytest.raises(ValueError, match="initialised"):
        export.export_saved_model(glow_tf.Glow(CONFIGS["uncond"]), tmp_path / "model")
    with pytest.raises(ValueError, match="expected a glow_tf.Glow"):
        export.ServingModule(object())


def test_cli_exports_an_openai_checkpoint_with_its_numbers(golden_dir, tmp_path):
    fixture = os.path.join(golden_dir, "affine_1x1_ycond_5bit")
    out = tmp_path / "model"
    command = [sys.executable, "-m", "glow_tf.cli.export", "--openai_checkpoint", os.path.join(fixture, "model.ckpt"),
               "--hparams", os.path.join(fixture, "hparams.json"), "--nouse_ema", "--out", str(out)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    size = re.search(r"([\d.]+) MiB on disk", result.stdout)
    assert size and abs(float(size.group(1)) - export.directory_size(out) / 2**20) < 0.1, result.stdout

    expected = np.load(os.path.join(fixture, "expected.npz"))
    loaded = tf.saved_model.load(str(out))
    log_prob = loaded.log_prob(expected["x_preprocessed"], y=expected["y"]).numpy()
    n_dims, n_bins = np.prod(expected["x"].shape[1:]), 32
    np.testing.assert_allclose(log_prob - np.log(n_bins) * n_dims, expected["objective"], rtol=1e-5)
    decoded = loaded.signatures["decode"](eps_0=expected["decode_input_eps_0"], eps_1=expected["decode_input_eps_1"],
                                          y=expected["y"])
    np.testing.assert_allclose(decoded["x"], expected["decode_output"], atol=1e-4)

    again = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "existing" in again.stderr and "Traceback" not in again.stderr


def _run_on_a_terminal(command, cwd):
    """(exit status, what stderr showed) of ``command`` with stderr on a 120-column pseudo-terminal, as in
    a shell (tqdm draws a bar as wide as the terminal: nothing on one of 0 columns)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the program has closed its end
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    return process.wait(timeout=300), shown.decode(errors="replace")


def test_cli_names_its_stages_on_a_terminal(tmp_path):
    write_run(build_model(CONFIGS["uncond"]), str(tmp_path / "run"))
    status, shown = _run_on_a_terminal([sys.executable, "-m", "glow_tf.cli.export", "--checkpoint", str(tmp_path / "run"),
                                        "--out", str(tmp_path / "model")], cwd=REPO_ROOT)
    assert status == 0, shown[-3000:]
    assert "restoring the checkpoint (stage 1/2," in shown, shown[-3000:]
    assert "tracing and writing the SavedModel (stage 2/2," in shown, shown[-3000:]


def test_export_of_a_training_run_uses_the_polyak_average_when_asked(tmp_path):
    model = build_model(CONFIGS["ycond"], perturb_scale=0.03)
    ema = optim.PolyakAverage(model.trainable_variables, decay=0.5)  # the shadows: the weights now
    x = model.preprocess(random_images(model.config, 4), np.zeros((4,) + model.config.image_shape, np.float32))
    y = random_labels(model.config, 4)
    averaged = model.log_prob(x, y).numpy()
    perturb(model.trainable_variables, 0.03, seed=1)  # the raw weights move on
    raw = model.log_prob(x, y).numpy()
    assert np.abs(raw - averaged).max() > 1e-2
    write_run(model, str(tmp_path / "run"), ema)

    loaded = tf.saved_model.load(export.export_saved_model(tmp_path / "run", tmp_path / "model", use_ema=True))
    np.testing.assert_allclose(loaded.log_prob(x, y), averaged, rtol=1e-5)


def test_a_training_run_ends_by_exporting_the_polyak_average_of_its_last_checkpoint(tmp_path):
    train_lib.train_and_evaluate(tiny_digits(tmp_path, export=True, epochs=2, jit_compile=True))
    averaged = checkpoints.restore_model(str(tmp_path), use_ema=True)
    raw = checkpoints.restore_model(str(tmp_path), use_ema=False)
    x = averaged.preprocess(random_images(averaged.config, 4), np.zeros((4,) + averaged.config.image_shape, np.float32))
    expected = averaged.log_prob(x).numpy()
    assert np.abs(raw.log_prob(x).numpy() - expected).max() > 1e-3  # the averages are not the raw weights
    loaded = tf.saved_model.load(str(tmp_path / "saved_model"))
    np.testing.assert_allclose(loaded.log_prob(x), expected, rtol=1e-5)

"""Mixed precision: only the coupling networks compute in bfloat16; everything that decides
invertibility and the density stays float32; either precision restores the other's checkpoints."""
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import glow_tf
from conftest import build_model, continuous_batch, tiny_config, tiny_digits
from glow_tf import checkpoints, data, export, train_lib
from glow_tf.layers import precision_as
from glow_tf.train_config import TrainConfig

MIXED = "mixed_bfloat16"
# The matmul-like ops that do the arithmetic of a flow step (1x1 conv, coupling network, priors).
HEAVY_OPS = ("Conv2D", "MatMul", "BatchMatMulV2", "Conv2DBackpropInput", "Conv2DBackpropFilter")


def _heavy_ops(function, *args):
    """[(op name, dtype)] of every convolution and matmul of the traced function and its loop bodies."""
    graph_def = function.get_concrete_function(*args).graph.as_graph_def()
    nodes = list(graph_def.node) + [node for f in graph_def.library.function for node in f.node_def]
    return [(node.name, tf.as_dtype(node.attr["T"].type)) for node in nodes if node.op in HEAVY_OPS]


def _is_coupling_network_op(name):
    return any(f"{layer}/" in name for layer in ("l_1", "l_2", "l_last"))


@pytest.mark.parametrize("memory_saving", [False, True])
def test_under_mixed_bfloat16_only_the_coupling_networks_compute_in_bfloat16(memory_saving):
    config = tiny_config(image_size=8, flow_permutation=2, flow_coupling=1, gradient_checkpointing=memory_saving,
                         precision=MIXED)
    model = build_model(config)
    x, _ = continuous_batch(model, 4)

    @tf.function
    def training_terms(x):
        with tf.GradientTape() as tape:
            encoding = model.encode_with_log_det(x)
            loss = -tf.reduce_mean(encoding.log_prob)
        return encoding, loss, tape.gradient(loss, model.trainable_variables)

    ops = _heavy_ops(training_terms, x)
    bfloat16 = [name for name, dtype in ops if dtype == tf.bfloat16]
    float32 = [name for name, dtype in ops if dtype == tf.float32]
    assert bfloat16 and all(_is_coupling_network_op(name) for name in bfloat16), bfloat16
    # The 1x1 convolutions (forward and gradients) and the split priors' convolutions stay float32.
    assert any(not _is_coupling_network_op(name) for name in float32), float32
    encoding, loss, grads = training_terms(x)
    assert encoding.log_det.dtype == loss.dtype == tf.float32 and all(e.dtype == tf.float32 for e in encoding.eps)
    assert {v.dtype for v in model.variables if v.dtype.is_floating} == {tf.float32}
    assert {g.dtype for g in grads} == {tf.float32}
    invconv = model.levels[0].template.permutation
    assert invconv.compute_dtype == "float32" and invconv.log_abs_det().dtype == tf.float32
    network = model.levels[0].template.coupling.f1
    assert network.compute_dtype == "bfloat16" and network.variable_dtype == "float32"
    assert [a.dtype for a in network.activations(tf.zeros([2, 4, 4, 6]))] == [tf.bfloat16, tf.bfloat16, tf.float32]


def test_float32_models_have_no_bfloat16_op():
    model = build_model(tiny_config(image_size=8, precision="float32"))
    x, _ = continuous_batch(model, 4)
    ops = _heavy_ops(tf.function(model.log_prob), x)
    assert ops and tf.bfloat16 not in {dtype for _, dtype in ops}  # float64: the 1x1 conv's log-det


def test_keras_global_policy_and_dtype_argument_set_the_precision():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(MIXED)
    try:
        model = glow_tf.Glow(tiny_config())
        assert model.precision == MIXED and model.compute_dtype == "float32"
        assert model.levels[0].template.coupling.f1.compute_dtype == "bfloat16"
        assert model.levels[0].template.actnorm.compute_dtype == "float32"
        assert glow_tf.Glow(tiny_config(precision="float32")).precision == "float32"
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert glow_tf.Glow(tiny_config()).precision == "float32"
    assert glow_tf.Glow(tiny_config(), dtype=MIXED).precision == MIXED
    with pytest.raises(ValueError, match=r"Glow.dtype: expected a precision .* in \['float32', 'mixed_bfloat16'\], "
                                         r"got 'mixed_float16'"):
        glow_tf.Glow(tiny_config(), dtype="mixed_float16")
    with pytest.raises(ValueError, match="GlowConfig.precision: expected one of"):
        tiny_config(precision="bfloat16")


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """A run trained in mixed_bfloat16 on the digits: 80 steps (the weights move away from their init)."""
    config = tiny_digits(tmp_path_factory.mktemp("mixed"), precision=MIXED, n_levels=3, depth=4, width=32,
                         flow_permutation=2, flow_coupling=1, n_train=1280, epochs_full_valid=100, max_steps=80,
                         steps_per_execution=20)
    train_lib.train_and_evaluate(config)
    return config


def _held_out(config, n=64):
    """(uint8 digits [n, 16, 16, 3] of the held-out split, fixed dequantisation noise)."""
    x = np.concatenate([x.numpy() for x, _ in data.make_datasets(config.data).test])[:n]
    return x, np.random.RandomState(0).uniform(0, 1 / 256, x.shape).astype(np.float32)


# Reconstruction (encode, then decode) of held-out images: (max, mean) abs error bounds. In float32
# it is float32 rounding. In mixed_bfloat16 a coupling's network sees in the inverse the
# float32-rounded reconstruction of its input, and where that falls on the other side of a
# bfloat16 rounding boundary the network's output moves by a bfloat16 ulp (README, "Precision").
RECONSTRUCTION_BOUNDS = {"float32": (1e-5, 1e-6), MIXED: (2e-2, 2e-4)}


@pytest.mark.parametrize("precision", ["float32", MIXED])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_reconstruction_error_is_bounded_in_each_precision(mixed_run, precision, jit_compile):
    model = checkpoints.restore_model(mixed_run.logdir, precision=precision)
    images, noise = _held_out(mixed_run)
    x = model.preprocess(images, noise)
    reconstruct = tf.function(lambda x: model.decode(model.encode(x)), jit_compile=jit_compile)
    error = np.abs(reconstruct(x).numpy() - x.numpy())
    print(f"{precision} jit_compile={jit_compile}: max {error.max():.2e} mean {error.mean():.2e}")
    assert error.max() < RECONSTRUCTION_BOUNDS[precision][0] and error.mean() < RECONSTRUCTION_BOUNDS[precision][1]


def test_evaluating_the_mixed_precision_model_in_float32_changes_bits_per_dim_by_little(mixed_run):
    mixed = checkpoints.restore_model(mixed_run.logdir)
    images, noise = _held_out(mixed_run)
    bits = {"mixed": mixed.bits_per_dim(images, noise=noise).numpy()}
    with precision_as("float32"):
        bits["float32"] = mixed.bits_per_dim(images, noise=noise).numpy()
    reference = checkpoints.restore_model(mixed_run.logdir, precision="float32")
    np.testing.assert_allclose(reference.bits_per_dim(images, noise=noise).numpy(), bits["float32"], rtol=1e-6)
    assert 0 < abs(bits["mixed"].mean() - bits["float32"].mean()) < 0.01, bits


def test_a_checkpoint_written_in_one_precision_resumes_and_restores_in_the_other(mixed_run, tmp_path, capsys):
    logdir = tmp_path / "run"
    shutil.copytree(mixed_run.logdir, logdir)
    capsys.readouterr()
    train_lib.train_and_evaluate(mixed_run.with_flags(logdir=str(logdir), precision="float32", max_steps=84))
    out = capsys.readouterr().out
    assert "Resuming from" in out and "step 80" in out, out
    assert ("Note: the checkpoint was trained with --precision mixed_bfloat16; restored to compute in float32 "
            "(its variables are float32 in every precision)") in out, out
    assert checkpoints.resolve(logdir)[1].endswith("ckpt-84")
    restored = {precision: checkpoints.restore_model(logdir, use_ema=False, precision=precision)
                for precision in ("float32", MIXED)}
    assert [restored[p].precision for p in ("float32", MIXED)] == ["float32", MIXED]
    for a, b in zip(restored["float32"].variables, restored[MIXED].variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)


@pytest.mark.parametrize("precision", ["float32", MIXED])
def test_export_computes_in_its_own_precision_whatever_the_model_trained_in(tmp_path, precision):
    model = build_model(tiny_config(image_size=8, precision=MIXED if precision == "float32" else "float32"))
    module = export.ServingModule(model, precision=precision)
    x, _ = continuous_batch(model, 4)
    ops = _heavy_ops(module.log_prob, x)
    assert (tf.bfloat16 in {dtype for _, dtype in ops}) == (precision == MIXED)
    with precision_as(precision):
        expected = model.log_prob(x).numpy()
    # Eager and traced bfloat16 convolutions round differently where a graph optimizer fuses them.
    np.testing.assert_allclose(module.log_prob(x).numpy(), expected, rtol=1e-6 if precision == "float32" else 1e-2)


def test_mixed_bfloat16_trains_outside_xla_at_the_quality_programs_size(tmp_path):
    """The quality program's model and batch (32x32, 3 levels x depth 8, width 128, batch 64) in
    train.py's default engine for mixed_bfloat16, the TensorFlow graph. At this size Grappler's
    memory optimizer rewrote the flow-step loop's chained log-det adds into a TemporaryVariable
    accumulation, and the first step failed with AlreadyExistsError (layers.base.sum_log_dets)."""
    from benchmarks import precision_quality
    if not os.path.isdir(precision_quality.DEFAULT_MNIST):
        pytest.skip(f"{precision_quality.DEFAULT_MNIST} absent (CI provides ../shared beside the repo)")
    config = TrainConfig.from_flags({**precision_quality.FULL, "data_dir": precision_quality.DEFAULT_MNIST,
                                     "precision": MIXED, "logdir": str(tmp_path), "n_batch_init": 16, "n_test": 64,
                                     "max_steps": 2})
    assert not config.xla
    train_lib.train_and_evaluate(config)
    assert checkpoints.resolve(str(tmp_path))[1].endswith("ckpt-2")  # both steps ran and were saved

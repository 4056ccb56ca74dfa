"""The whole Glow model: invertibility, the objective against an independent Jacobian, the
public contract (preprocess / postprocess / bits_per_dim / sample / y_logits / loss_terms),
dynamic batch and XLA, memory-saving gradients, data-dependent init, and validation."""
import functools
import math

import numpy as np
import pytest
import tensorflow as tf

import glow_tf
from conftest import build_model, continuous_batch, jacobian_log_det, random_images, random_labels, tiny_config
from glow_tf.layers import reversible
from glow_tf.layers import ActNorm
from glow_tf.layers.nn import ConvActNorm

PERMUTATIONS = [0, 1, 2, 3]
COUPLINGS = [0, 1]


@functools.lru_cache(maxsize=None)
def cached_model(config):
    """Initialised + perturbed model per config, shared by tests that only read it."""
    return build_model(config, perturb_scale=0.05, seed=5)


def _gaussian_log_prob(eps_list):
    return sum(-0.5 * np.sum(np.log(2 * np.pi) + np.square(np.asarray(e, np.float64)), axis=(1, 2, 3))
               for e in eps_list)


# ----------------------------------------------------------------------- invertibility
@pytest.mark.parametrize("priors", [(False, False), (True, True)], ids=["plain", "learntop_ycond"])
@pytest.mark.parametrize("coupling", COUPLINGS)
@pytest.mark.parametrize("permutation", PERMUTATIONS)
def test_round_trip_x_eps_x(permutation, coupling, priors):
    learntop, ycond = priors
    model = cached_model(tiny_config(flow_permutation=permutation, flow_coupling=coupling,
                                     learntop=learntop, ycond=ycond))
    x, y = continuous_batch(model, 3)
    eps = model.encode(x, y)
    assert [tuple(e.shape) for e in eps] == [(3,) + s for s in model.config.eps_shapes()]
    np.testing.assert_allclose(model.decode(eps, y), x, atol=2e-5)
    # A random latent decodes to something that encodes back to it. Temperature 0.5, as for
    # samples: at full scale a perturbed, untrained affine flow can amplify a draw past float32.
    rng = np.random.RandomState(9)
    eps = [0.5 * rng.standard_normal(e.shape).astype(np.float32) for e in eps]
    for got, want in zip(model.encode(model.decode(eps, y), y), eps):
        np.testing.assert_allclose(got, want, atol=2e-4)


# --------------------------------------------- the objective, against the batch Jacobian
JACOBIAN_CONFIGS = (
    [dict(flow_permutation=p, flow_coupling=c, learntop=True, ycond=True) for p in PERMUTATIONS for c in COUPLINGS]
    + [dict(flow_permutation=2, flow_coupling=1),
       dict(n_channels=1, n_levels=1, flow_permutation=2, flow_coupling=1, learntop=True),
       dict(n_channels=1, n_levels=2, flow_permutation=1, flow_coupling=1, ycond=True),
       dict(image_size=8, n_channels=1, n_levels=3, depth=1, flow_permutation=3, flow_coupling=1, learntop=True)])


@pytest.mark.parametrize("changes", JACOBIAN_CONFIGS,
                         ids=lambda c: "-".join(f"{k}{int(v)}" for k, v in sorted(c.items())))
def test_log_prob_is_gaussian_eps_plus_jacobian_log_det(changes):
    """log p(x) = sum_levels log N(eps_i; 0, I) + log|det d(eps) / dx|, the Jacobian computed
    by autodiff of the flattened encoder: independent of the model's log-det bookkeeping."""
    model = cached_model(tiny_config(**changes))
    x, y = continuous_batch(model, 2, seed=1)
    eps = model.encode(x, y)
    expected = _gaussian_log_prob(eps) + jacobian_log_det(lambda t: model.encode(t, y), x)
    got = model.log_prob(x, y).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-3)
    # Not trivially the Gaussian term alone.
    assert np.all(np.abs(got - _gaussian_log_prob(eps)) > 0.1)


def test_bits_per_dim_formula():
    model = cached_model(tiny_config(flow_permutation=2, flow_coupling=1, n_bits_x=5, learntop=True))
    x = random_images(model.config, 3, seed=4)
    noise = np.random.RandomState(5).uniform(0, 1 / 32, x.shape).astype(np.float32)
    log_prob = model.log_prob(model.preprocess(x, noise)).numpy().astype(np.float64)
    d = 4 * 4 * 3
    expected = -(log_prob - math.log(32) * d) / (math.log(2) * d)
    np.testing.assert_allclose(model.bits_per_dim(x, noise=noise), expected, rtol=1e-6)


# ------------------------------------------------------------------ pre- and postprocess
@pytest.mark.parametrize("n_bits", [5, 8])
def test_preprocess_matches_numpy(n_bits):
    model = glow_tf.Glow(tiny_config(n_bits_x=n_bits))
    n_bins = 2 ** n_bits
    x = random_images(model.config, 4, seed=2)
    x[0, 0, 0] = [0, 255, 128]
    noise = np.random.RandomState(3).uniform(0, 1 / n_bins, x.shape).astype(np.float32)
    base = np.floor(x.astype(np.float64) / 2 ** (8 - n_bits)) / n_bins - 0.5
    np.testing.assert_allclose(model.preprocess(x, noise=noise), base + noise, atol=1e-6)
    sampled = model.preprocess(x).numpy() - base  # noise ~ U(0, 1/n_bins) when not given
    assert sampled.min() >= -1e-6 and sampled.max() < 1 / n_bins + 1e-6
    assert sampled.std() > 0.2 / n_bins


@pytest.mark.parametrize("n_bits", [5, 8])
def test_postprocess_matches_numpy(n_bits):
    model = glow_tf.Glow(tiny_config(n_bits_x=n_bits))
    n_bins = 2 ** n_bits
    x = np.random.RandomState(0).uniform(-0.7, 0.7, (3, 4, 4, 3)).astype(np.float32)
    expected = np.clip(np.floor((x + 0.5) * n_bins) * (256.0 / n_bins), 0, 255).astype(np.uint8)
    got = model.postprocess(x).numpy()
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)
    # postprocess(preprocess(x)) keeps the top n_bits of every sub-pixel.
    images = random_images(model.config, 2)
    np.testing.assert_array_equal(model.postprocess(model.preprocess(images)),
                                  images // 2 ** (8 - n_bits) * 2 ** (8 - n_bits))


# ------------------------------------------------------------------------------ sampling
def test_sample_dtype_shape_and_temperature():
    model = cached_model(tiny_config(flow_permutation=2, flow_coupling=1, learntop=True, ycond=True))
    y = tf.constant([0, 3, 7], tf.int32)
    images = model.sample(3, y)
    assert images.dtype == tf.uint8 and images.shape == [3, 4, 4, 3]
    # Temperature 0: the prior means, deterministic.
    cold = model.sample(3, y, temperature=0.0).numpy()
    np.testing.assert_array_equal(model.sample(3, y, temperature=0.0), cold)
    zeros = [np.zeros((3,) + s, np.float32) for s in model.config.eps_shapes()]
    np.testing.assert_array_equal(cold, model.postprocess(model.decode(zeros, y)))
    # Per-example temperatures; the first image at temperature 0 is the cold one.
    mixed = model.sample(3, y, temperature=[0.0, 1.0, 1.0]).numpy()
    np.testing.assert_array_equal(mixed[0], cold[0])
    # Seeds make sampling reproducible.
    np.testing.assert_array_equal(model.sample(3, y, seed=[4, 0]), model.sample(3, y, seed=[4, 0]))


def test_temperature_scales_every_level():
    model = glow_tf.Glow(tiny_config(n_levels=2))
    hot = model.sample_eps(2, temperature=1.0, seed=[3, 0])
    warm = model.sample_eps(2, temperature=0.5, seed=[3, 0])
    assert len(hot) == 2
    for h, w in zip(hot, warm):
        np.testing.assert_allclose(w, 0.5 * h.numpy(), rtol=1e-6)


# ------------------------------------------------------------------- classifier and loss
@pytest.mark.parametrize("ycond, weight_y", [(False, 0.0), (False, 0.5), (True, 0.0)])
def test_y_logits_only_with_classifier(ycond, weight_y):
    model = glow_tf.Glow(tiny_config(ycond=ycond, weight_y=weight_y))
    assert model.classifier is None
    x = np.zeros((1, 4, 4, 3), np.float32)
    with pytest.raises(ValueError, match="ycond=True and weight_y > 0"):
        model.y_logits(x)


def test_y_logits_is_linear_zeros_of_mean_top_z_and_loss_terms():
    # 8x8 images, two levels: the top z is 2x2 spatially, so its mean over H, W is not a copy.
    model = cached_model(tiny_config(image_size=8, depth=1, flow_permutation=2, flow_coupling=1, learntop=True,
                                     ycond=True, weight_y=0.3))
    x_uint8 = random_images(model.config, 4, seed=8)
    y = tf.constant(random_labels(model.config, 4, seed=8))
    noise = np.random.RandomState(1).uniform(0, 1 / 256, x_uint8.shape).astype(np.float32)
    x = model.preprocess(x_uint8, noise)
    assert model.config.level_shapes()[-1][:2] == (2, 2)
    # Top z from the top eps through the top prior (the original's z before prior.logp).
    z_top = model.top_prior.inverse(model.encode(x, y)[-1], y)[0].numpy()
    c = model.classifier
    expected = ((z_top.mean(axis=(1, 2)) @ c.kernel.numpy() + c.bias.numpy()) * np.exp(3 * c.scaled_logs.numpy()))
    logits = model.y_logits(x).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
    assert np.abs(logits).max() > 1e-3

    terms = model.loss_terms(x_uint8, y, noise=noise)
    assert set(terms) == {"loss", "bits_x", "bits_y", "pred_loss"}
    np.testing.assert_allclose(terms["bits_x"], model.bits_per_dim(x_uint8, y, noise=noise), rtol=1e-6)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    bits_y = -log_softmax[np.arange(4), y.numpy()] / math.log(2)
    np.testing.assert_allclose(terms["bits_y"], bits_y, rtol=1e-4)
    np.testing.assert_array_equal(terms["pred_loss"], (logits.argmax(axis=1) != y.numpy()).astype(np.float32))
    np.testing.assert_allclose(terms["loss"], terms["bits_x"] + 0.3 * terms["bits_y"].numpy(), rtol=1e-6)


def test_loss_terms_without_classifier():
    model = cached_model(tiny_config(flow_permutation=1, flow_coupling=0))
    x = random_images(model.config, 2)
    terms = model.loss_terms(x, noise=np.zeros(x.shape, np.float32))
    np.testing.assert_array_equal(terms["bits_y"], 0.0)
    np.testing.assert_array_equal(terms["pred_loss"], 1.0)
    np.testing.assert_array_equal(terms["loss"], terms["bits_x"])
    np.testing.assert_allclose(terms["bits_x"], model.bits_per_dim(x, noise=np.zeros(x.shape, np.float32)))


def test_keras_call_is_log_prob():
    model = cached_model(tiny_config(flow_permutation=0, flow_coupling=1))
    x, _ = continuous_batch(model, 2)
    np.testing.assert_allclose(model(x), model.log_prob(x))


# ------------------------------------------------------------- dynamic batch and XLA
@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
def test_dynamic_batch_in_tf_function(jit):
    config = tiny_config(flow_permutation=2, flow_coupling=1, learntop=True, ycond=True)
    model = cached_model(config)
    image = tf.TensorSpec([None] + list(config.image_shape), tf.float32)
    labels = tf.TensorSpec([None], tf.int32)
    latents = [tf.TensorSpec([None] + list(s), tf.float32) for s in config.eps_shapes()]

    @tf.function(input_signature=[image, labels] + latents, jit_compile=jit)
    def run(x, y, *eps):
        return model.log_prob(x, y), model.encode(x, y), model.decode(list(eps), y)

    rng = np.random.RandomState(2)
    for n in (1, 5):
        x, y = continuous_batch(model, n, seed=n)
        eps_in = [rng.standard_normal((n,) + s).astype(np.float32) for s in config.eps_shapes()]
        log_prob, eps, decoded = run(x, y, *eps_in)
        assert log_prob.shape == [n]
        np.testing.assert_allclose(log_prob, model.log_prob(x, y), rtol=1e-5, atol=1e-3)
        for got, want in zip(eps, model.encode(x, y)):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(decoded, model.decode(eps_in, y), rtol=1e-4, atol=1e-5)
    if not jit:
        assert len(run.get_concrete_function().graph.inputs) >= 2  # one trace served both batch sizes
        assert run.experimental_get_tracing_count() == 1


# ---------------------------------------------------------------- memory-saving gradients
def test_memory_saving_gradients_equal_normal_gradients(monkeypatch):
    config = tiny_config(depth=3, flow_permutation=2, flow_coupling=1, learntop=True, ycond=True, weight_y=0.5)
    normal = build_model(config, perturb_scale=0.05, seed=2)
    saving = glow_tf.Glow(config.replace(gradient_checkpointing=True))
    assert [v.shape for v in saving.variables] == [v.shape for v in normal.variables]
    for target, source in zip(saving.variables, normal.variables):
        target.assign(source)

    calls = []
    original = reversible.scan_forward
    monkeypatch.setattr(reversible, "scan_forward",
                        lambda *a, **k: calls.append(k["memory_saving"]) or original(*a, **k))

    x = random_images(config, 4, seed=6)
    y = tf.constant(random_labels(config, 4, seed=6))
    noise = tf.constant(np.random.RandomState(7).uniform(0, 1 / 256, x.shape).astype(np.float32))

    def gradients(model):
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model.loss_terms(x, y, noise=noise)["loss"])
            return loss, tape.gradient(loss, model.trainable_variables)
        return step()

    loss_a, grads_a = gradients(normal)
    assert calls == [False] * config.n_levels  # stored inputs, no inversion
    calls.clear()
    loss_b, grads_b = gradients(saving)
    assert calls == [True] * config.n_levels  # the reversible path was taken, in graph mode
    np.testing.assert_allclose(loss_b, loss_a, rtol=1e-6)
    assert all(g is not None for g in grads_a) and all(g is not None for g in grads_b)
    for a, b in zip(grads_a, grads_b):
        a, b = a.numpy(), b.numpy()
        scale = max(np.abs(a).max(), 1e-3)
        assert np.abs(a - b).max() <= 1e-4 * scale, (np.abs(a - b).max(), scale)


# ------------------------------------------------------------------ data-dependent init
def test_initialize_normalises_every_actnorm_output(monkeypatch):
    config = tiny_config(flow_permutation=2, flow_coupling=1, learntop=True, ycond=True)
    model = glow_tf.Glow(config)
    assert not bool(model.initialized.numpy())
    x = random_images(config, 16, seed=3)
    y = random_labels(config, 16, seed=3)
    noise = np.random.RandomState(4).uniform(0, 1 / 256, x.shape).astype(np.float32)
    model.initialize(x, y, noise=noise)
    assert bool(model.initialized.numpy())

    outputs = []
    flow_actnorm, conv_actnorm = ActNorm.forward, ConvActNorm.call

    def recording_flow(self, inputs, cond=None):
        z, log_det = flow_actnorm(self, inputs, cond)
        outputs.append(z.numpy())
        return z, log_det

    def recording_conv(self, inputs):
        z = conv_actnorm(self, inputs)  # the actnorm is folded into the conv after init
        outputs.append(z.numpy())
        return z

    monkeypatch.setattr(ActNorm, "forward", recording_flow)
    monkeypatch.setattr(ConvActNorm, "call", recording_conv)
    model.log_prob(model.preprocess(x, noise), y)
    # One per flow step and two per coupling network.
    assert len(outputs) == config.n_levels * config.depth * 3
    for z in outputs:
        np.testing.assert_allclose(z.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
        np.testing.assert_allclose(z.std(axis=(0, 1, 2)), 1.0, rtol=1e-3)

    with pytest.raises(RuntimeError, match="already"):
        model.initialize(x, y)


# ------------------------------------------------------------------- validation at the edge
@pytest.fixture(scope="module")
def ycond_model():
    return cached_model(tiny_config(flow_permutation=2, flow_coupling=1, learntop=True, ycond=True, weight_y=0.5))


def _raises(fn, *fragments):
    with pytest.raises(ValueError) as info:
        fn()
    message = str(info.value)
    for fragment in ("expected",) + fragments:
        assert fragment in message, message


def test_bad_inputs_raise_clear_value_errors(ycond_model):
    model = ycond_model
    x, y = continuous_batch(model, 2)
    x_uint8 = random_images(model.config, 2)
    _raises(lambda: model.log_prob(np.zeros((2, 8, 8, 3), np.float32), y), "[N, 4, 4, 3]", "(2, 8, 8, 3)")
    _raises(lambda: model.log_prob(np.zeros((4, 4, 3), np.float32), y), "[N, 4, 4, 3]")
    _raises(lambda: model.encode(np.zeros((2, 4, 4, 1), np.float32), y), "[N, 4, 4, 3]")
    _raises(lambda: model.log_prob(x_uint8, y), "float32", "uint8")
    _raises(lambda: model.bits_per_dim(x, y), "uint8", "float32")
    _raises(lambda: model.preprocess(x), "uint8")
    _raises(lambda: model.preprocess(x_uint8, noise=np.zeros((2, 4, 4, 1), np.float32)), "noise")
    _raises(lambda: model.log_prob(x), "class-conditional", "None")
    _raises(lambda: model.log_prob(x, [0, 10]), "[0, 10)", "[0, 10]")
    _raises(lambda: model.log_prob(x, [-1, 0]), "[0, 10)")
    _raises(lambda: model.log_prob(x, [0, 1, 2]), "2 labels", "3")
    _raises(lambda: model.log_prob(x, [0.0, 1.0]), "integer")
    _raises(lambda: model.log_prob(x, [[0, 1]]), "[N]")
    _raises(lambda: model.sample(2), "class-conditional")
    eps = model.encode(x, y)
    _raises(lambda: model.decode(eps[:1], y), "2 latents", "length 1")
    _raises(lambda: model.decode(eps + eps[-1:], y), "2 latents", "length 3")
    _raises(lambda: model.decode(eps[0], y), "list")
    _raises(lambda: model.decode([eps[1], eps[0]], y), "eps[0]", "[N, 2, 2, 6]")
    _raises(lambda: model.sample(0, [0]), "n >= 1")
    _raises(lambda: model.sample(1, [0], temperature=[[1.0]]), "temperature")
    _raises(lambda: glow_tf.Glow({"image_size": 4}), "GlowConfig", "dict")


def test_unconditional_model_ignores_labels():
    model = cached_model(tiny_config(flow_permutation=1, flow_coupling=0))
    x, _ = continuous_batch(model, 2)
    np.testing.assert_array_equal(model.log_prob(x, [3, 4]), model.log_prob(x))

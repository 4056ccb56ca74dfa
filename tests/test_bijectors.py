"""TFP adapters: FlowLayerBijector (any flow layer) and GlowBijector / model.distribution."""
import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from conftest import build_model, continuous_batch, perturb, tiny_config
from glow_tf.bijectors import FlowLayerBijector, GlowBijector
from glow_tf.layers import ActNorm, AffineCoupling, InvertibleConv1x1
from glow_tf.model import FlowStep

tfb, tfd = tfp.bijectors, tfp.distributions


def _step():
    step = FlowStep(4, tiny_config(flow_permutation=2, flow_coupling=1), name="step")
    perturb(step.trainable_variables, 0.1, seed=11)
    return step


def _fresh(t):
    """A new tensor with t's values, unknown to TFP's bijector cache."""
    return tf.constant(np.asarray(t))


def _z(shape=(3, 4, 4, 4), seed=0):
    return tf.constant(np.random.RandomState(seed).standard_normal(shape).astype(np.float32))


# ------------------------------------------------------------------------ FlowLayerBijector
@pytest.mark.parametrize("make_layer", [_step, lambda: ActNorm(4), lambda: InvertibleConv1x1(4, seed=1),
                                        lambda: AffineCoupling(4, 8)], ids=["step", "actnorm", "invconv", "affine"])
def test_flow_layer_bijector_directions_and_log_dets(make_layer):
    layer = make_layer()
    perturb(layer.trainable_variables, 0.1, seed=12)
    bijector = FlowLayerBijector(layer)
    z = _z()
    # Fresh tensors (_fresh) everywhere: TFP caches forward/inverse pairs by tensor identity.
    x = _fresh(bijector.forward(z))
    # TFP's forward is the generative direction: the layer's inverse.
    np.testing.assert_allclose(x, layer.inverse(z)[0], rtol=1e-6, atol=1e-6)
    assert np.abs(x - z).max() > 1e-2
    np.testing.assert_allclose(bijector.inverse(x), z, atol=2e-5)
    fldj = bijector.forward_log_det_jacobian(z, event_ndims=3)
    ildj = bijector.inverse_log_det_jacobian(x, event_ndims=3)
    assert fldj.shape == [3]
    np.testing.assert_allclose(fldj, -ildj, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ildj, layer.forward(x)[1], rtol=1e-5, atol=1e-4)


def test_flow_layer_bijector_trainable_variables_are_the_layers():
    step = _step()
    bijector = FlowLayerBijector(step)
    assert bijector.trainable_variables
    assert {v.ref() for v in bijector.trainable_variables} == {v.ref() for v in step.trainable_variables}
    # Gradients reach the layer's variables through TFP calls.
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(bijector.forward_log_det_jacobian(_z(), event_ndims=3))
    grads = tape.gradient(loss, bijector.trainable_variables)
    assert sum(g is not None for g in grads) > 0


def test_flow_layer_bijector_in_chain_and_invert():
    step = _step()
    bijector = FlowLayerBijector(step)
    z = _z()
    n_dims = 4 * 4 * 4
    chain = tfb.Chain([tfb.Scale(2.0), bijector])  # x = 2 * step.inverse(z)
    np.testing.assert_allclose(chain.forward(z), 2.0 * bijector.forward(z), rtol=1e-6)
    np.testing.assert_allclose(chain.forward_log_det_jacobian(z, event_ndims=3),
                               bijector.forward_log_det_jacobian(z, event_ndims=3) + n_dims * math.log(2.0),
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(chain.inverse(_fresh(chain.forward(z))), z, atol=2e-5)

    inverted = tfb.Invert(bijector)  # forward = step.forward
    np.testing.assert_allclose(inverted.forward(z), step.forward(z)[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(inverted.forward_log_det_jacobian(z, event_ndims=3), step.forward(z)[1],
                               rtol=1e-5, atol=1e-4)

    # A distribution on [4, 4, 4] events built from two steps.
    dist = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(0.0, 1.0), [4, 4, 4]), chain)
    x = _fresh(dist.sample(2, seed=3))
    assert x.shape == [2, 4, 4, 4]
    expected = (tfd.Sample(tfd.Normal(0.0, 1.0), [4, 4, 4]).log_prob(chain.inverse(x))
                + chain.inverse_log_det_jacobian(x, event_ndims=3))
    np.testing.assert_allclose(dist.log_prob(x), expected, rtol=1e-5)


def test_flow_layer_bijector_keeps_extra_batch_dims():
    step = _step()
    bijector = FlowLayerBijector(step)
    z = _z((2, 3, 4, 4, 4))
    x = bijector.forward(z)
    assert x.shape == [2, 3, 4, 4, 4]
    np.testing.assert_allclose(x[1, 2], step.inverse(z[1, 2:3])[0][0], rtol=1e-5, atol=1e-6)
    assert bijector.forward_log_det_jacobian(z, event_ndims=3).shape == [2, 3]


# ------------------------------------------------------------------------ the whole model
@pytest.fixture(scope="module")
def ycond_model():
    return build_model(tiny_config(flow_permutation=2, flow_coupling=1, learntop=True, ycond=True, weight_y=0.5),
                       seed=3)


def test_distribution_log_prob_equals_model_log_prob(ycond_model):
    model = ycond_model
    x, y = continuous_batch(model, 3, seed=1)
    np.testing.assert_allclose(model.distribution(y).log_prob(x), model.log_prob(x, y), rtol=1e-6, atol=1e-4)
    # Labels through bijector kwargs instead of bound at construction.
    dist = model.distribution()
    np.testing.assert_allclose(dist.log_prob(x, bijector_kwargs={"labels": y}), model.log_prob(x, y),
                               rtol=1e-6, atol=1e-4)
    # The labels matter for a ycond model.
    other = (y + 1) % model.config.n_y
    assert np.abs(model.distribution(other).log_prob(x) - model.log_prob(x, y)).max() > 1e-3


def test_glow_bijector_fldj_is_minus_ildj_and_inverts(ycond_model):
    model = ycond_model
    _, y = continuous_batch(model, 3)
    bijector = GlowBijector(model, y=y)
    n_dims = model.config.n_dims
    eps = tf.constant(np.random.RandomState(4).standard_normal((3, n_dims)).astype(np.float32))
    x = _fresh(bijector.forward(eps))
    assert x.shape == [3] + list(model.config.image_shape)
    np.testing.assert_allclose(bijector.inverse(x), eps, atol=1e-4)
    fldj = bijector.forward_log_det_jacobian(eps, event_ndims=1)
    ildj = bijector.inverse_log_det_jacobian(x, event_ndims=3)
    np.testing.assert_allclose(fldj, -ildj, rtol=1e-5, atol=1e-4)
    # Flattened eps are the encoder's latents, level 0 first.
    levels = model.encode(x, y)
    joined = tf.concat([tf.reshape(e, [3, -1]) for e in levels], axis=1)
    np.testing.assert_allclose(joined, eps, atol=1e-4)


def test_composed_distribution_log_density_by_change_of_variables(ycond_model):
    model = ycond_model
    x, y = continuous_batch(model, 3, seed=2)
    composed = tfd.TransformedDistribution(model.distribution(y), tfb.Chain([tfb.Shift(1.0), tfb.Scale(2.0)]))
    u = 2.0 * x + 1.0  # u = shift(scale(x)); p(u) = p(x) / 2**D
    expected = model.log_prob(x, y) - model.config.n_dims * math.log(2.0)
    np.testing.assert_allclose(composed.log_prob(u), expected, rtol=1e-5, atol=1e-3)

    # The same by chaining the Glow bijector itself.
    base = tfd.Sample(tfd.Normal(0.0, 1.0), [model.config.n_dims])
    chained = tfd.TransformedDistribution(base, tfb.Chain([tfb.Scale(2.0), GlowBijector(model, y=y)]))
    np.testing.assert_allclose(chained.log_prob(2.0 * x), model.log_prob(x, y) - model.config.n_dims * math.log(2.0),
                               rtol=1e-5, atol=1e-3)


def test_bijector_trainable_variables(ycond_model):
    model = ycond_model
    variables = model.bijector.trainable_variables
    assert variables
    assert len(variables) == len(model.trainable_variables)
    assert {v.ref() for v in variables} == {v.ref() for v in model.trainable_variables}
    # Gradients of a TFP log-density reach the flow's variables.
    x, y = continuous_batch(model, 2, seed=6)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(model.distribution(y).log_prob(x))
    grads = tape.gradient(loss, variables)
    assert sum(g is not None for g in grads) >= len(variables) - len(model.classifier.trainable_variables)


def test_bijector_trainable_variables_plain_model():
    model = build_model(tiny_config(depth=1))
    assert len(model.bijector.trainable_variables) == len(model.trainable_variables) > 0


def test_distribution_sample_event_shape(ycond_model):
    model = ycond_model
    y = tf.constant([1, 2], tf.int32)
    dist = model.distribution(y)
    assert dist.event_shape == model.config.image_shape
    x = _fresh(dist.sample(2, seed=5))
    assert x.shape == [2] + list(model.config.image_shape)
    np.testing.assert_allclose(dist.log_prob(x), model.log_prob(x, y), rtol=1e-5, atol=1e-3)

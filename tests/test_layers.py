"""Flow layers: invertibility, log-determinants against the batch Jacobian, and the original's
details (tfops.py / model.py of openai/glow) checked independently of the implementation."""
import math
import threading

import numpy as np
import pytest
import tensorflow as tf

from conftest import jacobian_log_det, perturb, tiny_config
from glow_tf.layers import (ActNorm, AdditiveCoupling, AffineCoupling, ConvActNorm, CouplingNetwork, FlowLayer,
                            InvertibleConv1x1, InvertibleConv1x1LU, LinearZeros, Reverse, Shuffle, Split, Squeeze,
                            TopPrior, ZeroConv2D, data_dependent_init, parameters_as, read, squeeze2d, unsqueeze2d)
from glow_tf.layers.base import initializing
from glow_tf.layers.nn import conv2d_same, edge_bias_conv2d, edge_padded, edge_padded_conv2d
from glow_tf.model import FlowStep

SHAPE = (2, 4, 4, 4)  # [N, H, W, C]
LABELS = tf.constant([1, 2], tf.int32)


def _x(shape=SHAPE, seed=0):
    return tf.constant(np.random.RandomState(seed).standard_normal(shape).astype(np.float32))


def _flow(layer):
    return layer, layer.forward, layer.inverse


def _split():
    layer = Split(SHAPE[-1])
    return layer, lambda x: ((lambda z1, eps, ld: ((z1, eps), ld))(*layer.forward(x))), \
        lambda out: layer.inverse(*out)


def _top_prior():
    layer = TopPrior(SHAPE[1:], learntop=True, ycond=True, n_y=3)
    return layer, lambda x: layer.forward(x, LABELS), lambda e: layer.inverse(e, LABELS)


# name -> () -> (layer, forward: x -> (out, log_det), inverse: out -> (x, log_det))
LAYERS = {
    "actnorm": lambda: _flow(ActNorm(4)),
    "reverse": lambda: _flow(Reverse(4)),
    "shuffle": lambda: _flow(Shuffle(4, seed=3)),
    "invconv": lambda: _flow(InvertibleConv1x1(4, seed=3)),
    "invconv_lu": lambda: _flow(InvertibleConv1x1LU(4, seed=3)),
    "additive": lambda: _flow(AdditiveCoupling(4, width=8)),
    "affine": lambda: _flow(AffineCoupling(4, width=8)),
    "squeeze": lambda: _flow(Squeeze()),
    "flowstep_affine_invconv": lambda: _flow(FlowStep(4, tiny_config(flow_permutation=2, flow_coupling=1))),
    "flowstep_additive_shuffle": lambda: _flow(FlowStep(4, tiny_config(flow_permutation=1, flow_coupling=0))),
    "split": _split,
    "top_prior": _top_prior,
}
VOLUME_CHANGING = {"actnorm", "invconv", "invconv_lu", "affine", "flowstep_affine_invconv",
                   "flowstep_additive_shuffle", "split", "top_prior"}


def _perturbed(name):
    layer, forward, inverse = LAYERS[name]()
    perturb(layer.trainable_variables, scale=0.3, seed=7)
    return layer, forward, inverse


def _flat(out):
    if isinstance(out, (list, tuple)):
        return np.concatenate([np.reshape(o, [SHAPE[0], -1]) for o in out], axis=1)
    return np.reshape(out, [SHAPE[0], -1])


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_inverse_of_forward_and_log_det_against_jacobian(name):
    layer, forward, inverse = _perturbed(name)
    x = _x()
    out, log_det = forward(x)
    assert log_det.shape == [SHAPE[0]]

    # Round trip.
    x_back, inverse_log_det = inverse(out)
    np.testing.assert_allclose(x_back, x, atol=2e-5)

    # The layer does something (the perturbed zero-initialised convs make couplings non-trivial).
    if name not in ("squeeze", "split"):
        assert np.max(np.abs(_flat(out) - _flat(x))) > 1e-2

    # Forward log-det == log|det| of the Jacobian of the flattened map.
    expected = jacobian_log_det(lambda t: forward(t)[0], x)
    np.testing.assert_allclose(log_det, expected, rtol=1e-4, atol=2e-4)
    if name in VOLUME_CHANGING:
        assert np.all(np.abs(expected) > 1e-2), f"{name}: log-det trivially 0 ({expected})"
    else:
        np.testing.assert_allclose(expected, 0.0, atol=1e-4)

    # Inverse log-det at z = forward(x) is minus the forward log-det at x.
    np.testing.assert_allclose(inverse_log_det, -log_det, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", ["actnorm", "invconv", "invconv_lu", "affine", "split", "top_prior"])
def test_inverse_log_det_against_jacobian_of_inverse(name):
    layer, forward, inverse = _perturbed(name)
    z = forward(_x(seed=1))[0]
    if isinstance(z, tuple):  # split: differentiate w.r.t. both outputs, joined
        z1, eps = z
        n1 = int(np.prod(z1.shape[1:]))
        joined = tf.concat([tf.reshape(z1, [SHAPE[0], -1]), tf.reshape(eps, [SHAPE[0], -1])], axis=1)
        fn = lambda t: inverse((tf.reshape(t[:, :n1], z1.shape), tf.reshape(t[:, n1:], eps.shape)))[0]  # noqa: E731
        expected, got = jacobian_log_det(fn, joined), inverse((z1, eps))[1]
    else:
        expected, got = jacobian_log_det(lambda t: inverse(t)[0], z), inverse(z)[1]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-4)


# ------------------------------------------------------------------ the parameter-read rule
def _with_other_values(layer):
    """Changes every variable of ``layer``: trainable ones perturbed, the others (a shuffle's
    indices, the LU conv's P and signs) rolled along their first axis."""
    perturb(layer.trainable_variables, scale=0.1, seed=11)
    for v in layer.non_trainable_variables:
        v.assign(tf.roll(v, 1, axis=0))


def _loss(out, log_det):
    return tf.add_n([tf.reduce_sum(tf.sin(o)) for o in tf.nest.flatten(out)]) + 0.3 * tf.reduce_sum(log_det)


def _from_saved(layer):
    """(layer, forward through forward_saving then forward_from_saved, inverse)."""
    def forward(x):
        saved = layer.forward_saving(x)[2]
        return layer.forward_from_saved(x, saved)
    return layer, forward, layer.inverse


def _assert_runs_with_stand_ins(make):
    """FlowLayer's parameter-read rule: layer a, run in a tf.function (as FlowScan runs its
    template) with layer b's parameters standing in for its own, gives b's outputs, inverse
    and parameter gradients, and reads none of its own variables."""
    a, forward_a, inverse_a = make()
    b, forward_b, inverse_b = make()
    _with_other_values(b)
    x = _x(seed=8)
    values = [tf.identity(v) for v in b.variables]  # tensors: b's variables are not read either
    trained = [j for j, v in enumerate(a.variables) if v.trainable]

    @tf.function
    def run_a(x, values):
        with parameters_as(a.variables, values):
            with tf.GradientTape() as tape:
                tape.watch([values[j] for j in trained])
                out, log_det = forward_a(x)
                loss = _loss(out, log_det)
            grads = tape.gradient(loss, [values[j] for j in trained],
                                  unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return out, log_det, inverse_a(out), grads

    with tf.GradientTape() as tape:
        out, log_det = forward_b(x)
        loss = _loss(out, log_det)
    want = (out, log_det, inverse_b(out),
            tape.gradient(loss, [b.variables[j] for j in trained], unconnected_gradients=tf.UnconnectedGradients.ZERO))
    got = run_a(x, values)
    for g, w in zip(tf.nest.flatten(got), tf.nest.flatten(want)):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    captured = [v.name for v in run_a.get_concrete_function(x, values).graph.variables]
    assert not captured, f"read around read(): {captured}"


@pytest.mark.parametrize("name", sorted(LAYERS) + [n + ":from_saved" for n in sorted(LAYERS)
                                                   if isinstance(LAYERS[n]()[0], FlowLayer)])
def test_layer_runs_with_stand_in_parameters(name):
    base, _, from_saved = name.partition(":")
    _assert_runs_with_stand_ins((lambda: _from_saved(LAYERS[base]()[0])) if from_saved else LAYERS[base])


class _ReadsAroundRead(ActNorm):
    """Breaks the rule: its output reads the bias variable itself."""

    def forward(self, x, cond=None):
        z, log_det = super().forward(x, cond)
        return z + self.bias - read(self.bias), log_det


def test_stand_in_check_catches_a_weight_read_around_read():
    with pytest.raises(AssertionError):
        _assert_runs_with_stand_ins(lambda: _flow(_ReadsAroundRead(4)))


def test_layer_context_belongs_to_the_thread_that_set_it_and_nests():
    layer = ActNorm(4)
    outer, inner = tf.ones([1, 1, 1, 4]), tf.zeros([1, 1, 1, 4])
    seen = {}
    with parameters_as([layer.bias], [outer]), data_dependent_init():
        thread = threading.Thread(target=lambda: seen.update(read=read(layer.bias), initializing=initializing()))
        thread.start()
        thread.join()
        with parameters_as([layer.bias, layer.scaled_logs], [inner, outer]):
            assert read(layer.bias) is inner and read(layer.scaled_logs) is outer
        assert read(layer.bias) is outer and read(layer.scaled_logs) is layer.scaled_logs
        assert initializing()
    assert seen == {"read": layer.bias, "initializing": False}
    assert read(layer.bias) is layer.bias and not initializing()
    with pytest.raises(ValueError, match="one value per variable, got 1 values for 2 variables"):
        with parameters_as([layer.bias, layer.scaled_logs], [outer]):
            pass


# ------------------------------------------------------------------------------- ActNorm
def test_actnorm_centers_then_scales_with_logscale_factor_3():
    layer = ActNorm(4)
    b = np.array([0.5, -1.0, 2.0, 0.1], np.float32).reshape(1, 1, 1, 4)
    stored_logs = np.array([0.1, -0.2, 0.05, 0.3], np.float32).reshape(1, 1, 1, 4)
    layer.bias.assign(b)
    layer.scaled_logs.assign(stored_logs)
    x = _x().numpy()
    z, log_det = layer.forward(x)
    # Original: actnorm_center (x + b), then actnorm_scale (* exp(logs)), logs = 3 * stored value.
    np.testing.assert_allclose(z, (x + b) * np.exp(3 * stored_logs), rtol=1e-6)
    np.testing.assert_allclose(log_det, [4 * 4 * 3 * stored_logs.sum()] * 2, rtol=1e-6)
    # Reverse order on the way back: unscale, then uncenter.
    back, inverse_log_det = layer.inverse(z)
    np.testing.assert_allclose(back, x, atol=1e-5)
    np.testing.assert_allclose(inverse_log_det, -log_det, rtol=1e-6)


def test_actnorm_data_dependent_init_gives_zero_mean_unit_std():
    layer = ActNorm(3)
    rng = np.random.RandomState(0)
    x = (rng.standard_normal((8, 5, 5, 3)) * [0.5, 2.0, 7.0] + [3.0, -1.0, 0.25]).astype(np.float32)
    with data_dependent_init():
        z, _ = layer.forward(x)
    z = z.numpy()
    np.testing.assert_allclose(z.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 1, 2)), 1.0, rtol=1e-4)
    # Stored as the original: b = -mean, logs variable = log(1 / (std + 1e-6)) / 3.
    mean, std = x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))
    np.testing.assert_allclose(layer.bias.numpy().ravel(), -mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.scaled_logs.numpy().ravel(), np.log(1 / (std + 1e-6)) / 3, rtol=1e-4)
    # Outside the context the parameters stay put.
    before = [v.numpy().copy() for v in layer.variables]
    layer.forward(x * 10.0 + 4.0)
    for v, old in zip(layer.variables, before):
        np.testing.assert_array_equal(v.numpy(), old)


# ------------------------------------------------------------------ network blocks (tfops)
def _original_edge_padding_conv(x, kernel):
    """tfops.add_edge_padding + VALID conv, written out as the original does."""
    kh, kw = kernel.shape[0], kernel.shape[1]
    a, b = (kh - 1) // 2, (kw - 1) // 2
    padded = np.pad(x, [[0, 0], [a, a], [b, b], [0, 0]])
    border = np.zeros((1,) + padded.shape[1:3] + (1,), np.float32)
    border[:, :a, :, 0] = 1.0
    border[:, -a:, :, 0] = 1.0
    border[:, :, :b, 0] = 1.0
    border[:, :, -b:, 0] = 1.0
    padded = np.concatenate([padded, np.tile(border, [x.shape[0], 1, 1, 1])], axis=3)
    return tf.nn.conv2d(padded, kernel, 1, "VALID").numpy()


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_edge_bias_conv_equals_original_construction(kernel_size):
    rng = np.random.RandomState(0)
    x = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
    kernel = rng.standard_normal((kernel_size, kernel_size, 4, 7)).astype(np.float32)
    got = edge_bias_conv2d(x, kernel).numpy()
    np.testing.assert_allclose(got, _original_edge_padding_conv(x, kernel), rtol=1e-5, atol=1e-5)
    # The border channel matters: without it the result differs at the border.
    plain = tf.nn.conv2d(x, kernel[:, :, :3], 1, "SAME").numpy()
    assert np.abs(got - plain).max() > 1e-2


# (n_in, n_out, kernel size): under XLA without accelerators conv2d_same computes a convolution
# with few outputs (size**2 * n_out <= n_in) as one matmul and shifted sums, else as TensorFlow's
# convolution, with hand-written gradients; the input's gradient is the convolution with the
# transposed kernel (n_in and n_out swapped). Outside XLA it is TensorFlow's convolution.
CONV_SHAPES = [(4, 8, 3), (40, 4, 3), (3, 48, 3), (60, 2, 5)]


def _conv_case(seed, n_in, kernel_shape):
    """(x [2, 6, 5, n_in], kernel, upstream gradient [2, 6, 5, n_out]) drawn from ``seed``."""
    rng = np.random.RandomState(seed)
    x = tf.constant(rng.standard_normal((2, 6, 5, n_in)).astype(np.float32))
    kernel = tf.constant(rng.standard_normal(kernel_shape).astype(np.float32))
    upstream = tf.constant(rng.standard_normal((2, 6, 5, kernel_shape[-1])).astype(np.float32))
    return x, kernel, upstream


def _value_and_grads(conv, x, kernel, upstream):
    """[conv(x, kernel), its gradients with respect to x and kernel for ``upstream``]."""
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        out = conv(x, kernel)
    return [out] + tape.gradient(out, [x, kernel], output_gradients=upstream)


@pytest.mark.parametrize("jit_compile", [True, False])
@pytest.mark.parametrize("n_in, n_out, size", CONV_SHAPES)
def test_conv2d_same_equals_tf_conv_with_gradients(n_in, n_out, size, jit_compile):
    x, kernel, upstream = _conv_case(3, n_in, (size, size, n_in, n_out))
    got = tf.function(lambda: _value_and_grads(conv2d_same, x, kernel, upstream), jit_compile=jit_compile)()
    want = _value_and_grads(lambda x, kernel: tf.nn.conv2d(x, kernel, 1, "SAME"), x, kernel, upstream)
    for g, w, what in zip(got, want, ["output", "grad x", "grad kernel"]):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4, err_msg=what)


@pytest.mark.parametrize("n_in, n_out", [(3, 8), (6, 128)])
def test_edge_padded_conv_gradients_are_tensorflows(n_in, n_out):
    # Outside XLA a conv with few inputs runs on the original's edge-padded input, with the
    # input's gradient taken over x's own channels only (edge_padded_conv2d).
    x, kernel, upstream = _conv_case(5, n_in, (3, 3, n_in + 1, n_out))
    got = _value_and_grads(edge_padded_conv2d, x, kernel, upstream)
    want = _value_and_grads(lambda x, kernel: tf.nn.conv2d(edge_padded(x, 3, 3), kernel, 1, "VALID"), x, kernel,
                            upstream)
    for g, w, what in zip(got, want, ["output", "grad x", "grad kernel"]):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4, err_msg=what)
    np.testing.assert_allclose(got[0], edge_bias_conv2d(x, kernel), rtol=1e-4, atol=1e-4)


def test_edge_bias_conv_1x1_is_plain_conv():
    rng = np.random.RandomState(1)
    x = rng.standard_normal((2, 4, 4, 3)).astype(np.float32)
    kernel = rng.standard_normal((1, 1, 3, 5)).astype(np.float32)
    np.testing.assert_allclose(edge_bias_conv2d(x, kernel), np.einsum("nhwc,cd->nhwd", x, kernel[0, 0]),
                               rtol=1e-5, atol=1e-5)


def test_conv_actnorm_kernel_init_is_normal_0_05_with_edge_channel():
    tf.random.set_seed(0)
    conv = ConvActNorm(16, 64, (3, 3))
    kernel = conv.kernel.numpy()
    assert kernel.shape == (3, 3, 17, 64)  # + 1 border input channel
    assert abs(kernel.mean()) < 0.003
    assert abs(kernel.std() - 0.05) < 0.0025
    assert ConvActNorm(16, 8, (1, 1)).kernel.shape == (1, 1, 16, 8)  # 1x1: no border channel


@pytest.mark.parametrize("kernel_size", [(3, 3), (1, 1)])
def test_conv_actnorm_equals_conv_then_actnorm_with_gradients(kernel_size):
    """The actnorm folded into the kernel gives the original's conv -> actnorm, and its gradients."""
    rng = np.random.RandomState(2)
    x = tf.constant(rng.standard_normal((3, 6, 5, 4)).astype(np.float32))
    conv = ConvActNorm(4, 8, kernel_size)
    conv.actnorm.bias.assign(rng.standard_normal((1, 1, 1, 8)).astype(np.float32))
    conv.actnorm.scaled_logs.assign(0.3 * rng.standard_normal((1, 1, 1, 8)).astype(np.float32))
    upstream = tf.constant(rng.standard_normal((3, 6, 5, 8)).astype(np.float32))
    variables = [conv.kernel, conv.actnorm.bias, conv.actnorm.scaled_logs]

    def value_and_grads(fn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = fn(x)
        return [out] + tape.gradient(out, [x] + variables, output_gradients=upstream)

    folded = value_and_grads(conv)
    unfolded = value_and_grads(lambda x: conv.actnorm.forward(edge_bias_conv2d(x, conv.kernel))[0])
    for got, want in zip(folded, unfolded):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_zero_layers_start_at_zero_and_scale_by_exp_3_logs():
    x = _x((2, 4, 4, 3)).numpy()
    conv = ZeroConv2D(3, 6)
    linear = LinearZeros(3, 6)
    np.testing.assert_array_equal(conv(x), 0.0)
    np.testing.assert_array_equal(linear(x[:, 0, 0]), 0.0)
    for layer in (conv, linear):
        layer.bias.assign(tf.ones_like(layer.bias))
        layer.scaled_logs.assign(tf.fill(layer.scaled_logs.shape, 0.1))
    np.testing.assert_allclose(conv(x), np.exp(0.3), rtol=1e-6)  # (0 + 1) * exp(3 * 0.1)
    np.testing.assert_allclose(linear(x[:, 0, 0]), np.exp(0.3), rtol=1e-6)
    linear.kernel.assign(np.arange(18, dtype=np.float32).reshape(3, 6) / 10)
    np.testing.assert_allclose(linear(x[:, 0, 0]), (x[:, 0, 0] @ linear.kernel.numpy() + 1) * np.exp(0.3),
                               rtol=1e-5)


# ------------------------------------------------------------------------------ couplings
def test_couplings_at_init():
    x = _x().numpy()
    additive = AdditiveCoupling(4, width=8)
    z, log_det = additive.forward(x)
    np.testing.assert_array_equal(z, x)  # l_last is zero-initialised: the identity
    np.testing.assert_array_equal(log_det, 0.0)
    affine = AffineCoupling(4, width=8)
    z, log_det = affine.forward(x)
    sig2 = 1 / (1 + np.exp(-2.0))
    np.testing.assert_allclose(z[..., :2], x[..., :2])
    np.testing.assert_allclose(z[..., 2:], x[..., 2:] * sig2, rtol=1e-6)
    np.testing.assert_allclose(log_det, 4 * 4 * 2 * np.log(sig2), rtol=1e-6)


def test_coupling_formulas_first_half_conditions():
    x = _x().numpy()
    x1, x2 = x[..., :2], x[..., 2:]
    additive = AdditiveCoupling(4, width=8)
    perturb(additive.trainable_variables, 0.3, seed=1)
    h = additive.f1(x1).numpy()
    assert h.shape == x2.shape
    np.testing.assert_allclose(additive.forward(x)[0], np.concatenate([x1, x2 + h], -1), rtol=1e-5, atol=1e-6)

    affine = AffineCoupling(4, width=8)
    perturb(affine.trainable_variables, 0.3, seed=2)
    network = CouplingNetwork(2, 8, 4)  # the original's f: its output channels in the original's order
    network.set_weights(affine.f1.get_weights())
    h = network(x1).numpy()
    assert h.shape == x.shape  # n_out = C: shift and scale interleaved
    shift, scale = h[..., 0::2], 1 / (1 + np.exp(-(h[..., 1::2] + 2.0)))
    z, log_det = affine.forward(x)
    np.testing.assert_allclose(z, np.concatenate([x1, (x2 + shift) * scale], -1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(log_det, np.log(scale).sum(axis=(1, 2, 3)), rtol=1e-5)


@pytest.mark.parametrize("coupling", [AdditiveCoupling, AffineCoupling])
def test_coupling_differentiates_from_its_saved_activations(coupling):
    # The normal mode's backward loop: forward_saving keeps the network's activations, and
    # forward_from_saved gives forward's values and gradients from them.
    layer = coupling(4, width=8)
    perturb(layer.trainable_variables, 0.3, seed=3)
    x = _x(seed=4)
    weights = _x(seed=5)
    z, log_det, saved = layer.forward_saving(x)
    z_want, log_det_want = layer.forward(x)
    np.testing.assert_array_equal(z, z_want)
    np.testing.assert_array_equal(log_det, log_det_want)
    a_1, a_2, h = layer.f1.activations(x[..., :2])
    assert [t.shape for t in saved] == [(2, 4, 4, 8), (2, 4, 4, 8), h.shape]
    np.testing.assert_array_equal(saved[2], h)
    np.testing.assert_array_equal(saved[0], a_1)

    def values_and_gradients(forward):
        with tf.GradientTape() as tape:
            tape.watch(x)
            z, log_det = forward()
            loss = tf.reduce_sum(z * weights) + 0.3 * tf.reduce_sum(log_det)
        return z, log_det, tape.gradient(loss, [x] + layer.trainable_variables)

    got = values_and_gradients(lambda: layer.forward_from_saved(x, saved))
    want = values_and_gradients(lambda: layer.forward(x))
    for g, w in zip(tf.nest.flatten(got), tf.nest.flatten(want)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    # The values are the saved ones, not recomputed: a changed output activation shows.
    changed = layer.forward_from_saved(x, saved[:2] + [saved[2] + 1.0])[0]
    np.testing.assert_array_equal(changed, tf.concat([x[..., :2], layer.couple(x[..., 2:], saved[2] + 1.0)[0]], 3))
    assert np.abs(changed - z).max() > 0.1


def test_coupling_network_shapes_match_the_original():
    net = AffineCoupling(6, width=16).f1
    assert net.l_1.kernel.shape == (3, 3, 3 + 1, 16)
    assert net.l_2.kernel.shape == (1, 1, 16, 16)
    assert net.l_last.kernel.shape == (3, 3, 16 + 1, 6)
    assert AdditiveCoupling(6, width=16).f1.l_last.kernel.shape == (3, 3, 17, 3)


# --------------------------------------------------------------------------- permutations
def test_reverse_and_shuffle_semantics():
    x = _x().numpy()
    np.testing.assert_array_equal(Reverse(4).forward(x)[0], x[..., ::-1])
    shuffle = Shuffle(8, seed=5)
    x8 = _x((2, 3, 3, 8)).numpy()
    indices = shuffle.indices.numpy()
    assert sorted(indices) == list(range(8)) and list(indices) != list(range(8))
    # tfops.shuffle_features: gather along channels with `indices`; back with `indices_inverse`.
    np.testing.assert_array_equal(shuffle.forward(x8)[0], x8[..., indices])
    np.testing.assert_array_equal(shuffle.indices_inverse.numpy(), np.argsort(indices))
    np.testing.assert_array_equal(shuffle.inverse(x8[..., indices])[0], x8)
    assert not shuffle.trainable_variables
    assert {v.ref() for v in shuffle.non_trainable_variables} == {shuffle.indices.ref(), shuffle.indices_inverse.ref()}


def test_shuffle_indices_survive_save_restore(tmp_path):
    saved = Shuffle(8, seed=5)
    path = tf.train.Checkpoint(layer=saved).write(str(tmp_path / "ckpt"))
    restored = Shuffle(8, seed=6)
    assert list(restored.indices.numpy()) != list(saved.indices.numpy())
    tf.train.Checkpoint(layer=restored).read(path).assert_consumed()
    np.testing.assert_array_equal(restored.indices, saved.indices)
    np.testing.assert_array_equal(restored.indices_inverse, saved.indices_inverse)


def test_invertible_1x1_conv():
    layer = InvertibleConv1x1(5, seed=2)
    w = layer.kernel.numpy()
    np.testing.assert_allclose(w.T @ w, np.eye(5), atol=1e-5)  # orthogonal init (QR of a Gaussian)
    perturb(layer.trainable_variables, 0.3, seed=3)
    w = layer.kernel.numpy()
    x = _x((2, 3, 4, 5)).numpy()
    z, log_det = layer.forward(x)
    np.testing.assert_allclose(z, np.einsum("nhwc,cd->nhwd", x, w), rtol=1e-5, atol=1e-5)
    expected = 3 * 4 * np.linalg.slogdet(w.astype(np.float64))[1]
    np.testing.assert_allclose(log_det, [expected] * 2, rtol=1e-5, atol=1e-5)


def test_invertible_1x1_conv_lu():
    layer = InvertibleConv1x1LU(5, seed=2)
    np.testing.assert_allclose(layer.weight_matrix().numpy().T @ layer.weight_matrix().numpy(), np.eye(5),
                               atol=1e-5)
    trainable = {v.ref() for v in layer.trainable_variables}
    assert trainable == {layer.lower.ref(), layer.log_s.ref(), layer.upper.ref()}
    assert {v.ref() for v in layer.non_trainable_variables} == {layer.p.ref(), layer.sign_s.ref()}
    perturb(layer.trainable_variables, 0.3, seed=3)
    p, lower, upper = layer.p.numpy(), layer.lower.numpy(), layer.upper.numpy()
    s = layer.sign_s.numpy() * np.exp(layer.log_s.numpy())
    w = p @ (np.tril(lower, -1) + np.eye(5)) @ (np.triu(upper, 1) + np.diag(s))
    np.testing.assert_allclose(layer.weight_matrix(), w, rtol=1e-5, atol=1e-6)
    x = _x((2, 3, 4, 5)).numpy()
    z, log_det = layer.forward(x)
    np.testing.assert_allclose(z, np.einsum("nhwc,cd->nhwd", x, w), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_det, [12 * np.linalg.slogdet(w)[1]] * 2, rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------------------------- squeeze
def test_squeeze_channel_order_elementwise():
    rng = np.random.RandomState(0)
    x = rng.standard_normal((2, 6, 4, 3)).astype(np.float32)
    out = squeeze2d(tf.constant(x)).numpy()
    assert out.shape == (2, 3, 2, 12)
    for n in range(2):
        for i in range(3):
            for j in range(2):
                for c in range(3):
                    for dh in range(2):
                        for dw in range(2):
                            assert out[n, i, j, c * 4 + dh * 2 + dw] == x[n, 2 * i + dh, 2 * j + dw, c]
    np.testing.assert_array_equal(unsqueeze2d(out), x)
    # Not tf.nn.space_to_depth's order.
    assert not np.array_equal(out, tf.nn.space_to_depth(x, 2).numpy())


# ---------------------------------------------------------------------------------- priors
def test_split_prior_mean_and_logs_are_interleaved():
    split = Split(4)
    perturb(split.trainable_variables, 0.3, seed=4)
    x = _x().numpy()
    x1, x2 = x[..., :2], x[..., 2:]
    conv = ZeroConv2D(2, 4)  # the original's conv2d_zeros: its output channels in the original's order
    conv.set_weights(split.conv.get_weights())
    h = conv(x1).numpy()  # 2 * (C/2) = C channels
    assert h.shape == x.shape
    mean, logs = h[..., 0::2], h[..., 1::2]
    z1, eps, log_det = split.forward(x)
    np.testing.assert_allclose(eps, (x2 - mean) / np.exp(logs), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(z1, squeeze2d(x1))
    np.testing.assert_allclose(log_det, -logs.sum(axis=(1, 2, 3)), rtol=1e-5)


def test_top_prior_mean_and_logs_are_contiguous_halves():
    prior = TopPrior((2, 2, 3), learntop=True, ycond=True, n_y=4)
    perturb(prior.trainable_variables, 0.3, seed=5)
    y = np.array([0, 3], np.int32)
    # Original: h = conv2d_zeros(zeros [N, h, w, 2c]) (edge bias!) + linear_zeros(onehot(y)).
    h = prior.p(tf.zeros([2, 2, 2, 6])).numpy() + prior.y_emb(np.eye(4, dtype=np.float32)[y]).numpy()[:, None, None]
    mean, logs = prior.mean_and_logs(y)
    np.testing.assert_allclose(mean, h[..., :3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logs, h[..., 3:], rtol=1e-5, atol=1e-6)
    z = _x((2, 2, 2, 3)).numpy()
    eps, log_det = prior.forward(z, y)
    np.testing.assert_allclose(eps, (z - h[..., :3]) / np.exp(h[..., 3:]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_det, -h[..., 3:].sum(axis=(1, 2, 3)), rtol=1e-5)


def test_top_prior_plain_is_standard_normal():
    prior = TopPrior((2, 2, 3))
    assert not prior.trainable_variables
    z = _x((2, 2, 2, 3)).numpy()
    eps, log_det = prior.forward(z)
    np.testing.assert_array_equal(eps, z)
    np.testing.assert_array_equal(log_det, 0.0)


def test_log_sigmoid_matches_log_of_scale_for_extreme_values():
    # The affine log-det uses log_sigmoid (stable) where the original takes log(sigmoid(.)).
    v = np.array([-30.0, -5.0, 0.0, 5.0], np.float32)
    np.testing.assert_allclose(tf.math.log_sigmoid(v), np.log(1 / (1 + np.exp(-v.astype(np.float64)))),
                               rtol=1e-5)
    assert math.isfinite(float(tf.math.log_sigmoid(-200.0)))

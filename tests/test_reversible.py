"""glow_tf.reversible: the memory-saving mode's gradients equal ordinary backprop's.

``reversible.forward(chain, x, memory_saving=True)`` runs a level's flow steps in a
``tf.while_loop`` and recomputes every layer's input by inversion during the backward pass;
its outputs and the gradients of the input and of every variable must match
``chain.forward(x)`` differentiated normally (within 1e-4 relative), in ``tf.function`` with
and without XLA.
"""
import numpy as np
import pytest
import tensorflow as tf

from conftest import build_model, perturb, random_images, tiny_config
from glow_tf import reversible
from glow_tf.layers import FlowChain, data_dependent_init
from glow_tf.model import FlowStep

RELATIVE = 1e-4

# (flow_permutation, flow_coupling): every permutation and coupling, the original's two main
# combinations both in graph mode and under XLA.
FLOWS = {"affine_1x1conv": (2, 1), "additive_shuffle": (1, 0), "affine_lu": (3, 1), "additive_reverse": (0, 0)}
CASES = [("affine_1x1conv", False), ("affine_1x1conv", True), ("additive_shuffle", False),
         ("additive_shuffle", True), ("affine_lu", True), ("additive_reverse", False)]


def _level(flow, depth=3, channels=8, width=16, seed=0):
    """A chain of ``depth`` flow steps, actnorm-initialised on data, weights perturbed."""
    config = tiny_config(flow_permutation=flow[0], flow_coupling=flow[1], width=width)
    chain = FlowChain([FlowStep(channels, config, seed=seed + k, name=f"step_{k}") for k in range(depth)])
    x = _inputs(channels, seed)
    with data_dependent_init():
        chain.forward(x)
    perturb(chain.trainable_variables, 0.05, seed)
    return chain


def _inputs(channels, seed, n=4, size=4):
    return tf.constant(np.random.RandomState(seed + 100).standard_normal((n, size, size, channels)), tf.float32)


def _values_and_gradients(chain, x, memory_saving, jit):
    # A loss that weighs every output and the log-det differently, so no gradient is trivial.
    weights = tf.constant(np.random.RandomState(1).standard_normal(x.shape.as_list()), tf.float32)

    @tf.function(jit_compile=jit)
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            z, log_det = reversible.forward(chain, x, memory_saving)
            loss = tf.reduce_sum(z * weights) + 0.3 * tf.reduce_sum(log_det)
        return z, log_det, tape.gradient(loss, [x] + chain.trainable_variables)

    return run(x)


def _assert_close(got, want, what):
    got, want = np.asarray(got), np.asarray(want)
    scale = max(np.abs(want).max(), 1e-6)
    assert np.abs(got - want).max() <= RELATIVE * scale, (what, np.abs(got - want).max(), scale)


@pytest.mark.parametrize("flow_name, jit", CASES, ids=[f"{f}-{'xla' if j else 'graph'}" for f, j in CASES])
def test_memory_saving_gradients_equal_normal_backprop(flow_name, jit):
    chain = _level(FLOWS[flow_name])
    x = _inputs(8, seed=7)
    z_want, log_det_want, grads_want = _values_and_gradients(chain, x, memory_saving=False, jit=jit)
    z_got, log_det_got, grads_got = _values_and_gradients(chain, x, memory_saving=True, jit=jit)
    _assert_close(z_got, z_want, "z")
    _assert_close(log_det_got, log_det_want, "log_det")
    assert len(grads_got) == len(chain.trainable_variables) + 1
    names = ["x"] + [v.name for v in chain.trainable_variables]
    for name, got, want in zip(names, grads_got, grads_want):
        assert got is not None and want is not None, name
        assert np.abs(np.asarray(want)).max() > 0, name  # every gradient path is exercised
        _assert_close(got, want, name)


def test_memory_saving_runs_the_steps_in_one_loop_without_per_step_activations():
    # The forward loop carries only (i, z, log_det): the gradient never walks into it, so no
    # while-loop accumulators (per-step activation stacks) are created.
    chain = _level(FLOWS["affine_1x1conv"])
    x = _inputs(8, seed=3)

    @tf.function
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            z, log_det = reversible.forward(chain, x, memory_saving=True)
        return tape.gradient(tf.reduce_sum(z) + tf.reduce_sum(log_det), x)

    graph = run.get_concrete_function(x).graph
    ops = {op.type for op in graph.get_operations()}
    assert "While" in ops or "StatelessWhile" in ops
    assert not any(op.type.startswith("TensorList") for op in graph.get_operations())


def test_data_dependent_init_runs_step_by_step_in_memory_saving_mode():
    config = tiny_config(flow_permutation=2, flow_coupling=1, gradient_checkpointing=True)
    model = build_model(config, perturb_scale=0.0, seed=4)
    x = model.preprocess(random_images(config, 8, seed=4), noise=np.zeros((8,) + config.image_shape, np.float32))
    for chain in model.levels:  # every step's actnorm got its own data-dependent values
        biases = [step.actnorm.bias.numpy() for step in chain.flow_layers]
        assert not np.allclose(biases[0], biases[1])
    assert np.isfinite(model.log_prob(x).numpy()).all()

"""glow_tf.reversible: the memory-saving mode keeps no per-step activations.

That its values and gradients equal ordinary backprop's (and the unrolled steps') is checked
in test_scan.py for every permutation and coupling, in graph mode and under XLA.
"""
import numpy as np
import tensorflow as tf

from conftest import build_model, perturb, random_images, tiny_config
from glow_tf.layers import FlowScan, data_dependent_init
from glow_tf.model import FlowStep


def _scan(memory_saving, depth=3, channels=8):
    config = tiny_config(flow_permutation=2, flow_coupling=1, width=16)
    scan = FlowScan(lambda i: FlowStep(channels, config, seed=i, name="step"), depth, memory_saving=memory_saving)
    x = tf.constant(np.random.RandomState(0).standard_normal((4, 4, 4, channels)), tf.float32)
    with data_dependent_init():
        scan.forward(x)
    perturb(scan.trainable_variables, 0.05)
    return scan, x


def _gradient_graph(scan, x):
    @tf.function
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            z, log_det = scan.forward(x)
            loss = tf.reduce_sum(z) + tf.reduce_sum(log_det)
        grads = tape.gradient(loss, [x] + scan.trainable_variables)
        assert all(g is not None for g in grads)
        return grads

    graph_def = run.get_concrete_function(x).graph.as_graph_def()
    return [node.op for node in graph_def.node] + [node.op for f in graph_def.library.function for node in f.node_def]


def test_memory_saving_keeps_no_per_step_activations():
    # TensorFlow's own differentiation of the loop would push every step's intermediates onto
    # accumulator lists (TensorListPushBack); neither mode lets it. The per-step lists left are
    # the stacks' gradients (both modes) and, in normal mode only, the inputs of the step's
    # three layers (actnorm, permutation, coupling).
    lists = {}
    for memory_saving in (False, True):
        scan, x = _scan(memory_saving)
        ops = _gradient_graph(scan, x)
        assert "While" in ops or "StatelessWhile" in ops
        assert "TensorListPushBack" not in ops
        lists[memory_saving] = ops.count("TensorListReserve")
    assert lists[False] - lists[True] == 3


def test_data_dependent_init_runs_step_by_step_in_memory_saving_mode():
    config = tiny_config(flow_permutation=2, flow_coupling=1, gradient_checkpointing=True)
    model = build_model(config, perturb_scale=0.0, seed=4)
    x = model.preprocess(random_images(config, 8, seed=4), noise=np.zeros((8,) + config.image_shape, np.float32))
    for scan in model.levels:  # every step's actnorm got its own data-dependent values
        biases = scan.stack_of(scan.template.actnorm.bias).numpy()
        assert not np.allclose(biases[0], biases[1])
    assert np.isfinite(model.log_prob(x).numpy()).all()

"""glow_tf.layers.reversible: what each mode's backward loop keeps and computes.

That its values and gradients equal ordinary backprop's (and the unrolled steps') is checked
in test_scan.py for every permutation and coupling, in graph mode and under XLA.
"""
import numpy as np
import tensorflow as tf

from benchmarks import harness
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


def _gradient(scan, jit_compile=False):
    @tf.function(jit_compile=jit_compile)
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            z, log_det = scan.forward(x)
            loss = tf.reduce_sum(z) + tf.reduce_sum(log_det)
        grads = tape.gradient(loss, [x] + scan.trainable_variables)
        assert all(g is not None for g in grads)
        return grads

    return run


def test_backward_loops_keep_no_accumulators():
    # TensorFlow's own differentiation of the loop would push every step's intermediates onto
    # accumulator lists (TensorListPushBack); neither mode lets it. The per-step lists left are
    # the stacks' gradients (both modes) and, in normal mode only, the inputs of the step's
    # three layers (actnorm, permutation, coupling) and the coupling network's three
    # activations (its two hidden layers before their relu, and its output).
    lists = {}
    for memory_saving in (False, True):
        scan, x = _scan(memory_saving)
        ops = harness.graph_op_types(_gradient(scan).get_concrete_function(x))
        assert "While" in ops or "StatelessWhile" in ops
        assert "TensorListPushBack" not in ops
        lists[memory_saving] = ops.count("TensorListReserve")
    assert lists[True] == len(scan.trainable_variables)
    assert lists[False] - lists[True] == 3 + 3


def test_normal_mode_backward_does_not_recompute_the_coupling_network():
    # Backprop costs about twice the forward's convolution and matmul FLOPs (the gradients of
    # the inputs and of the weights), so forward + backward is about 3x the forward alone; a
    # backward that evaluated the coupling network again is about 4x. The memory-saving mode,
    # which recomputes each step by inversion, is the control. FLOPs of the XLA-compiled
    # programs, after XLA removed what nothing reads.
    def flops(fn, x):
        return harness.hlo_flops(fn.experimental_get_compiler_ir(x)(stage="optimized_hlo"))

    scan, x = _scan(memory_saving=False)
    forward = flops(tf.function(lambda x: scan.forward(x), jit_compile=True), x)
    ratios = {memory_saving: flops(_gradient(_scan(memory_saving)[0], jit_compile=True), x) / forward
              for memory_saving in (False, True)}
    assert ratios[False] < 3.2 and ratios[True] > 3.8, ratios


def test_data_dependent_init_runs_step_by_step_in_memory_saving_mode():
    config = tiny_config(flow_permutation=2, flow_coupling=1, gradient_checkpointing=True)
    model = build_model(config, perturb_scale=0.0, seed=4)
    x = model.preprocess(random_images(config, 8, seed=4), noise=np.zeros((8,) + config.image_shape, np.float32))
    for scan in model.levels:  # every step's actnorm got its own data-dependent values
        biases = scan.stack_of(scan.template.actnorm.bias).numpy()
        assert not np.allclose(biases[0], biases[1])
    assert np.isfinite(model.log_prob(x).numpy()).all()

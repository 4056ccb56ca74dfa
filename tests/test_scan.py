"""glow_tf.layers.FlowScan: a level's flow steps as one loop over stacked parameters.

The loop must compute exactly what the same steps, as separate layers applied one after the
other, compute: values, log-dets, inverses and gradients (normal and memory-saving mode, graph
and XLA), alone and inside a whole Glow (every permutation, ycond, learntop). And what it is
for: the traced training step must not grow with depth.
"""
import numpy as np
import pytest
import tensorflow as tf

import glow_tf
from benchmarks import harness
from conftest import build_model, continuous_batch, perturb, tiny_config
from glow_tf import checkpoints
from glow_tf.layers import FlowChain, FlowScan, data_dependent_init, squeeze2d, unsqueeze2d
from glow_tf.model import FlowStep, standard_normal_log_prob

RELATIVE = 1e-5

# (flow_permutation, flow_coupling)
FLOWS = {"affine_1x1conv": (2, 1), "additive_shuffle": (1, 0), "affine_lu": (3, 1), "additive_reverse": (0, 0)}


def _scan(flow, memory_saving=False, depth=3, channels=8, width=16, seed=0):
    config = tiny_config(flow_permutation=flow[0], flow_coupling=flow[1], width=width)
    scan = FlowScan(lambda i: FlowStep(channels, config, seed=seed + i, name="step"), depth,
                    memory_saving=memory_saving)
    with data_dependent_init():
        scan.forward(_inputs(channels, seed))
    perturb(scan.trainable_variables, 0.05, seed)
    return scan, config


def _unrolled(scan, config):
    """The same steps as separate layers (a FlowChain), holding the scan's values row by row."""
    channels = scan.template.actnorm.n_channels
    steps = [FlowStep(channels, config, name=f"step_{i}") for i in range(scan.depth)]
    for i, step in enumerate(steps):
        for v, stack in zip(step.variables, scan.stacks):
            v.assign(stack[i])
    return FlowChain(steps)


def _stacked_gradients(chain, grads):
    """Per-step gradients of a FlowChain's variables -> one [depth, ...] array per stack."""
    per_step = len(chain.flow_layers[0].trainable_variables)
    rows = [grads[i * per_step:(i + 1) * per_step] for i in range(len(chain.flow_layers))]
    return [np.stack([np.asarray(row[k]) for row in rows]) for k in range(per_step)]


def _inputs(channels, seed, n=4, size=4):
    return tf.constant(np.random.RandomState(seed + 100).standard_normal((n, size, size, channels)), tf.float32)


def _assert_close(got, want, what, relative=RELATIVE):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    scale = max(np.abs(want).max(), 1e-6)
    assert np.abs(got - want).max() <= relative * scale, (what, np.abs(got - want).max(), scale)


def _values_and_gradients(flow, x, jit):
    weights = tf.constant(np.random.RandomState(1).standard_normal(x.shape.as_list()), tf.float32)

    @tf.function(jit_compile=jit)
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            z, log_det = flow.forward(x)
            # Every output and the log-det weighed differently: no gradient is trivial.
            loss = tf.reduce_sum(z * weights) + 0.3 * tf.reduce_sum(log_det)
        return z, log_det, flow.inverse(z)[0], tape.gradient(loss, [x] + flow.trainable_variables)

    return run(x)


CASES = [(f, m, j) for f in FLOWS for m in (False, True) for j in (False, True)
         if j or f in ("affine_1x1conv", "additive_shuffle")]


@pytest.mark.parametrize("flow_name, memory_saving, jit", CASES,
                         ids=[f"{f}-{'reversible' if m else 'normal'}-{'xla' if j else 'graph'}" for f, m, j in CASES])
def test_loop_equals_the_unrolled_steps(flow_name, memory_saving, jit):
    scan, config = _scan(FLOWS[flow_name], memory_saving)
    chain = _unrolled(scan, config)
    x = _inputs(8, seed=7)
    z_got, log_det_got, x_got, grads_got = _values_and_gradients(scan, x, jit)
    z_want, log_det_want, x_want, grads_want = _values_and_gradients(chain, x, jit)
    _assert_close(z_got, z_want, "z")
    _assert_close(log_det_got, log_det_want, "log_det")
    _assert_close(x_got, x_want, "inverse")
    _assert_close(x_got, x, "inverse(forward(x))", 1e-4)
    _assert_close(grads_got[0], grads_want[0], "grad x")
    stacked_want = _stacked_gradients(chain, grads_want[1:])
    assert len(grads_got) - 1 == len(stacked_want) == len(scan.trainable_variables)
    for stack, got, want in zip(scan.trainable_variables, grads_got[1:], stacked_want):
        assert np.abs(want).max() > 0, stack.name  # every gradient path is exercised
        _assert_close(got, want, stack.name)


def test_stacks_start_at_each_steps_own_initial_values():
    config = tiny_config(flow_permutation=1, flow_coupling=1)
    scan = FlowScan(lambda i: FlowStep(8, config, seed=10 + i, name="step"), 3)
    for i in range(3):
        step = FlowStep(8, config, seed=10 + i, name="step")
        indices = scan.stack_of(scan.template.permutation.indices).numpy()[i]
        np.testing.assert_array_equal(indices, step.permutation.indices.numpy())
    kernels = scan.stack_of(scan.template.coupling.f1.l_1.kernel).numpy()
    assert not np.allclose(kernels[0], kernels[1])  # random initialisers drawn per step
    assert scan.variables and all(v.shape[0] == 3 for v in scan.variables)
    # The template's own variables are not the scan's (not trained, not saved).
    template = {v.ref() for v in scan.template.variables}
    assert not template & {v.ref() for v in scan.variables}


def test_steps_of_different_structure_are_refused():
    config = tiny_config(flow_permutation=2)
    with pytest.raises(ValueError, match="step 1 has variables"):
        FlowScan(lambda i: FlowStep(8 if i == 0 else 4, config, name="step"), 2)
    with pytest.raises(ValueError, match="expected depth a positive int"):
        FlowScan(lambda i: FlowStep(8, config, name="step"), 0)


def test_data_dependent_init_runs_step_by_step():
    # Each step initialises from the output of the already-initialised steps before it, as
    # the unrolled steps do under data_dependent_init.
    config = tiny_config(flow_permutation=2, flow_coupling=1)
    scan = FlowScan(lambda i: FlowStep(8, config, seed=i, name="step"), 3)
    chain = _unrolled(scan, config)  # the same initial values, before init
    x = _inputs(8, seed=5)
    with data_dependent_init():
        z_scan, _ = scan.forward(x)
        z_chain, _ = chain.forward(x)
    _assert_close(z_scan, z_chain, "init output")
    for k, stack in enumerate(scan.stacks):
        want = np.stack([step.variables[k].numpy() for step in chain.flow_layers])
        _assert_close(stack.numpy(), want, stack.name)
    biases = scan.stack_of(scan.template.actnorm.bias).numpy()
    assert not np.allclose(biases[0], biases[1])


# ------------------------------------------------------------------- inside a whole Glow
def _unrolled_encode(model, chains, x, y):
    """Glow's encoder written out with the unrolled levels: (eps list, log p(x))."""
    z, log_det, eps = squeeze2d(x), 0.0, []
    for level, chain in enumerate(chains):
        z, level_log_det = chain.forward(z)
        log_det += level_log_det
        if level < len(model.splits):
            z, level_eps, split_log_det = model.splits[level].forward(z)
            eps.append(level_eps)
            log_det += split_log_det
    top_eps, top_log_det = model.top_prior.forward(z, y)
    eps.append(top_eps)
    return eps, tf.add_n([standard_normal_log_prob(e) for e in eps]) + log_det + top_log_det


def _unrolled_decode(model, chains, eps, y):
    z, _ = model.top_prior.inverse(eps[-1], y)
    for level in reversed(range(len(chains))):
        if level < len(model.splits):
            z, _ = model.splits[level].inverse(z, eps[level])
        z, _ = chains[level].inverse(z)
    return unsqueeze2d(z)


MODELS = {"affine_1x1_ycond_learntop": dict(flow_permutation=2, flow_coupling=1, learntop=True, ycond=True),
          "additive_shuffle": dict(flow_permutation=1, flow_coupling=0),
          "affine_reverse_learntop": dict(flow_permutation=0, flow_coupling=1, learntop=True),
          "additive_lu_ycond_memory_saving": dict(flow_permutation=3, flow_coupling=0, ycond=True,
                                                  gradient_checkpointing=True)}


@pytest.mark.parametrize("name", MODELS)
def test_glow_equals_its_unrolled_levels(name):
    config = tiny_config(depth=3, **MODELS[name])
    model = build_model(config, perturb_scale=0.05, seed=3)
    chains = [_unrolled(scan, config) for scan in model.levels]
    x, y = continuous_batch(model, 5, seed=4)

    @tf.function
    def looped():
        with tf.GradientTape() as tape:
            log_prob = model.log_prob(x, y)
            loss = -tf.reduce_mean(log_prob)
        eps = model.encode(x, y)
        return log_prob, eps, model.decode(eps, y), tape.gradient(loss, model.trainable_variables)

    @tf.function
    def unrolled():
        level_variables = [v for chain in chains for v in chain.trainable_variables]
        others = [v for v in model.trainable_variables if all(v is not s for scan in model.levels for s in scan.stacks)]
        with tf.GradientTape() as tape:
            eps, log_prob = _unrolled_encode(model, chains, x, y)
            loss = -tf.reduce_mean(log_prob)
        grads = tape.gradient(loss, level_variables + others)
        return log_prob, eps, _unrolled_decode(model, chains, eps, y), grads[:len(level_variables)], grads[len(level_variables):]

    log_prob, eps, decoded, grads = looped()
    log_prob_want, eps_want, decoded_want, level_grads_want, other_grads_want = unrolled()
    _assert_close(log_prob, log_prob_want, "log_prob")
    for level, (got, want) in enumerate(zip(eps, eps_want)):
        _assert_close(got, want, f"eps_{level}")
    _assert_close(decoded, decoded_want, "decode")
    _assert_close(decoded, x, "decode(encode(x))", 1e-4)
    want_by_ref = {}
    offset = 0
    for scan, chain in zip(model.levels, chains):
        n = len(chain.trainable_variables)
        for stack, want in zip(scan.trainable_variables, _stacked_gradients(chain, level_grads_want[offset:offset + n])):
            want_by_ref[stack.ref()] = want
        offset += n
    others = [v for v in model.trainable_variables if v.ref() not in want_by_ref]
    want_by_ref.update({v.ref(): g for v, g in zip(others, other_grads_want)})
    for v, got in zip(model.trainable_variables, grads):
        _assert_close(got, want_by_ref[v.ref()], v.name)


# --------------------------------------------------------------------- flat in depth
def _training_step_op_count(depth, memory_saving):
    config = tiny_config(depth=depth, flow_permutation=2, flow_coupling=1, gradient_checkpointing=memory_saving)
    model = build_model(config, perturb_scale=0.0)
    x, _ = continuous_batch(model, 2)
    optimizer = glow_tf.optim.make_optimizer("adamax", model.trainable_variables, beta2=0.99)
    ema = glow_tf.optim.PolyakAverage(model.trainable_variables, 0.99)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(model.log_prob(x))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(model.trainable_variables, grads, 1e-3)
        ema.update(model.trainable_variables)
        return loss

    # Ops of the step and of every function it calls (loop bodies, their gradients).
    return len(harness.graph_op_types(step.get_concrete_function(x)))


@pytest.mark.parametrize("memory_saving", [False, True], ids=["normal", "reversible"])
def test_traced_training_step_does_not_grow_with_depth(memory_saving):
    ops_2, ops_6 = (_training_step_op_count(depth, memory_saving) for depth in (2, 6))
    assert ops_6 <= 1.02 * ops_2, (ops_2, ops_6)


def test_template_variables_are_never_read_by_the_model():
    # Every variable a traced model function reads is one of the model's own: a layer that read
    # a weight without base.read (bypassing the step's stand-in) would capture a template variable.
    model = build_model(tiny_config(flow_permutation=1, flow_coupling=1, learntop=True), seed=1)
    x, _ = continuous_batch(model, 2)

    @tf.function
    def run(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model.log_prob(x))
        return tape.gradient(loss, model.trainable_variables), model.decode(model.encode(x))

    graph = run.get_concrete_function(x).graph
    read = {v.ref() for v in graph.variables}
    assert read and read <= {v.ref() for v in model.variables}


# ------------------------------------------------------------------- checkpoint layout
def test_old_per_step_checkpoint_is_refused_with_what_to_do(tmp_path):
    # The layout glow_tf wrote before steps were stacked: one object per flow step.
    old_model = tf.Module()
    old_model.levels = [tf.Module()]
    old_model.levels[0].flow_layers = [tf.Module()]
    old_model.levels[0].flow_layers[0].actnorm = tf.Module()
    old_model.levels[0].flow_layers[0].actnorm.bias = tf.Variable(tf.zeros([1, 1, 1, 12]))
    prefix = tf.train.Checkpoint(model=old_model).save(str(tmp_path / "ckpt"))
    with pytest.raises(ValueError, match="old per-step layout.*export it with the glow_tf that wrote it"):
        checkpoints.check_layout(prefix)
    model = build_model(tiny_config(), perturb_scale=0.0)
    checkpoints.check_layout(tf.train.Checkpoint(model=model).save(str(tmp_path / "new")))  # no error

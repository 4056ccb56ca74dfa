"""glow_tf.optim against a numpy transcription of the original optim.py's update formulas."""
import numpy as np
import pytest
import tensorflow as tf

from glow_tf import optim

SHAPES = [(3, 4), (5,)]


def original_updates(name, weights, grads_per_step, lrs, beta1, beta2, weight_decay, eps=1e-8,
                     grad_squares_per_step=None):
    """The original optim.py (adamax / adam / adam2), one step per entry, in numpy float64."""
    weights = [w.astype(np.float64) for w in weights]
    m1 = [np.zeros_like(w) for w in weights]
    m2 = [np.zeros_like(w) for w in weights]
    for t, (grads, lr) in enumerate(zip(grads_per_step, lrs), start=1):
        alpha_t = lr * np.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
        for i, g in enumerate(grads):
            mom1_new = beta1 * m1[i] + (1.0 - beta1) * g if beta1 > 0 else g
            m1[i] = mom1_new
            if name == "adamax":
                m2[i] = np.maximum(beta2 * m2[i], np.abs(g))
                delta = mom1_new / (m2[i] + eps)
            else:
                g2 = grad_squares_per_step[t - 1][i] if name == "adam2" else np.square(g)
                m2[i] = beta2 * m2[i] + (1.0 - beta2) * g2
                delta = mom1_new / (np.sqrt(m2[i]) + eps)
            weights[i] = weight_decay * weights[i] - alpha_t * delta
    return weights


def polyak_numpy(initial, weights_per_step, decay):
    shadows = [w.astype(np.float64) for w in initial]
    for weights in weights_per_step:
        shadows = [s - (1.0 - decay) * (s - w) for s, w in zip(shadows, weights)]
    return shadows


def _random(rng, n_steps):
    weights = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in SHAPES] for _ in range(n_steps)]
    squares = [[np.square(g) + rng.uniform(0, 1, g.shape).astype(np.float32) for g in step] for step in grads]
    return weights, grads, squares


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
@pytest.mark.parametrize("beta1,weight_decay,ok", [(0.9, 1.0, True), (0.0, 0.999, True), (0.9, 1.0, tf.constant(True))])
def test_updates_match_the_original_formulas(name, beta1, weight_decay, ok):
    rng = np.random.RandomState(0)
    n_steps, beta2 = 6, optim.polyak_decay(train_its=10, polyak_epochs=1)
    weights, grads, squares = _random(rng, n_steps)
    lrs = [0.0, 1e-3, 2e-3, 3e-3, 1e-2, 1e-2]  # warm-up from 0 as the original's first step
    variables = [tf.Variable(w) for w in weights]
    opt = optim.make_optimizer(name, variables, beta2=beta2, beta1=beta1, weight_decay=weight_decay)
    for step in range(n_steps):
        opt.apply(variables, [tf.constant(g) for g in grads[step]], lrs[step], ok=ok,
                  grad_squares=[tf.constant(s) for s in squares[step]] if opt.needs_grad_squares else None)
    expected = original_updates(name, weights, grads, lrs, beta1, beta2, weight_decay,
                                grad_squares_per_step=squares)
    for v, e in zip(variables, expected):
        np.testing.assert_allclose(v.numpy(), e, rtol=2e-5, atol=1e-6)
    assert opt.t.numpy() == n_steps + 1  # counts from 1, as the original's adam_t


def test_adam2_uses_the_mean_of_squares_not_the_square_of_the_mean():
    rng = np.random.RandomState(1)
    weights, grads, squares = _random(rng, 3)
    results = {}
    for name in ("adam", "adam2"):
        variables = [tf.Variable(w) for w in weights]
        opt = optim.make_optimizer(name, variables, beta2=0.9)
        for step in range(3):
            opt.apply(variables, grads[step], 1e-2, grad_squares=squares[step])
        results[name] = variables[0].numpy()
    assert np.abs(results["adam"] - results["adam2"]).max() > 1e-4
    with pytest.raises(ValueError, match="grad_squares"):
        optim.make_optimizer("adam2", [tf.Variable(weights[0])], beta2=0.9).apply(
            [tf.Variable(weights[0])], [grads[0][0]], 1e-3)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_a_step_that_is_not_ok_changes_nothing(name):
    rng = np.random.RandomState(2)
    weights, grads, squares = _random(rng, 2)
    variables = [tf.Variable(w) for w in weights]
    opt = optim.make_optimizer(name, variables, beta2=0.9)
    ema = optim.PolyakAverage(variables, decay=0.9)
    opt.apply(variables, grads[0], 1e-2, grad_squares=squares[0])
    ema.update(variables)
    state = [v.numpy().copy() for v in variables + opt.m1 + opt.m2 + ema.shadows + [opt.t]]
    nan_grads = [np.full(g.shape, np.nan, np.float32) for g in grads[1]]
    opt.apply(variables, nan_grads, 1e-2, ok=False, grad_squares=nan_grads)
    ema.update(variables, ok=False)
    after = [v.numpy() for v in variables + opt.m1 + opt.m2 + ema.shadows + [opt.t]]
    for before, now in zip(state, after):
        np.testing.assert_array_equal(before, now)


def test_polyak_average_starts_at_the_weights_and_follows_them():
    rng = np.random.RandomState(3)
    initial = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    variables = [tf.Variable(w) for w in initial]
    ema = optim.PolyakAverage(variables, decay=0.8)
    for v, w in zip(ema.shadows, initial):
        np.testing.assert_array_equal(v.numpy(), w)
    history = []
    for _ in range(4):
        for v in variables:
            v.assign_add(rng.standard_normal(v.shape).astype(np.float32))
        history.append([v.numpy() for v in variables])
        ema.update(variables)
    for shadow, expected in zip(ema.shadows, polyak_numpy(initial, history, 0.8)):
        np.testing.assert_allclose(shadow.numpy(), expected, rtol=1e-5, atol=1e-6)

    raw = [v.numpy().copy() for v in variables]
    averaged = [s.numpy().copy() for s in ema.shadows]
    ema.swap(variables)
    for v, a in zip(variables, averaged):
        np.testing.assert_array_equal(v.numpy(), a)
    ema.swap(variables)
    for v, r in zip(variables, raw):
        np.testing.assert_array_equal(v.numpy(), r)


def test_bad_arguments_are_clear_errors():
    v = [tf.Variable(np.zeros(3, np.float32))]
    assert optim.polyak_decay(100, 2) == pytest.approx(1 - 1 / 200)
    with pytest.raises(ValueError, match="train_its"):
        optim.polyak_decay(1, 1)
    with pytest.raises(ValueError, match="one of"):
        optim.make_optimizer("sgd", v, beta2=0.9)
    with pytest.raises(ValueError, match="beta1"):
        optim.make_optimizer("adam", v, beta2=0.9, beta1=1.0)
    with pytest.raises(ValueError, match="expected 1 variables"):
        optim.make_optimizer("adam", v, beta2=0.9).apply(v + v, [np.zeros(3)] * 2, 1e-3)
    with pytest.raises(ValueError, match="expected 1 variables"):
        optim.PolyakAverage(v, 0.9).update(v + v)

"""The original's own training numbers: its gradients and three of its optimiser steps.

Every golden fixture folder with a ``train_expected.npz`` (../shared/golden/<config>/; its
README.md says what each key is) is restored as train.py's ``--restore_path`` restores an
original checkpoint (weights, the optimiser's t and slots, the Polyak averages), in each of
train.py's modes: normal, memory-saving, and its default, memory-saving under XLA. Then
glow_tf's loss and gradients, and three of glow_tf's own training steps
(``Trainer.replica_step``, the step train.py runs, at the fixture's learning rates), are
compared with the original's. Steps are compared as increments from the checkpoint: a step
moves a weight by ~1e-5, less than float32 resolves of many weights. An original run saved
after its first step continues in glow_tf as in the original, and a fixture value perturbed
by 1e-3 (relatively) fails the comparisons.

Tolerances, derived (u = 2**-24, float32's unit roundoff):

* Loss and gradients. The loss, and each element of a weight's gradient, is a float32 sum of
  contributions from the n = N*H*W*C sub-pixels of the batch. A float32 evaluation of such a
  sum errs by at most lambda sqrt(n) u of the sum of the absolute contributions with
  probability at least 1 - 2n exp(-lambda**2 / 2) (Higham and Mary's probabilistic bound, for
  independent rounding errors; SIAM J. Sci. Comput. 2019). With lambda = 6 (< 1e-4 at
  n = 3072), two evaluations in different orders (the original's TF1 kernels and glow_tf's)
  differ by at most TAU = 2 * 6 sqrt(n) u: 4e-5 for the 16x16x3 fixtures, of |loss|, and of a
  gradient's scale (its largest |g|, standing for the sum of absolute contributions).
  Measured: ~1e-6 of the scale.
* An Adamax step k (m1 <- b1 m1 + (1 - b1) g, m2 <- max(b2 m2, |g|), w <- w - a_k m1 / d,
  d = m2 + eps): with gradients off by at most D = TAU * (their scale) (the largest over the
  steps so far), m1 and m2 are off by at most D (a convex combination of gradients; max and
  |.| are 1-Lipschitz), so the step is off by at most a_k (D + |m1| D / d) / d, elementwise
  with the original's m1 and m2; the increments add these up. Each step also rounds every
  stored value once on each side: 2u of its magnitude per step.
* The Polyak average reads each weight either before or after the step's update (the
  original's graph does not order them; ``ema_read/*`` says which each weight's read): glow_tf
  reads after, so a weight read ``before`` allows rate * |w_k - w_(k-1)| more at step k, plus
  rate times the weights' own tolerance.
* t (a step counter) and the constants (beta2, the EMA rate, alpha_t) are exact.

Outside XLA the gradients and steps run eagerly: the ops train.py's tf.function runs, without
its seconds of tracing. Under XLA the step is the Trainer's compiled one, and the loss and
gradients checked are that step's own (``gradients_from_moments``).
"""
import dataclasses
import glob
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import GOLDEN_DIR
from glow_tf import files, openai, optim
from glow_tf.plan import make_data
from glow_tf.trainer import Trainer
from glow_tf.train_config import TrainConfig

FIXTURE_FILE = "train_expected.npz"
UNIT_ROUNDOFF = 2.0 ** -24
ROUNDING_PER_STEP = 2 * UNIT_ROUNDOFF  # one rounding of a stored value on each side
LAMBDA = 6.0  # Higham and Mary's confidence parameter (module docstring)
EVALUATIONS = 2  # the original's and glow_tf's
MODES = {  # train.py's modes: --gradient_checkpointing, --jit_compile
    "normal": dict(gradient_checkpointing=0, jit_compile=False),
    "memory_saving": dict(gradient_checkpointing=1, jit_compile=False),
    "xla": dict(gradient_checkpointing=1, jit_compile=True),  # train.py's defaults
}
N_STEPS = 3
FOLDERS = sorted(folder for folder in glob.glob(os.path.join(GOLDEN_DIR, "*")) if os.path.isdir(folder))
TRAINING_FOLDERS = [folder for folder in FOLDERS if os.path.exists(os.path.join(folder, FIXTURE_FILE))]


class Fixture:
    """One folder's training numbers: train_expected.npz, the hparams and the checkpoint's values."""

    def __init__(self, folder):
        path = os.path.join(folder, FIXTURE_FILE)
        if not os.path.exists(path):
            pytest.skip(f"{folder} has no {FIXTURE_FILE} (a model-only fixture)")
        self.folder = folder
        with np.load(path) as npz:
            self.expected = dict(npz)
        with open(os.path.join(folder, "hparams.json")) as f:
            self.hps = json.load(f)
        self.prefix = files.checkpoint_prefix(folder)
        self.reader = tf.train.load_checkpoint(self.prefix)
        self.params = [str(name) for name in self.expected["param_names"]]
        self.t_name = str(self.expected["t_name"])
        n, h, w, c = self.expected["x"].shape
        self.tau = EVALUATIONS * LAMBDA * np.sqrt(n * h * w * c) * UNIT_ROUNDOFF

    def hp(self, name):
        return self.expected[f"hps/{name}"].item()

    def keys(self, weight):
        """{kind: checkpoint name} of a weight, its slots and its average (m1 absent when beta1 == 0)."""
        keys = {"w": weight, "m2": str(self.expected[f"slot_m2/{weight}"]),
                "shadow": str(self.expected[f"shadow/{weight}"])}
        if f"slot_m1/{weight}" in self.expected:
            keys["m1"] = str(self.expected[f"slot_m1/{weight}"])
        return keys

    def value(self, step, name):
        """A checkpoint variable after ``step`` original steps (0: as saved)."""
        return self.expected[f"step{step}/{name}"] if step else self.reader.get_tensor(name)

    def gradient(self, step, weight):
        """The gradient the original's step ``step`` (1, 2, 3) used."""
        return self.expected[f"grad/{weight}" if step == 1 else f"used_grad{step}/{weight}"]

    def ema_read(self, step, weight):
        return str(self.expected[f"ema_read/{weight}"][step - 1])

    def state(self, step):
        """{checkpoint name: value} of every variable after ``step`` original steps."""
        return {name: self.value(step, name) for name in self.reader.get_variable_to_shape_map()}


@dataclasses.dataclass
class Run:
    """What glow_tf computed from a restored checkpoint.

    Attributes:
      trainer: the Trainer, after the steps.
      restored: Trainer.start's description of the restore.
      start: the original step the checkpoint holds (0: the fixture's own).
      stats, grads: the statistics [4] and {weight: gradient} at the restored state: replica_grads',
        or under XLA the compiled step's own (its statistics, its gradients read back from its
        moments: ``gradients_from_moments``).
      grad_slack: {weight: how far reading the gradients back may round them} (0 without XLA).
      step_stats: [steps, 4] each step's statistics (at the weights before it).
      states: [start, then after each step] {checkpoint name: value} of weights, slots, averages and t.
    """
    trainer: Trainer
    restored: str
    start: int
    stats: np.ndarray
    grads: dict
    grad_slack: dict
    step_stats: np.ndarray
    states: list


def trainer_for(fixture, mode, restore_path, logdir, **changes):
    """glow_tf's Trainer for the fixture's model and optimiser flags (and ``changes``), restored from
    ``restore_path``; and Trainer.start's description of the restore."""
    hps = fixture.hps
    config = TrainConfig.from_flags({**dict(
        problem="digits", image_size=hps["image_size"], n_levels=hps["n_levels"], depth=hps["depth"],
        width=hps["width"], n_bits_x=hps["n_bits_x"], flow_permutation=hps["flow_permutation"],
        flow_coupling=hps["flow_coupling"], learntop=bool(hps["learntop"]), ycond=bool(hps["ycond"]),
        weight_y=hps["weight_y"], optimizer=fixture.hp("optimizer"), beta1=fixture.hp("beta1"),
        weight_decay=fixture.hp("weight_decay"), polyak_epochs=fixture.hp("polyak_epochs"),
        anchor_size=hps["anchor_size"], n_batch_train=hps["n_batch_train"], n_batch_init=hps["n_batch_init"],
        n_train=fixture.hp("train_its") * hps["n_batch_train"],  # the original's train_its steps per epoch
        epochs_warmup=0, restore_path=restore_path, logdir=logdir, export=False, **MODES[mode]), **changes})
    datasets, plan = make_data(config)
    trainer = Trainer(config, tf.distribute.get_strategy(), datasets, plan)
    return trainer, trainer.start()


def glow_tf_state(trainer, fixture):
    """{checkpoint name: value} of the fixture's weights, slots and averages, and t, in glow_tf."""
    state, model = trainer.state, trainer.model
    places = {kind: openai.per_weight_targets(model, variables) for kind, variables in
              [("w", state.variables), ("m1", state.optimizer.m1), ("m2", state.optimizer.m2),
               ("shadow", state.ema.shadows)] if variables}
    values = {fixture.t_name: state.optimizer.t.numpy()}
    for weight in fixture.params:
        values.update({key: places[kind][weight].value() for kind, key in fixture.keys(weight).items()})
    return values


def run_glow_tf(fixture, mode, logdir, start=0):
    """Restores the fixture's checkpoint (or, ``start`` > 0, one of the original's state after
    ``start`` steps), computes the loss and gradients, then runs the remaining steps."""
    restore_path = fixture.prefix if start == 0 else write_original_checkpoint(fixture.state(start), logdir)
    trainer, restored = trainer_for(fixture, mode, restore_path, logdir)
    x, y, noise = (tf.constant(fixture.expected[key]) for key in ("x", "y", "noise"))
    jit = trainer.config.jit_compile
    if not jit:
        stats, grads = trainer.compiled.replica_grads(x, y, noise)
        stats, grad_slack = stats.numpy(), {weight: 0.0 for weight in fixture.params}
        grads = {weight: target.value() for weight, target in openai.per_weight_targets(trainer.model, grads).items()}

    def step(lr):  # as Trainer.train_chunk runs it
        return trainer.strategy.run(trainer.compiled.replica_step, args=(x, y, noise, lr))

    states, step_stats = [glow_tf_state(trainer, fixture)], []
    for k in range(start, N_STEPS):
        step_result, ok = step(tf.constant(fixture.expected["lr"][k]))
        assert bool(ok), f"step {k + 1}: glow_tf found a non-finite loss or gradient"
        step_stats.append(step_result.numpy())
        states.append(glow_tf_state(trainer, fixture))
    if jit:  # the compiled step's own (compiling the gradients apart would double the ~10 s of compilation)
        stats = step_stats[0]
        grads, grad_slack = gradients_from_moments(fixture, states[0], states[1])
    return Run(trainer, restored, start, stats, grads, grad_slack, np.array(step_stats), states)


def gradients_from_moments(fixture, before, after):
    """({weight: the gradient a step used}, {weight: the rounding of recovering it}) from its first moments.

    The step wrote m1_new = fl(fl(b1 m1_old) + fl(c g)), with b1 and c = 1 - beta1 in float32 as
    the original's (Python floats converted), so g = (m1_new - b1 m1_old) / c, up to the three
    roundings: u (b1 |m1_old| + |m1_new|) / c + u |g| (u: float32's unit roundoff).
    """
    b1 = np.float64(np.float32(fixture.hp("beta1")))
    c = np.float64(np.float32(1.0 - fixture.hp("beta1")))
    grads, slack = {}, {}
    for weight in fixture.params:
        keys = fixture.keys(weight)
        assert "m1" in keys, "beta1 = 0 keeps no first moment: the gradient cannot be read back from the step"
        new, old = after[keys["m1"]].astype(np.float64), before[keys["m1"]].astype(np.float64)
        grads[weight] = (new - b1 * old) / c
        slack[weight] = UNIT_ROUNDOFF * ((b1 * np.abs(old) + np.abs(new)) / c + np.abs(grads[weight]))
    return grads, slack


def write_original_checkpoint(values, folder):
    """A TF1 Saver checkpoint of ``values`` ({name: array}) under the original's names, as its m.save writes."""
    variables = {name: tf.Variable(value) for name, value in values.items()}
    return tf.compat.v1.train.Saver(var_list=variables).save(None, os.path.join(folder, "original.ckpt"),
                                                             write_meta_graph=False)


# ---------------------------------------------------------------------------------- comparisons
def assert_within(what, got, want, tolerance):
    """AssertionError naming ``what`` unless |got - want| <= tolerance elementwise."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    excess = np.abs(got - want) - tolerance
    worst = int(np.argmax(excess))
    assert excess.flat[worst] <= 0, (
        f"{what}: off by {np.abs(got - want).flat[worst]:.3g} at flat index {worst} (got {got.flat[worst]:.9g}, "
        f"expected {want.flat[worst]:.9g}), tolerance {np.broadcast_to(tolerance, got.shape).flat[worst]:.3g}")


def check_loss_and_gradients(fixture, run):
    expected = fixture.expected
    want = [expected["loss_before"], *[np.mean(expected[f"{name}_before"]) for name in ("bits_x", "bits_y")]]
    assert_within("loss_before, bits_x, bits_y", run.stats[:3], want, fixture.tau * np.abs(want))
    for weight in fixture.params:
        want = expected[f"grad/{weight}"]
        assert_within(f"grad/{weight}", run.grads[weight], want,
                      fixture.tau * np.abs(want).max() + run.grad_slack[weight])


def step_tolerances(fixture, weight, start, stop):
    """{kind: tolerance of the increment from step ``start`` to step ``stop``} (module docstring)."""
    assert fixture.hp("optimizer") == "adamax", (
        f"{fixture.folder}: the step tolerances are derived for Adamax; derive {fixture.hp('optimizer')}'s first")
    keys, beta1 = fixture.keys(weight), fixture.hp("beta1")
    rate, epsilon = fixture.hp("ema_rate_f32"), fixture.hp("epsilon")

    def rounding(kind):
        magnitude = np.maximum(np.abs(fixture.value(start, keys[kind])), np.abs(fixture.value(stop, keys[kind])))
        return (stop - start) * ROUNDING_PER_STEP * magnitude

    moment_error, w_error, shadow_error = 0.0, 0.0, 0.0
    for k in range(start + 1, stop + 1):
        moment_error = max(moment_error, fixture.tau * np.abs(fixture.gradient(k, weight)).max())
        m2 = fixture.value(k, keys["m2"])
        m1 = fixture.value(k, keys["m1"]) if beta1 > 0 else fixture.gradient(k, weight)
        d = m2 + epsilon
        w_error = w_error + fixture.expected["alpha_t"][k - 1] * (moment_error + np.abs(m1) * moment_error / d) / d
        w_move = np.abs(fixture.value(k, weight) - fixture.value(k - 1, weight))
        read_before = fixture.ema_read(k, weight) == "before"
        shadow_error = shadow_error + rate * (w_error + ROUNDING_PER_STEP * np.abs(fixture.value(k, weight))
                                              + (w_move if read_before else 0.0))
    tolerances = {"w": w_error + rounding("w"), "m2": moment_error + rounding("m2"),
                  "shadow": shadow_error + rounding("shadow")}
    if "m1" in keys:
        tolerances["m1"] = moment_error + rounding("m1")
    return tolerances


def check_steps(fixture, run):
    expected, start = fixture.expected, run.start
    for index, k in enumerate(range(start + 1, N_STEPS + 1)):
        want = expected["train_stats"][k - 1]
        assert_within(f"train_stats of step {k}", run.step_stats[index], want, fixture.tau * np.abs(want))
        got_state = run.states[index + 1]
        assert_within(f"step{k}/{fixture.t_name} (t)", got_state[fixture.t_name], fixture.value(k, fixture.t_name), 0)
        for weight in fixture.params:
            for kind, tolerance in step_tolerances(fixture, weight, start, k).items():
                key = fixture.keys(weight)[kind]
                assert_within(f"step{k}/{key} ({kind} of {weight}) - step{start}",
                              got_state[key] - run.states[0][key],
                              fixture.value(k, key) - fixture.value(start, key), tolerance)


# ---------------------------------------------------------------------------------- the tests
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """glow_tf's Run of (folder, mode, start), each computed once."""
    cache = {}

    def get(folder, mode, start=0):
        if (folder, mode, start) not in cache:
            fixture = Fixture(folder)
            logdir = str(tmp_path_factory.mktemp(f"{os.path.basename(folder)}_{mode}_{start}"))
            cache[folder, mode, start] = run_glow_tf(fixture, mode, logdir, start)
        return cache[folder, mode, start]

    return get


def test_training_fixtures_exist():
    pattern = os.path.join(GOLDEN_DIR, "*", FIXTURE_FILE)
    assert TRAINING_FOLDERS, f"expected golden training fixtures {pattern}, found none"


@pytest.mark.parametrize("folder", FOLDERS, ids=os.path.basename)
def test_slot_names_and_constants_are_the_originals(runs, folder):
    fixture, run = Fixture(folder), runs(folder, "normal")
    trainer, restored = run.trainer, run.restored
    assert openai.trainable_names(trainer.model) == fixture.params
    t_name, slots = openai.optimizer_slot_names(fixture.params, fixture.hp("beta1"))
    assert t_name == fixture.t_name
    assert slots == {weight: (fixture.keys(weight).get("m1"), fixture.keys(weight)["m2"]) for weight in fixture.params}
    assert "optimizer state" in restored and "Polyak average" in restored, restored
    optimizer, average = trainer.state.optimizer, trainer.state.ema
    assert trainer.plan.beta2 == fixture.hp("beta2") == fixture.hp("ema_decay")
    assert average.rate == np.float32(fixture.hp("ema_rate_f32"))
    assert (optimizer.beta1, optimizer.epsilon, optimizer.weight_decay) == tuple(
        fixture.hp(name) for name in ("beta1", "epsilon", "weight_decay"))
    for k in range(N_STEPS):  # the original's t before step k + 1 is k + 1 (it starts at 1)
        correction = optim.bias_correction(tf.constant(k + 1.0), optimizer.beta1, optimizer.beta2)
        alpha = fixture.expected["lr"][k] * correction
        assert alpha.numpy() == fixture.expected["alpha_t"][k], k


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("folder", FOLDERS, ids=os.path.basename)
def test_loss_and_gradients_are_the_originals(runs, folder, mode):
    check_loss_and_gradients(Fixture(folder), runs(folder, mode))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("folder", FOLDERS, ids=os.path.basename)
def test_three_training_steps_are_the_originals(runs, folder, mode):
    fixture, run = Fixture(folder), runs(folder, mode)
    for name, value in fixture.state(0).items():  # the restore: every number the steps read
        if name in run.states[0]:
            np.testing.assert_array_equal(run.states[0][name], value, err_msg=name)
    check_steps(fixture, run)


@pytest.mark.parametrize("folder", FOLDERS, ids=os.path.basename)
def test_an_original_run_continues_from_its_checkpoint(runs, folder):
    """The original's state after step 1 (t = 2, non-zero moments), saved as its Saver would, restored
    with --restore_path: glow_tf's steps 2 and 3 are the original's."""
    fixture = Fixture(folder)
    run = runs(folder, "normal", start=1)
    assert "optimizer state (t = 2" in run.restored, run.restored
    for name, value in fixture.state(1).items():
        if name in run.states[0]:
            np.testing.assert_array_equal(run.states[0][name], value, err_msg=name)
    check_steps(fixture, run)


def test_a_slot_layout_of_another_beta1_is_a_clear_error(tmp_path):
    fixture = Fixture(TRAINING_FOLDERS[0])
    with pytest.raises(ValueError, match=r"--beta1 0\.0 .* found \d+ \(t and two slots per weight: written with "
                                         r"--beta1 > 0\)"):
        trainer_for(fixture, "normal", fixture.prefix, str(tmp_path), beta1=0.0)


def test_an_original_checkpoint_written_with_beta1_0_restores_its_one_slot_per_weight(tmp_path):
    """With beta1 = 0 the original keeps no m1: t is Variable, weight k's m2 is Variable_(k+1)."""
    fixture = Fixture(TRAINING_FOLDERS[0])
    values = {name: value for name, value in fixture.state(1).items() if not name.startswith("Variable")}
    values[fixture.t_name] = fixture.value(1, fixture.t_name)
    m2_values = {f"Variable_{k + 1}": fixture.value(1, fixture.keys(weight)["m2"])
                 for k, weight in enumerate(fixture.params)}
    prefix = write_original_checkpoint({**values, **m2_values}, str(tmp_path))
    trainer, restored = trainer_for(fixture, "normal", prefix, str(tmp_path), beta1=0.0)
    assert "optimizer state (t = 2" in restored, restored
    assert trainer.state.optimizer.m1 == []
    m2 = openai.per_weight_targets(trainer.model, trainer.state.optimizer.m2)
    for k, weight in enumerate(fixture.params):
        np.testing.assert_array_equal(m2[weight].value(), m2_values[f"Variable_{k + 1}"], err_msg=weight)


def test_a_checkpoint_of_weights_only_starts_the_optimizer_and_the_average_afresh(tmp_path):
    fixture = Fixture(TRAINING_FOLDERS[0])
    weights = {name: value for name, value in fixture.state(1).items()
               if name.startswith("model/") and not name.endswith(openai.EMA_SUFFIX)}
    trainer, restored = trainer_for(fixture, "normal", write_original_checkpoint(weights, str(tmp_path)), str(tmp_path))
    assert restored.endswith("(weights)"), restored
    state = trainer.state
    assert state.optimizer.t.numpy() == 1.0
    for variable, m1, m2, shadow in zip(state.variables, state.optimizer.m1, state.optimizer.m2, state.ema.shadows):
        assert not m1.numpy().any() and not m2.numpy().any()
        np.testing.assert_array_equal(shadow.numpy(), variable.numpy())
    values = glow_tf_state(trainer, fixture)
    for weight in fixture.params:
        np.testing.assert_array_equal(values[weight], weights[weight], err_msg=weight)


def _largest(values):
    return int(np.argmax(np.abs(values)))


def perturbed_copy(folder, key, destination):
    """A copy of a fixture folder whose value ``key`` (at its largest element) is 1e-3 larger, relatively."""
    copy = shutil.copytree(folder, os.path.join(destination, os.path.basename(folder)))
    path = os.path.join(copy, FIXTURE_FILE)
    with np.load(path) as npz:
        values = dict(npz)
    changed = values[key].copy()
    changed.flat[_largest(changed)] *= 1 + 1e-3
    values[key] = changed
    os.chmod(path, 0o644)
    np.savez(path, **values)
    return copy


def _some_keys(fixture):
    """One fixture value of every kind the comparisons read."""
    weight = fixture.params[len(fixture.params) // 2]
    keys = fixture.keys(weight)
    return ["loss_before", f"grad/{weight}", f"step3/{weight}", f"step1/{keys['m2']}", f"step3/{keys['shadow']}",
            f"step2/{fixture.t_name}", "train_stats"] + ([f"step2/{keys['m1']}"] if "m1" in keys else [])


@pytest.mark.parametrize("folder", TRAINING_FOLDERS[:1], ids=os.path.basename)
def test_a_value_perturbed_by_1e3_relative_fails_the_comparisons(runs, folder, tmp_path):
    fixture, run = Fixture(folder), runs(folder, "normal")
    check_loss_and_gradients(fixture, run)
    check_steps(fixture, run)
    for index, key in enumerate(_some_keys(fixture)):
        perturbed = Fixture(perturbed_copy(folder, key, str(tmp_path / str(index))))
        with pytest.raises(AssertionError) as failure:
            check_loss_and_gradients(perturbed, run)
            check_steps(perturbed, run)
        name = key.split("/", 1)[-1] if key.startswith("step") else key
        assert name in str(failure.value), (key, str(failure.value))

"""--seed seeds what the original's seed seeded: the 1x1 convs' W, the shuffle permutations,
the rest of the init and the sample grids' latents; a restored model keeps its own values."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import glow_tf
from conftest import perturb, tiny_config, write_run
from glow_tf import checkpoints, seeds
from glow_tf.plan import make_data
from glow_tf.trainer import Trainer
from glow_tf.train_config import TrainConfig
from test_train import tiny_digits


def _permutation_values(model):
    """Every level's stacked permutation parameters (1x1 conv W or shuffle indices)."""
    values = []
    for scan in model.levels:
        permutation = scan.template.permutation
        values += [scan.stack_of(v).numpy() for v in permutation.variables]
    return values


def _assert_all_differ(a, b):
    assert len(a) == len(b) and a
    for x, y in zip(a, b):
        for step_x, step_y in zip(x, y):  # every step of every level
            assert not np.array_equal(step_x, step_y)


def test_two_seeds_give_different_w_and_shuffles_and_one_seed_the_same():
    for permutation in (1, 2):  # shuffle, 1x1 conv
        config = tiny_config(flow_permutation=permutation, depth=3)
        seed_0 = _permutation_values(glow_tf.Glow(config.replace(seed=0)))
        seed_1 = _permutation_values(glow_tf.Glow(config.replace(seed=1)))
        again = _permutation_values(glow_tf.Glow(config.replace(seed=1)))
        _assert_all_differ(seed_0, seed_1)
        for x, y in zip(seed_1, again):
            np.testing.assert_array_equal(x, y)


def test_train_seed_reaches_the_model_and_the_rest_of_the_init(tmp_path):
    def initial_weights(seed):
        config = tiny_digits(tmp_path / str(seed), seed=seed, flow_permutation=2)
        seeds.seed_everything(config.seed, config.deterministic)
        datasets, plan = make_data(config)
        trainer = Trainer(config, tf.distribute.get_strategy(), datasets, plan)
        assert trainer.model.config.seed == seed
        trainer.data_dependent_init()
        return {v.name: v.numpy() for v in trainer.model.variables}

    first, second, again = initial_weights(0), initial_weights(1), initial_weights(1)
    kernels = [name for name in first if "l_1.kernel" in name]  # the N(0, .05) conv draws
    invconv = [name for name in first if "permutation.kernel" in name]
    assert kernels and invconv
    for name in kernels + invconv:
        assert not np.array_equal(first[name], second[name]), name
    for name in first:
        np.testing.assert_array_equal(second[name], again[name], err_msg=name)


def test_a_restored_model_keeps_its_own_weights_and_indices_whatever_the_seed(tmp_path):
    model = glow_tf.Glow(tiny_config(flow_permutation=1, seed=5))
    model.initialize(np.random.RandomState(0).randint(0, 256, (8, 4, 4, 3)).astype(np.uint8))
    write_run(model, str(tmp_path))
    path = os.path.join(str(tmp_path), checkpoints.CONFIG_FILE)
    with open(path) as f:
        run_config = json.load(f)
    del run_config["model"]["seed"]  # as a run written before the seed was part of the config
    with open(path, "w") as f:
        json.dump(run_config, f)
    restored = checkpoints.restore_model(str(tmp_path), use_ema=False)
    assert restored.config.seed == 0  # the default, whose indices differ from seed 5's ...
    _assert_all_differ(_permutation_values(model), _permutation_values(glow_tf.Glow(tiny_config(flow_permutation=1))))
    for ours, theirs in zip(restored.variables, model.variables):  # ... but the checkpoint's are restored
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.name)


def test_sample_grids_draw_fresh_latents_each_epoch_unless_fixed(tmp_path):
    def grids(fixed, epochs):
        config = tiny_digits(tmp_path, fixed_sample_latents=fixed)
        datasets, plan = make_data(config)
        trainer = Trainer(config, tf.distribute.get_strategy(), datasets, plan)
        trainer.data_dependent_init()
        return [[grid for _, grid in trainer.sample_grids(epoch)] for epoch in epochs]

    epoch_1, epoch_2, epoch_1_again = grids(False, [1, 2, 1])
    assert not np.array_equal(epoch_1[-1], epoch_2[-1])  # temperature 1: new latents
    assert not np.array_equal(epoch_1[-1], epoch_1[-2])  # every grid its own draws, as the original
    for a, b in zip(epoch_1, epoch_1_again):  # reproducible: seeded by (seed, epoch, grid)
        np.testing.assert_array_equal(a, b)
    fixed_1, fixed_2 = grids(True, [1, 2])
    for a, b in zip(fixed_1, fixed_2):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("ycond", [False, True])
def test_a_temperature_zero_grid_decodes_each_distinct_batch_once(tmp_path, ycond):
    config = tiny_digits(tmp_path, ycond=ycond, n_batch_train=10)  # 10 batches, each labels 0..9
    datasets, plan = make_data(config)
    trainer = Trainer(config, tf.distribute.get_strategy(), datasets, plan)
    trainer.data_dependent_init()
    perturb(trainer.model.trainable_variables, 0.1)  # priors and label embedding not zero
    decode, temperatures = trainer.compiled.sample_batch, []
    trainer.compiled.sample_batch = lambda temperature, *args: temperatures.append(float(temperature)) or decode(temperature, *args)
    (temperature, grid), *_ = trainer.sample_grids(epoch=1)
    assert temperature == 0.0 and temperatures.count(0.0) == 1 and len(temperatures) == 1 + 7 * 10
    labels = tf.constant(np.arange(10, dtype=np.int32))
    for b in range(10):  # every batch decoded on its own, with its own eps seed, gives the same images
        alone = decode(tf.constant(0.0), tf.constant([config.seed, 1000 + b], tf.int64), labels).numpy()
        np.testing.assert_array_equal(grid[b], alone)
    assert np.array_equal(grid[0][0], grid[0][1]) != ycond  # only the label changes a temperature-0 image


def test_seed_is_validated_and_read_from_original_hparams():
    with pytest.raises(ValueError, match="seed: expected an int >= 0"):
        tiny_config(seed=-1)
    hps = {"image_size": 4, "n_levels": 2, "depth": 2, "width": 8, "n_bits_x": 8, "flow_permutation": 2,
           "flow_coupling": 0, "learntop": 0, "ycond": 0, "n_y": 10, "seed": 2}
    assert glow_tf.GlowConfig.from_openai_hparams(hps).seed == 2
    assert TrainConfig.from_flags(seed=3).model.seed == 3

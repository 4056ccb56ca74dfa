"""Import of original OpenAI Glow checkpoints (glow_tf.openai.load_checkpoint).

The fixtures in ../shared/golden were written by the original TF1 code; tests that need them
skip when the folder is absent. A round trip through a TF1-style Saver checkpoint with the
original's names covers options the fixtures do not (LU 1x1 conv, reverse).
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import glow_tf
import glow_tf.openai as openai
from conftest import build_model, continuous_batch, tiny_config

FIXTURES = ["affine_1x1_ycond_5bit", "additive_shuffle_8bit"]
EMA = "/ExponentialMovingAverage"


def _fixture(golden_dir, name):
    folder = os.path.join(golden_dir, name)
    if not os.path.isdir(folder):
        pytest.skip(f"{folder} absent")
    with open(os.path.join(folder, "hparams.json")) as f:
        hps = json.load(f)
    return folder, os.path.join(folder, "model.ckpt"), hps


def _listed_model_variables(folder):
    """{name: shape} of the model parameters listed in variables.txt (no EMA, no optimiser slots)."""
    listed = {}
    with open(os.path.join(folder, "variables.txt")) as f:
        for line in f:
            name, shape, _ = line.rstrip("\n").split("\t")
            if name.startswith("model/") and EMA not in name:
                listed[name] = json.loads(shape)
    return listed


@pytest.mark.parametrize("name", FIXTURES)
def test_golden_checkpoint_maps_every_model_variable(golden_dir, name):
    folder, prefix, hps = _fixture(golden_dir, name)
    model = openai.load_checkpoint(prefix, os.path.join(folder, "hparams.json"))
    assert bool(model.initialized.numpy())
    assert model.config == glow_tf.GlowConfig.from_openai_hparams(hps)
    names = openai.openai_variable_names(model)
    listed = _listed_model_variables(folder)
    assert set(names) == set(listed)
    # Every model variable (but the `initialized` flag) has an original name; every row of a
    # level's stacks exactly one.
    mapped = [(t.variable.ref(), t.step) for t in names.values()]
    assert len(set(mapped)) == len(mapped)
    assert {ref for ref, _ in mapped} == {v.ref() for v in model.variables if v is not model.initialized}
    for scan in model.levels:
        for stack in scan.stacks:
            assert sorted(step for ref, step in mapped if ref == stack.ref()) == list(range(scan.depth))
    reader = tf.train.load_checkpoint(prefix)
    for original_name, target in names.items():
        assert target.shape.as_list() == listed[original_name], original_name
        np.testing.assert_array_equal(target.value(), reader.get_tensor(original_name), err_msg=original_name)


@pytest.mark.parametrize("name, changes, fragments", [
    ("affine_1x1_ycond_5bit", {"width": 8}, ["shape mismatch for model/0/0/f1/l_1/W", "[3, 3, 7, 16]"]),
    ("affine_1x1_ycond_5bit", {"flow_permutation": 0}, ["not in a model", "model/0/0/invconv/W"]),
    ("affine_1x1_ycond_5bit", {"learntop": False}, ["not in a model", "model/prior/p/W"]),
    ("affine_1x1_ycond_5bit", {"weight_y": 0.0}, ["not in a model", "model/classifier/W"]),
    ("additive_shuffle_8bit", {"flow_permutation": 2},
     ["missing from the checkpoint", "model/0/0/invconv/W", "not in a model", "model/0/0/shuffle/indices"]),
    ("additive_shuffle_8bit", {"depth": 3}, ["missing from the checkpoint", "model/0/2/actnorm_center/b"]),
    ("additive_shuffle_8bit", {"flow_coupling": 1}, ["shape mismatch for model/0/0/f1/l_last/W"]),
])
def test_mismatched_hparams_fail_listing_the_names(golden_dir, name, changes, fragments):
    _, prefix, hps = _fixture(golden_dir, name)
    with pytest.raises(ValueError) as info:
        openai.load_checkpoint(prefix, {**hps, **changes})
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_missing_prefix_and_directories(golden_dir, tmp_path):
    folder, prefix, hps = _fixture(golden_dir, FIXTURES[0])
    with pytest.raises(ValueError, match=r"model\.ckpt-42\.index does not exist"):
        openai.load_checkpoint(prefix + "-42", hps)
    with pytest.raises(ValueError, match="without a checkpoint"):
        openai.load_checkpoint(str(tmp_path), hps)
    # A directory with a `checkpoint` file resolves to its latest checkpoint.
    model = openai.load_checkpoint(folder, hps)
    bias = model.levels[0].stack_of(model.levels[0].template.actnorm.bias)
    np.testing.assert_array_equal(bias.numpy()[0],
                                  tf.train.load_checkpoint(prefix).get_tensor("model/0/0/actnorm_center/b"))


@pytest.mark.parametrize("name", FIXTURES)
def test_use_ema_loads_the_shadow_values(golden_dir, name):
    _, prefix, hps = _fixture(golden_dir, name)
    reader = tf.train.load_checkpoint(prefix)
    raw = openai.load_checkpoint(prefix, hps)
    ema = openai.load_checkpoint(prefix, hps, use_ema=True)
    key = "model/0/0/f1/l_1/W"
    np.testing.assert_array_equal(openai.openai_variable_names(ema)[key].value(), reader.get_tensor(key + EMA))
    assert not np.array_equal(reader.get_tensor(key + EMA), reader.get_tensor(key))
    np.testing.assert_array_equal(openai.openai_variable_names(raw)[key].value(), reader.get_tensor(key))
    # Non-trainable variables (shuffle indices) have no average and load raw.
    for original_name, target in openai.openai_variable_names(ema).items():
        if not target.trainable:
            np.testing.assert_array_equal(target.value(), reader.get_tensor(original_name))


def test_hparams_from_train_txt(golden_dir, tmp_path):
    folder, prefix, hps = _fixture(golden_dir, FIXTURES[0])
    train_txt = tmp_path / "train.txt"
    train_txt.write_text(json.dumps(hps) + "\n" + '{"epoch": 1, "train_loss": 5.5}\n')
    from_txt = openai.load_checkpoint(prefix, str(train_txt))
    from_dict = openai.load_checkpoint(prefix, hps)
    assert from_txt.config == from_dict.config
    for a, b in zip(from_txt.variables, from_dict.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_optimizer_slot_names_follow_the_originals_creation_order():
    """t, then per weight m2 and (beta1 > 0) m1, named as TF1 names unnamed variables."""
    assert openai.optimizer_slot_names(["a", "b"], beta1=0.9) == (
        "Variable", {"a": ("Variable_2", "Variable_1"), "b": ("Variable_4", "Variable_3")})
    assert openai.optimizer_slot_names(["a", "b"], beta1=0.0) == (
        "Variable", {"a": (None, "Variable_1"), "b": (None, "Variable_2")})


@pytest.mark.parametrize("changes", [
    dict(flow_permutation=3, flow_coupling=1, learntop=True, ycond=True, weight_y=0.2),
    dict(flow_permutation=0, flow_coupling=0),
], ids=["lu_affine_ycond", "reverse_additive"])
def test_round_trip_through_original_style_checkpoint(tmp_path, changes):
    """A checkpoint written by a TF1 Saver under the original's names loads into an equal model."""
    config = tiny_config(**changes)
    source = build_model(config, perturb_scale=0.05, seed=9)
    # One variable per original name, as the original's graph has them.
    names = {name: tf.Variable(target.value()) for name, target in openai.openai_variable_names(source).items()}
    prefix = tf.compat.v1.train.Saver(var_list=names).save(None, str(tmp_path / "model.ckpt"),
                                                             write_meta_graph=False)
    hps = {"image_size": config.image_size, "n_levels": config.n_levels, "depth": config.depth,
           "width": config.width, "n_bits_x": config.n_bits_x, "flow_permutation": config.flow_permutation,
           "flow_coupling": config.flow_coupling, "learntop": int(config.learntop), "ycond": int(config.ycond),
           "n_y": config.n_y, "weight_y": config.weight_y, "gradient_checkpointing": 1}
    loaded = openai.load_checkpoint(prefix, hps)
    assert loaded.config == config.replace(gradient_checkpointing=True)
    x, y = continuous_batch(source, 3)
    np.testing.assert_allclose(loaded.log_prob(x, y), source.log_prob(x, y), rtol=1e-6, atol=1e-4)
    if loaded.classifier is not None:
        np.testing.assert_allclose(loaded.y_logits(x), source.y_logits(x), rtol=1e-6, atol=1e-6)


"""GlowConfig: the original's defaults, validation with clear messages, and the original's hps."""
import json
import os

import pytest

from glow_tf import GlowConfig

GOOD = dict(image_size=16, n_channels=3, n_levels=2, depth=2, width=16)


def test_defaults_are_the_originals():
    config = GlowConfig()
    # train.py: --depth 32 --width 512 --n_levels 3 --n_bits_x 8 --flow_permutation 2
    # --flow_coupling 0, learntop/ycond off, weight_y 0; n_y 10 (cifar10).
    assert (config.depth, config.width, config.n_levels, config.n_bits_x) == (32, 512, 3, 8)
    assert (config.flow_permutation, config.flow_coupling) == (2, 0)
    assert (config.learntop, config.ycond, config.n_y, config.weight_y) == (False, False, 10, 0.0)
    assert config.n_channels == 3 and config.n_bins == 256


def test_derived_shapes():
    config = GlowConfig(image_size=32, n_channels=3, n_levels=3)
    assert config.level_shapes() == [(16, 16, 12), (8, 8, 24), (4, 4, 48)]
    assert config.eps_shapes() == [(16, 16, 6), (8, 8, 12), (4, 4, 48)]
    assert config.n_dims == 32 * 32 * 3
    assert sum(h * w * c for h, w, c in config.eps_shapes()) == config.n_dims
    assert GlowConfig(image_size=4, n_channels=1, n_levels=2).eps_shapes() == [(2, 2, 2), (1, 1, 8)]
    assert GlowConfig(n_bits_x=5).n_bins == 32


@pytest.mark.parametrize("changes, fragments", [
    (dict(image_size=24, n_levels=4), ["image_size", "multiple of 2**n_levels = 16", "24"]),
    (dict(image_size=0), ["image_size", "positive int", "0"]),
    (dict(image_size=16.0), ["image_size", "positive int", "16.0"]),
    (dict(flow_permutation=5), ["flow_permutation", "one of", "5"]),
    (dict(flow_permutation=-1), ["flow_permutation", "-1"]),
    (dict(flow_coupling=2), ["flow_coupling", "one of", "2"]),
    (dict(n_bits_x=9), ["n_bits_x", "1..8", "9"]),
    (dict(n_bits_x=0), ["n_bits_x", "0"]),
    (dict(width=-8), ["width", "positive int", "-8"]),
    (dict(depth=0), ["depth", "positive int", "0"]),
    (dict(n_levels=True), ["n_levels", "positive int", "True"]),
    (dict(n_channels="3"), ["n_channels", "positive int", "'3'"]),
    (dict(n_y=0), ["n_y", "0"]),
    (dict(learntop=1), ["learntop", "a bool", "1"]),
    (dict(ycond="yes"), ["ycond", "a bool", "'yes'"]),
    (dict(gradient_checkpointing=None), ["gradient_checkpointing", "a bool", "None"]),
    (dict(weight_y=-0.1), ["weight_y", ">= 0", "-0.1"]),
    (dict(weight_y=float("nan")), ["weight_y", "finite", "nan"]),
])
def test_bad_values_raise_expected_vs_seen(changes, fragments):
    with pytest.raises(ValueError) as info:
        GlowConfig(**{**GOOD, **changes})
    message = str(info.value)
    assert "expected" in message and "got" in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_frozen_replace_and_dict_round_trip():
    config = GlowConfig(**GOOD)
    with pytest.raises(Exception):
        config.width = 3
    assert config.replace(width=8).width == 8
    assert GlowConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown fields.*'widht'"):
        GlowConfig.from_dict({"widht": 3})
    with pytest.raises(ValueError, match="flow_permutation"):
        config.replace(flow_permutation=7)


ORIGINAL_HPS = {"image_size": 16, "n_levels": 2, "depth": 2, "width": 16, "n_bits_x": 5, "flow_permutation": 2,
                "flow_coupling": 1, "learntop": True, "ycond": True, "n_y": 10, "weight_y": 0.01,
                "gradient_checkpointing": 0, "problem": "cifar10", "lr": 0.001, "n_bins": 32.0,
                "top_shape": [4, 4, 24]}
EXPECTED = GlowConfig(image_size=16, n_channels=3, n_levels=2, depth=2, width=16, n_bits_x=5, flow_permutation=2,
                      flow_coupling=1, learntop=True, ycond=True, n_y=10, weight_y=0.01)


def test_from_openai_hparams_dict():
    assert GlowConfig.from_openai_hparams(ORIGINAL_HPS) == EXPECTED
    # argparse store_true flags may come as 0/1; gradient_checkpointing (default 1 in the original).
    hps = {**ORIGINAL_HPS, "learntop": 0, "ycond": 1, "gradient_checkpointing": 1}
    config = GlowConfig.from_openai_hparams(hps)
    assert config.learntop is False and config.ycond is True and config.gradient_checkpointing is True
    no_weight_y = {k: v for k, v in ORIGINAL_HPS.items() if k != "weight_y"}
    assert GlowConfig.from_openai_hparams(no_weight_y).weight_y == 0.0


def test_from_openai_hparams_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match=r"missing model keys \['depth'\]"):
        GlowConfig.from_openai_hparams({k: v for k, v in ORIGINAL_HPS.items() if k != "depth"})
    with pytest.raises(ValueError, match="expected a dict or a path, got list"):
        GlowConfig.from_openai_hparams([1, 2])
    with pytest.raises(ValueError, match="missing path"):
        GlowConfig.from_openai_hparams(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.txt"
    bad.write_text("not json\n{}\n")
    with pytest.raises(ValueError, match="neither JSON nor a train.txt"):
        GlowConfig.from_openai_hparams(str(bad))
    with pytest.raises(ValueError, match="image_size"):
        GlowConfig.from_openai_hparams({**ORIGINAL_HPS, "image_size": 20, "n_levels": 3})


def test_from_openai_hparams_json_and_train_txt(tmp_path):
    path = tmp_path / "hparams.json"
    path.write_text(json.dumps(ORIGINAL_HPS, indent=1))
    assert GlowConfig.from_openai_hparams(str(path)) == EXPECTED
    assert GlowConfig.from_openai_hparams(path) == EXPECTED  # os.PathLike
    train_txt = tmp_path / "train.txt"
    train_txt.write_text(json.dumps(ORIGINAL_HPS) + "\n"
                         + '{"epoch": 1, "n_processed": 50000, "train_loss": 5.1}\n'
                         + '{"epoch": 2, "n_processed": 100000, "train_loss": 4.8}\n')
    assert GlowConfig.from_openai_hparams(str(train_txt)) == EXPECTED


def test_from_openai_hparams_golden(golden_dir):
    expected = {
        "affine_1x1_ycond_5bit": EXPECTED,
        "additive_shuffle_8bit": GlowConfig(image_size=16, n_levels=3, depth=2, width=8, n_bits_x=8,
                                            flow_permutation=1, flow_coupling=0, seed=1),  # its hps: "seed": 1
    }
    for name, config in expected.items():
        path = os.path.join(golden_dir, name, "hparams.json")
        if not os.path.exists(path):
            pytest.skip(f"{path} absent")
        assert GlowConfig.from_openai_hparams(path) == config

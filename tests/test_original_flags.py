"""The original's command lines: every training command of its README parses into the config it
meant, and argparse's abbreviations of its flags work, unambiguously, as in the original."""
import os
import re
import shlex
import subprocess
import sys

import pytest
from absl import flags

from conftest import REPO_ROOT
from glow_tf import data
from glow_tf.cli import train as train_cli
from glow_tf.train_config import TrainConfig, expand_original_abbreviations

COMMANDS = os.path.join(REPO_ROOT, "tests", "data", "original_readme_commands.txt")

# What each README command asks for, read from the original's train.py: its flags (any flag left
# out keeps the original's default) and the model that follows (image_size -1: the problem's).
_MODEL = ("image_size", "n_levels", "depth", "n_bits_x", "flow_permutation", "flow_coupling", "learntop",
          "ycond", "n_y", "weight_y")
_QUANTITATIVE = dict(seed=0, learntop=True, lr=0.001, n_bits_x=8, flow_permutation=2, flow_coupling=1)
_QUALITATIVE = dict(_QUANTITATIVE, n_bits_x=5, flow_coupling=0)
EXPECTED = {
    "Simple Train with 1 GPU": (dict(depth=1), (32, 3, 1, 8, 2, 0, False, False, 10, 0.0)),
    "Train with multiple GPUs using MPI and Horovod": ({}, (32, 3, 32, 8, 2, 0, False, False, 10, 0.0)),
    "Ablation experiments": (
        dict(problem="cifar10", image_size=32, n_levels=3, depth=32, flow_permutation=0, flow_coupling=0, seed=0,
             learntop=True, lr=0.001), (32, 3, 32, 8, 0, 0, True, False, 10, 0.0)),
    "CIFAR-10 Quantitative result": (
        dict(_QUANTITATIVE, problem="cifar10", image_size=32, n_levels=3, depth=32),
        (32, 3, 32, 8, 2, 1, True, False, 10, 0.0)),
    "ImageNet 32x32 Quantitative result": (
        dict(_QUANTITATIVE, problem="imagenet-oord", image_size=32, n_levels=3, depth=48),
        (32, 3, 48, 8, 2, 1, True, False, 1000, 0.0)),
    "ImageNet 64x64 Quantitative result": (
        dict(_QUANTITATIVE, problem="imagenet-oord", image_size=64, n_levels=4, depth=48),
        (64, 4, 48, 8, 2, 1, True, False, 1000, 0.0)),
    "LSUN 64x64 Quantitative result": (
        dict(_QUANTITATIVE, problem="lsun_realnvp", category="bedroom", image_size=64, n_levels=3, depth=48),
        (64, 3, 48, 8, 2, 1, True, False, 1, 0.0)),
    "CelebA-HQ 256x256 Qualitative result": (
        dict(_QUALITATIVE, problem="celeba", image_size=256, n_levels=6, depth=32),
        (256, 6, 32, 5, 2, 0, True, False, 1, 0.0)),
    "LSUN 96x96 and 128x128 Qualitative result": (
        dict(_QUALITATIVE, problem="lsun", category="bedroom", image_size=96, n_levels=5, depth=64),
        (96, 5, 64, 5, 2, 0, True, False, 1, 0.0)),
    "Conditional CIFAR-10 Qualitative result": (
        dict(_QUALITATIVE, problem="cifar10", image_size=32, n_levels=3, depth=32, ycond=True, weight_y=0.01),
        (32, 3, 32, 5, 2, 0, True, True, 10, 0.01)),
    "Conditional ImageNet 32x32 Qualitative result": (
        dict(_QUALITATIVE, problem="imagenet", image_size=32, n_levels=3, depth=48, ycond=True, weight_y=0.01),
        (32, 3, 48, 5, 2, 0, True, True, 1000, 0.01)),
}


def readme_commands():
    """[(README heading, argv)] from the data file: ``[a/b]`` -> a, no mpiexec, no VAR=value."""
    commands, heading = [], None
    with open(COMMANDS) as f:
        for line in f.read().splitlines():
            if line.startswith("## "):
                heading = line[3:]
            elif line and not line.startswith("#"):
                words = shlex.split(re.sub(r"\[([^/\]]*)[^\]]*\]", r"\1", line))
                words = [w for w in words if not re.fullmatch(r"[A-Z_]+=\S*", w)]
                if words[0] == "mpiexec":
                    assert words[1] == "-n", line
                    words = words[3:]
                assert words[:2] == ["python", "train.py"], line
                commands.append((heading, ["train.py"] + words[2:]))
    return commands


def parse(argv):
    """TrainConfig from argv as train.py parses it."""
    flag_values = flags.FlagValues()
    train_cli.define_flags(flag_values)
    assert flag_values(train_cli.expand_argv(argv, flag_values)) == ["train.py"]
    return train_cli.config_from_flags(flag_values)


def test_the_data_file_holds_every_readme_training_command():
    assert [heading for heading, _ in readme_commands()] == list(EXPECTED)


@pytest.mark.parametrize("heading, argv", readme_commands(), ids=[h for h, _ in readme_commands()])
def test_every_original_readme_command_parses_into_what_it_meant(heading, argv):
    flags_meant, model_meant = EXPECTED[heading]
    config = parse(argv)
    assert config == TrainConfig.from_flags(flags_meant)  # valid: a config checks itself when built
    defaults = data.PROBLEM_DEFAULTS[config.data.problem]  # the original's per-problem table (test_data.py)
    image_size = defaults.image_size if config.data.image_size == -1 else config.data.image_size
    model = config.model.to_dict()
    assert (model["image_size"], model["n_y"]) == (image_size, defaults.n_y)
    assert {name: model[name] for name in _MODEL} == dict(zip(_MODEL, model_meant))
    assert (model["width"], model["n_channels"], model["gradient_checkpointing"]) == (512, 3, True)


# Flags absl knows in train.py -> boolean: TrainConfig's (as train.py defines them) and some of absl's.
DEFINED = {**{name: isinstance(value, bool) for name, value in TrainConfig().flags().items()},
           "verbosity": False, "v": False, "logtostderr": True, "help": True}


@pytest.mark.parametrize("argv, expanded", [
    (["--n_level", "3"], ["--n_levels", "3"]),
    (["--n_level=3", "--dep=4"], ["--n_levels=3", "--depth=4"]),
    (["--learn", "--yc", "--infer"], ["--learntop", "--ycond", "--inference"]),  # store_true style
    (["--epochs", "5", "--n_test", "7"], ["--epochs", "5", "--n_test", "7"]),  # exact names win
    (["--nojit_compile", "--noexport", "--nolearntop"], ["--nojit_compile", "--noexport", "--nolearntop"]),
    (["--logdir", "--n_level", "--width", "8"], ["--logdir", "--n_level", "--width", "8"]),  # a value
    (["-n_level", "3", "--", "--n_level"], ["-n_level", "3", "--", "--n_level"]),  # argparse: no
    (["--max_st", "3", "--strat", "tpu"], ["--max_st", "3", "--strat", "tpu"]),  # glow_tf's: no
])
def test_unambiguous_prefixes_of_the_originals_flags_are_spelled_out(argv, expanded):
    assert expand_original_abbreviations(["train.py"] + argv, DEFINED) == ["train.py"] + expanded


@pytest.mark.parametrize("argv, candidates", [
    (["--n_batch", "8"], "--n_batch_train, --n_batch_test, --n_batch_init"),  # the original's own
    (["--epochs_full=3"], "--epochs_full_valid, --epochs_full_sample"),
    (["--de", "4"], "--depth, --deterministic"),  # also glow_tf's
    (["--ver"], "--verbose, --verbosity"),  # also absl's
])
def test_an_ambiguous_prefix_names_every_candidate(argv, candidates):
    with pytest.raises(ValueError, match=f"^--{argv[0][2:].split('=')[0]} is ambiguous: it could be {candidates};"):
        expand_original_abbreviations(["train.py"] + argv, DEFINED)


def test_prefixes_of_glow_tfs_own_flags_stay_unknown_to_absl():
    with pytest.raises(flags.UnrecognizedFlagError, match="max_st"):
        parse(["train.py", "--max_st", "3"])


def test_train_py_fails_on_an_ambiguous_prefix_with_one_line():
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "train.py"), "--ver"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == ("train.py: error: --ver is ambiguous: it could be --verbose, "
                                              "--verbosity; spell the flag out")
    assert "Traceback" not in result.stderr

#!/usr/bin/env python
"""Trains Glow as the original OpenAI train.py, on tf.distribute with XLA; resumable exactly.

    python train.py --problem mnist --data_dir DIR --logdir logs/mnist      # train (or resume)
    python train.py --inference --restore_path logs/mnist --problem mnist --data_dir DIR
    python train.py --help                                                  # every flag

The flags are the original's (same names and defaults) plus glow_tf's; they are defined,
documented and validated in glow_tf/train_config.py; the loops live in glow_tf/train_lib.py.
As with the original's argparse, a flag of the original may be abbreviated to any prefix that
is unambiguous (`--n_level 3` is `--n_levels 3`, `--learn` is `--learntop`); a prefix that could
also mean another flag (glow_tf's or absl's) is an error naming them, and glow_tf's own flags
are spelled out in full.
"""
import dataclasses
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from glow_tf import train_config, train_lib  # noqa: E402


def _define_flags(flag_values=flags.FLAGS):
    """One absl flag per TrainConfig field, with its default and help."""
    for field in dataclasses.fields(train_config.TrainConfig):
        name, default, help_text = field.name, field.default, train_config.help_text(field.name)
        choices = field.metadata["choices"]
        if isinstance(default, bool):
            flags.DEFINE_bool(name, default, help_text, flag_values=flag_values)
        elif isinstance(default, int):
            flags.DEFINE_integer(name, default, help_text, flag_values=flag_values)
        elif isinstance(default, float):
            flags.DEFINE_float(name, default, help_text, flag_values=flag_values)
        elif choices:
            flags.DEFINE_enum(name, default, list(choices), help_text, flag_values=flag_values)
        else:
            flags.DEFINE_string(name, default, help_text, flag_values=flag_values)


def expand_argv(argv, flag_values=flags.FLAGS):
    """argv with the original's argparse abbreviations written out (ValueError if ambiguous)."""
    defined = {name: flag_values[name].boolean for name in flag_values}
    return train_config.expand_original_abbreviations(argv, defined)


def _parse_flags(argv):
    """app.run's flags parser: absl's, after the abbreviations are written out."""
    try:
        argv = expand_argv(argv)
    except ValueError as e:
        raise SystemExit(f"train.py: error: {e}") from None
    return app.parse_flags_with_usage(argv)


def config_from_flags(flag_values=flags.FLAGS) -> train_config.TrainConfig:
    return train_config.TrainConfig(**{f.name: flag_values[f.name].value
                                       for f in dataclasses.fields(train_config.TrainConfig)})


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    config = config_from_flags()
    if not flags.FLAGS["verbosity"].present:  # TensorFlow's INFO lines about every checkpoint write
        logging.set_verbosity(logging.WARNING)
    try:
        if config.inference:
            print(f"wrote {train_lib.infer(config)}")
        else:
            train_lib.train_and_evaluate(config)
    except ValueError as e:  # bad flags or data: the message says what was expected
        raise SystemExit(f"train.py: error: {e}") from None
    except train_lib.NonFiniteError as e:
        raise SystemExit(f"train.py: {e}") from None


if __name__ == "__main__":
    _define_flags()
    app.run(main, flags_parser=_parse_flags)

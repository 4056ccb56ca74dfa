"""glow-train (and train.py): trains Glow as the original OpenAI train.py, on tf.distribute with XLA; resumable exactly.

    glow-train --problem mnist --data_dir DIR --logdir logs/mnist      # train (or resume)
    glow-train --inference --restore_path logs/mnist --problem mnist --data_dir DIR
    glow-train --help                                                  # every flag

The flags are the original's (same names and defaults) plus glow_tf's; they are defined,
documented and validated in glow_tf/train_config.py; the loops live in glow_tf/train_lib.py.
As with the original's argparse, a flag of the original may be abbreviated to any prefix that
is unambiguous (`--n_level 3` is `--n_levels 3`, `--learn` is `--learntop`); a prefix that could
also mean another flag (glow_tf's or absl's) is an error naming them, and glow_tf's own flags
are spelled out in full.
"""
import dataclasses

from absl import flags

from glow_tf import cli, train_config, train_lib


def define_flags(flag_values=flags.FLAGS):
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


def config_from_flags(flag_values=flags.FLAGS) -> train_config.TrainConfig:
    return train_config.TrainConfig(**{f.name: flag_values[f.name].value
                                       for f in dataclasses.fields(train_config.TrainConfig)})


def _train():
    config = config_from_flags()
    try:
        if config.inference:
            print(f"wrote {train_lib.infer(config)}")
        else:
            train_lib.train_and_evaluate(config)
    except train_lib.NonFiniteError as e:  # the message says what to try; no traceback
        raise SystemExit(f"{cli.program_name()}: {e}") from None


def main():
    """The glow-train console script and train.py."""
    define_flags()
    cli.run(_train, expand_argv=expand_argv)

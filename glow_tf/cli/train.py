"""glow-train (and train.py): trains Glow as the original OpenAI train.py, on tf.distribute with XLA; resumable exactly.

    glow-train --problem mnist --data_dir DIR --logdir logs/mnist      # train (or resume)
    glow-train --inference --restore_path logs/mnist --problem mnist --data_dir DIR
    glow-train --help                                                  # every flag

The flags are the original's (same names and defaults) plus glow_tf's; they are defined,
documented and validated in glow_tf/train_config.py (the model's and the data's in config.py and
data/config.py); the training run lives in glow_tf/train_lib.py (its step in trainer.py), inference in
glow_tf/inference.py.
As with the original's argparse, a flag of the original may be abbreviated to any prefix that
is unambiguous (`--n_level 3` is `--n_levels 3`, `--learn` is `--learntop`); a prefix that could
also mean another flag (glow_tf's or absl's) is an error naming them, and glow_tf's own flags
are spelled out in full.

Exit status: 0 when training ended (epochs, --max_steps or --max_time); 1 on an error, with one
line saying what was expected (also when another worker of a multi-worker run failed);
42 (``preemption.EXIT_STATUS``) when SIGTERM stopped it after writing a checkpoint at the next
step boundary: the same command resumes from it.
"""
import os
import sys

import tensorflow as tf
from absl import flags

from glow_tf import checkpoints, cli, cluster, inference, preemption, train_config, train_lib


def define_flags(flag_values=flags.FLAGS):
    """One absl flag per field of train_config.FLAGS, with its default and help."""
    defaults = train_config.flag_defaults()
    for name, flag in train_config.FLAGS.items():
        default, help_text = defaults[name], flag.help
        if isinstance(default, bool) or (default is None and flag.field.metadata["rule"].boolean):
            flags.DEFINE_bool(name, default, help_text, flag_values=flag_values)
        elif isinstance(default, int):
            flags.DEFINE_integer(name, default, help_text, flag_values=flag_values)
        elif isinstance(default, float):
            flags.DEFINE_float(name, default, help_text, flag_values=flag_values)
        elif flag.choices:
            flags.DEFINE_enum(name, default, list(flag.choices), help_text, flag_values=flag_values)
        else:
            flags.DEFINE_string(name, default, help_text, flag_values=flag_values)


def expand_argv(argv, flag_values=flags.FLAGS):
    """argv with the original's argparse abbreviations written out (ValueError if ambiguous)."""
    defined = {name: flag_values[name].boolean for name in flag_values}
    return train_config.expand_original_abbreviations(argv, defined)


def config_from_flags(flag_values=flags.FLAGS) -> train_config.TrainConfig:
    return train_config.TrainConfig.from_flags({name: flag_values[name].value for name in train_config.FLAGS})


def _train():
    config = config_from_flags()
    try:
        if config.inference:
            print(f"wrote {inference.infer(config)}")
        else:
            train_lib.train_and_evaluate(config)
    except train_lib.NonFiniteError as e:  # the message says what to try; no traceback
        raise SystemExit(f"{cli.program_name()}: {e}") from None
    except preemption.Preempted as e:
        print(f"{cli.program_name()}: {e}", file=sys.stderr)
        raise SystemExit(preemption.EXIT_STATUS) from None
    except tf.errors.OpError as e:  # another worker failed: one line, not TensorFlow's traceback
        last = tf.train.latest_checkpoint(os.path.join(config.logdir, checkpoints.CHECKPOINTS_DIR))
        message = cluster.failure_message(e, last) if config.strategy == "multi_worker" else None
        if message is None:
            raise
        print(f"{cli.program_name()}: {message}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(1)  # not the interpreter's teardown: after a collective timed out, TensorFlow's crashed (seen)


def main():
    """The glow-train console script and train.py."""
    define_flags()
    cli.run(_train, expand_argv=expand_argv)

"""The command-line programs: a bad command line is one line naming the flag, what was expected and
what was seen (never the whole help); TensorFlow's loading-time log lines are filtered by its log
level. (A whole run's quiet console is checked by test_packaging.py.)"""
import os
import subprocess
import sys

import pytest
from absl import flags

from conftest import REPO_ROOT, build_model, tiny_config, write_run
from glow_tf import cli
from glow_tf.cli import console
from glow_tf.cli import train as train_cli

TRAIN_PY, SAMPLE_PY = os.path.join(REPO_ROOT, "train.py"), os.path.join(REPO_ROOT, "sample.py")


def _flags():
    """train.py's flags, and a required one as sample.py's --model."""
    flag_values = flags.FlagValues()
    train_cli.define_flags(flag_values)
    flags.DEFINE_string("model", None, "a required flag", flag_values=flag_values)
    flags.mark_flag_as_required("model", flag_values=flag_values)
    return flag_values


@pytest.mark.parametrize("argv, message", [
    # the example: a value after a boolean flag
    (["--log_steps", "1"], "--log_steps: expected no value (a boolean flag: --log_steps, --nolog_steps or "
                           "--log_steps=false), got '1'"),
    (["--nolog_steps", "0"], "--log_steps: expected no value (a boolean flag: --log_steps, --nolog_steps or "
                             "--log_steps=false), got '0'"),
    (["results"], "expected only flags (--name value or --name=value), got the argument 'results'"),
    (["--depth", "x"], "--depth: expected an integer, got 'x'"),
    (["--lr=fast"], "--lr: expected a number, got 'fast'"),
    (["--strategy", "horovod"], "--strategy: expected one of default, mirrored, multi_worker, tpu, got 'horovod'"),
    (["--log_steps=2"], "--log_steps: expected true or false (or --log_steps / --nolog_steps alone), got '2'"),
    (["--depth"], "--depth: expected an integer, got no value"),
    (["--log_step"], "--log_step: expected one of the flags --help lists (did you mean --log_steps?), got an "
                     "unknown flag"),
    (["--n_batch", "8"], "--n_batch is ambiguous: it could be --n_batch_train, --n_batch_test, --n_batch_init; "
                         "spell the flag out"),  # an abbreviation of the original's flags
])
def test_a_bad_command_line_is_one_line_naming_the_flag(argv, message):
    flag_values = _flags()
    with pytest.raises(SystemExit) as exit_:
        cli.parse_flags(["train.py", "--model", "m"] + argv, flag_values,
                        expand_argv=lambda a: train_cli.expand_argv(a, flag_values))
    assert str(exit_.value.code) == f"{cli.program_name()}: error: {message}"


def test_a_flagfile_that_cannot_be_read_or_has_a_line_that_is_not_a_flag_is_one_line(tmp_path):
    good, nested, bad = tmp_path / "good.txt", tmp_path / "nested.txt", tmp_path / "bad.txt"
    good.write_text("# the model\n\n--depth=4\n// and the run\n--log_steps\n")
    nested.write_text(f"--flagfile={good}\n--width=16\n")
    bad.write_text("--depth=4\n--width 16\n")
    flag_values = _flags()
    cli.parse_flags(["train.py", "--model", "m", "--flagfile", str(nested)], flag_values)
    assert (flag_values["depth"].value, flag_values["width"].value, flag_values["log_steps"].value) == (4, 16, True)
    for argv, message in (
            ([f"--flagfile={bad}"], f"--flagfile {bad}, line 2: expected one flag per line (--name=value or --name), "
                                    "got '--width 16'"),
            (["--flagfile", str(tmp_path / "none.txt")], f"--flagfile: expected a readable file of flags, got "
                                                         f"'{tmp_path / 'none.txt'}' (No such file or directory)"),
            ([f"-flagfile={tmp_path}"], f"--flagfile: expected a readable file of flags, got '{tmp_path}' (Is a "
                                        "directory)")):
        with pytest.raises(SystemExit) as exit_:
            cli.parse_flags(["train.py", "--model", "m"] + argv, _flags())
        assert str(exit_.value.code) == f"{cli.program_name()}: error: {message}"
    (tmp_path / "words.txt").write_text("depth=4\n")
    with pytest.raises(SystemExit, match=r"words.txt, line 1: expected one flag per line .*got 'depth=4'$"):
        cli.parse_flags(["train.py", "--model", "m", "--flagfile", str(tmp_path / "words.txt")], _flags())


def test_a_missing_required_flag_is_named():
    with pytest.raises(SystemExit, match="error: --model: expected a value \\(the flag is required\\), got none$"):
        cli.parse_flags(["sample.py"], _flags())


def test_a_program_may_take_positional_arguments_it_knows():
    def take_first(arguments):  # as sample.py takes the second image of '--interpolate A B'
        return arguments[1:]

    assert cli.parse_flags(["sample.py", "--model", "m", "a"], _flags(), take_arguments=take_first) == ["sample.py"]
    with pytest.raises(SystemExit, match="got the argument 'b'$"):
        cli.parse_flags(["sample.py", "--model", "m", "a", "b"], _flags(), take_arguments=take_first)


@pytest.mark.parametrize("args, message", [
    ([TRAIN_PY, "--log_steps", "1"], "train.py: error: --log_steps: expected no value (a boolean flag: "
                                     "--log_steps, --nolog_steps or --log_steps=false), got '1'"),
    ([SAMPLE_PY, "--model", "m", "--n", "many"], "sample.py: error: --n: expected an integer, got 'many'"),
    ([TRAIN_PY, "--flagfile", "absent.txt"], "train.py: error: --flagfile: expected a readable file of flags, got "
                                             "'absent.txt' (No such file or directory)"),
    (["-m", "glow_tf.cli.export", "--out", "o", "--checkpont", "c"],
     "python -m glow_tf.cli.export: error: --checkpont: expected one of the flags --help lists (did you mean "
     "--checkpoint, --openai_checkpoint?), got an unknown flag"),
])
def test_each_program_fails_with_that_one_line_and_no_help(args, message, tmp_path):
    result = subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", message + "\n")


def test_a_logdir_whose_config_json_is_not_json_stops_train_py_with_one_line(tmp_path):
    logdir = tmp_path / "run"
    write_run(build_model(tiny_config()), str(logdir))  # a checkpoint to resume from
    (logdir / "config.json").write_text("{not json")
    command = [sys.executable, TRAIN_PY, "--problem", "digits", "--logdir", str(logdir), "--n_levels", "2", "--depth",
               "1", "--width", "8"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"train.py: error: {logdir}/config.json: expected the run's config as JSON, got text that is not (Expecting "
        "property name enclosed in double quotes at line 1, column 2: '{not json')")


@pytest.mark.parametrize("line, level, shown", [
    ("I0000 00:00:1796139895.457507   12766 port.cc:153] oneDNN custom operations are on.\n", 3, False),
    ("I0000 00:00:1796139895.457802   12766 cudart_stub.cc:31] Could not find cuda drivers\n", 1, False),
    ("I0000 00:00:1796139895.457802   12766 cudart_stub.cc:31] Could not find cuda drivers\n", 0, True),
    ("W0000 00:00:1796139895.457802   12766 x.cc:1] a warning\n", 1, True),
    ("E0000 00:00:1796139897.323412   12766 cuda_platform.cc:52] failed call to cuInit\n", 3, False),
    ("E0000 00:00:1796139897.323412   12766 x.cc:1] an error\n", 2, True),
    ("F0000 00:00:1796139897.323412   12766 x.cc:1] fatal\n", 3, True),
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n", 3, False),
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n", 0, True),
    ("/x/y.py:3: DeprecationWarning: a Python warning\n", 3, True),
])
def test_tensorflows_loading_lines_are_filtered_by_its_log_level(line, level, shown):
    assert console.shown(line, level) is shown


@pytest.mark.parametrize("given, expected", [
    (None, "--xla_cpu_use_fusion_emitters=false"),
    ("--xla_cpu_enable_fast_math=false", "--xla_cpu_enable_fast_math=false --xla_cpu_use_fusion_emitters=false"),
    ("--xla_cpu_use_fusion_emitters=true", "--xla_cpu_use_fusion_emitters=true"),  # the user's choice stands
])
def test_xla_uses_the_llvm_fusion_emitters_unless_told_otherwise(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if given is not None:
        env["XLA_FLAGS"] = given
    code = ("import os, glow_tf.cli, tensorflow as tf\n"
            "tf.function(lambda x: x + 1, jit_compile=True)(tf.ones(2))  # XLA aborts on a flag it does not know\n"
            "print(os.environ['XLA_FLAGS'])")
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == expected

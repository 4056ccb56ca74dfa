"""The process environment of glow_tf's programs: ``prepare()``, called before TensorFlow loads.

The library (``import glow_tf`` and its modules) leaves its host process as it found it. Its
programs (glow-train, glow-sample, glow-export, train.py, sample.py, the benchmarks and the test
suite) call ``prepare()`` first, which sets, unless the variable is already set:

* ``TF_CPP_MIN_LOG_LEVEL=3``: TensorFlow's C++ log lines are not printed. On a CPU-only
  machine these are the oneDNN notice, the CPU-feature notice and, at ERROR level, the
  ``failed call to cuInit`` line; errors that stop a program still reach Python as exceptions.
  ``TF_CPP_MIN_LOG_LEVEL=0`` shows them all.
* ``TF_USE_LEGACY_KERAS=1``: glow_tf itself uses ``tf_keras`` by name and works either way,
  but TensorFlow Probability reads ``tf.keras`` to choose its Keras, and without the variable
  that loads Keras 3 as well (3.5 s more start-up, for nothing the programs use). This is
  glow_tf's one place for it.
* ``--xla_cpu_use_fusion_emitters=false`` added to ``XLA_FLAGS`` (unless ``XLA_FLAGS`` names
  that flag): XLA:CPU emits its fused loops with the LLVM emitters rather than the MLIR fusion
  emitters, which keep about 1 GiB more host memory alive while the CelebA-HQ model's training
  step compiles, and compile deep models more slowly (benchmarks/RESULTS.md). XLA reads the
  variable at its first compile.

TensorFlow writes a few lines while its libraries load, before it has read
TF_CPP_MIN_LOG_LEVEL (absl's "All log messages before absl::InitializeLog() is called are
written to STDERR" and the oneDNN notice among them), so ``prepare`` imports TensorFlow with the
process's stderr captured, and writes back what was captured without the log lines that the
level hides. Everything else (Python warnings, tracebacks) comes through.
"""
import os
import re
import sys
import tempfile

_XLA_FLAG = "--xla_cpu_use_fusion_emitters=false"

# absl's C++ log prefix: severity letter, then mmdd (e.g. "I0000 00:00:1796139895.457507 12766 port.cc:153] ...").
_LOG_LINE = re.compile(r"([IWEF])\d{4} ")
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}  # TF_CPP_MIN_LOG_LEVEL hides the levels below it
_BEFORE_INIT_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def _min_log_level() -> int:
    """TF_CPP_MIN_LOG_LEVEL as TensorFlow reads it (anything but a number is 0: show everything)."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def shown(line: str, min_log_level: int) -> bool:
    """Whether a line TensorFlow wrote to stderr while loading passes TF_CPP_MIN_LOG_LEVEL."""
    if line.rstrip("\n") == _BEFORE_INIT_NOTICE:
        return min_log_level == 0
    match = _LOG_LINE.match(line)
    return match is None or _SEVERITY[match.group(1)] >= min_log_level


def _import_tensorflow_filtered():
    """``import tensorflow`` with its loading-time log lines filtered by TF_CPP_MIN_LOG_LEVEL."""
    level = _min_log_level()
    try:
        saved_stderr = os.dup(2)
    except OSError:  # no stderr to filter
        import tensorflow  # noqa: F401
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
            captured.seek(0)
            sys.stderr.write("".join(line for line in captured if shown(line, level)))
            sys.stderr.flush()



def prepare():
    """Sets the programs' environment (module docstring) and loads TensorFlow quietly; at most once."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS"), _XLA_FLAG]))
    if "tensorflow" not in sys.modules:
        _import_tensorflow_filtered()

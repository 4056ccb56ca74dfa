"""The process environment TensorFlow reads once, when it is first imported: glow_tf's one place for it.

``glow_tf/__init__.py`` imports this module before anything else, so every way into glow_tf
(the command-line programs, ``import glow_tf``, the tests and benchmarks) gets, unless the
variable is already set:

* ``TF_USE_LEGACY_KERAS=1``: tf.keras is Keras 2 (tf_keras), which TFP 0.25 needs
  (Keras 3 variables are invisible to its bijectors; see ../shared/design/ARCHITECTURE.md).
* ``TF_CPP_MIN_LOG_LEVEL=3``: TensorFlow's C++ log lines are not printed. On a CPU-only
  machine these are the oneDNN notice, the CPU-feature notice and, at ERROR level, the
  ``failed call to cuInit`` line; errors that stop a program still reach Python as exceptions.
  ``TF_CPP_MIN_LOG_LEVEL=0`` shows them all.
* ``--xla_cpu_use_fusion_emitters=false`` added to ``XLA_FLAGS`` (unless ``XLA_FLAGS`` names
  that flag): XLA:CPU emits its fused loops with the LLVM emitters rather than the MLIR fusion
  emitters, which keep about 1 GiB more host memory alive while the CelebA-HQ model's training
  step compiles (1350 kernels; peak RSS of the 64-pixel proxy of benchmarks/bench_celeba.py
  6.84 -> 5.85 GiB; bench_scale's depth-32 step, interleaved A/B: compile 14.6 -> 9.3 s, step
  2.59 -> 2.48 s, peak 2573 -> 2063 MiB). XLA reads the variable at its first compile.

TensorFlow 2.21 writes a few lines while its libraries load, before it has read
TF_CPP_MIN_LOG_LEVEL (absl's "All log messages before absl::InitializeLog() is called are
written to STDERR" and the oneDNN notice among them), so TensorFlow is imported here with the
process's stderr captured, and what was captured is written back to stderr without the log
lines that the level hides. Everything else (Python warnings, tracebacks) comes through.
"""
import os
import re
import sys
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS"), "--xla_cpu_use_fusion_emitters=false"]))

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


if "tensorflow" not in sys.modules:
    _import_tensorflow_filtered()

"""glow_tf's typed errors for what it reads and writes on disk; each message says what was expected,
what was seen and, where it helps, what to do, in one line (the programs print it as it is).

Two more live with what they check: ``glow_tf.data.DataError`` (the input pipelines' data) and
``glow_tf.fields.FieldError`` (a config's field). Like them, the ``ValueError`` subclasses here
are caught by callers that validate with ``except ValueError``.
"""


class CheckpointError(ValueError):
    """No usable checkpoint where one was expected: a path that names none, a checkpoint that cannot
    be read, or a training run none of whose checkpoints can be read."""


class RunFileError(ValueError):
    """A file of a training logdir (config.json, train.txt, ...) is not what glow_tf writes there."""


class ModelError(ValueError):
    """A path given as a model holds neither a SavedModel glow_tf exported nor a glow_tf checkpoint."""


class WriteError(OSError):
    """A file could not be written whole (disk full, file-size limit, permissions): what was there
    before is intact, and nothing half-written is left in its place."""

"""Files that are whole or absent: atomic writes, and finding a checkpoint's prefix.

Everything glow_tf writes (logs rewritten on resume, config.json, sample grids, latents, caches,
benchmark results) goes through ``write_atomic``: a temp file beside the target, renamed onto it
when complete, so a reader or a resumed run never sees a half-written file, even after a kill.
This module imports no model code, so any module may use it.
"""
import json
import os
import tempfile

import tensorflow as tf


def write_atomic(path, write):
    """``write(binary file)`` into a temp file beside ``path``, renamed to ``path`` when done."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", dir=directory)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(handle, 0o666 & ~umask)  # mkstemp's 0600 would outlive the rename; as open() would
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.remove(staging)


def write_json_atomic(path, value):
    """Writes ``value`` as indented JSON to ``path`` (see ``write_atomic``)."""
    write_atomic(path, lambda f: f.write((json.dumps(value, indent=2, sort_keys=True) + "\n").encode()))


def checkpoint_prefix(path, expected="a checkpoint prefix or a directory with a 'checkpoint' file"):
    """The checkpoint ``path`` names: a prefix (the path before '.index'), or a directory's latest.

    A directory resolves through its ``checkpoint`` file (tf.train.latest_checkpoint). Raises a
    ValueError saying ``expected`` and what ``path`` is otherwise.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise ValueError(f"expected {expected}, got {path!r}, a directory without a checkpoint "
                             f"(no 'checkpoint' file naming one in {path!r})")
        return latest
    if not os.path.exists(path + ".index"):
        raise ValueError(f"expected {expected}, got {path!r}: {path}.index does not exist")
    return path

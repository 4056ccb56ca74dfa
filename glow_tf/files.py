"""Files that are whole or absent: atomic writes and appends, and finding a checkpoint's prefix.

Everything glow_tf writes (logs rewritten on resume, config.json, sample grids, latents, caches,
benchmark results) goes through ``write_atomic``: a temp file beside the target, renamed onto it
when complete, so a reader or a resumed run never sees a half-written file, even after a kill.
Log records are added with ``append_whole``. A write that fails (disk full, a file-size limit,
no permission) raises ``WriteError`` naming the file and what limits the writes there, and
leaves the file as it was. This module imports no model code, so any module may use it.
"""
import json
import os
import re
import resource
import shutil
import tempfile

import tensorflow as tf

from glow_tf.errors import CheckpointError, WriteError


def _size(n_bytes) -> str:
    """'1000 bytes', '4.0 KiB', '20.3 GiB': a size for people."""
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} bytes"


def error_text(error) -> str:
    """An error's message for people: an OSError's reason, TensorFlow's without its op and function
    names (and its type when it has no message, as its file-size error in some writers)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = error.message if isinstance(error, tf.errors.OpError) else str(error)
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\]( name: \S*)?", "", text).strip()
    return text or type(error).__name__


def write_failure(error, path) -> str:
    """Why writing ``path`` failed (an OSError or a TensorFlow error) and the limits on writing there:
    e.g. 'File too large; 20.3 GiB free on its disk; file-size limit 256.0 KiB (ulimit -f)'."""
    parts = [error_text(error)]
    directory = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(directory):
        directory = os.path.dirname(directory)
    parts.append(f"{_size(shutil.disk_usage(directory).free)} free on its disk")
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        parts.append(f"file-size limit {_size(limit)} (ulimit -f)")
    return "; ".join(parts)


def write_atomic(path, write):
    """``write(binary file)`` into a temp file beside ``path``, renamed to ``path`` when done.

    A failed write (OSError) raises WriteError and leaves ``path`` as it was, with no temp file.
    """
    directory = os.path.dirname(os.path.abspath(path))
    staging = None
    try:
        os.makedirs(directory, exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", dir=directory)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(handle, 0o666 & ~umask)  # mkstemp's 0600 would outlive the rename; as open() would
        with os.fdopen(handle, "wb") as f:
            write(f)
        os.replace(staging, path)
    except OSError as e:
        raise WriteError(f"could not write {path} ({write_failure(e, path)})") from None
    finally:
        if staging is not None and os.path.exists(staging):
            os.remove(staging)


def write_json_atomic(path, value):
    """Writes ``value`` as indented JSON to ``path`` (see ``write_atomic``)."""
    write_atomic(path, lambda f: f.write((json.dumps(value, indent=2, sort_keys=True) + "\n").encode()))


def append_whole(path, data: bytes):
    """Appends ``data`` to the existing file ``path`` whole or not at all.

    A write can stop part-way (a full disk, a file-size limit); the file is then cut back to where
    it ended before, so that no partial record stays, and WriteError is raised.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except OSError as e:
        raise WriteError(f"could not write {path} ({write_failure(e, path)})") from None
    try:
        end = os.fstat(fd).st_size
        remaining = memoryview(data)
        while remaining:
            remaining = remaining[os.write(fd, remaining):]
    except OSError as e:
        os.ftruncate(fd, end)
        raise WriteError(f"could not write {path} ({write_failure(e, path)})") from None
    finally:
        os.close(fd)


def checkpoint_prefix(path, expected="a checkpoint prefix or a directory with a 'checkpoint' file"):
    """The checkpoint ``path`` names: a prefix (the path before '.index'), or a directory's latest.

    A directory resolves through its ``checkpoint`` file (tf.train.latest_checkpoint). Raises a
    CheckpointError saying ``expected`` and what ``path`` is otherwise.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(f"expected {expected}, got {path!r}, a directory without a checkpoint "
                                  f"(no 'checkpoint' file naming one in {path!r})")
        return latest
    if os.path.exists(path + ".index"):
        return path
    prefix, extension = os.path.splitext(path)
    if extension == ".index" or extension.startswith(".data-"):
        raise CheckpointError(f"expected {expected}, got {path!r}, one of a checkpoint's files: pass its prefix "
                              f"{prefix!r}")
    if os.path.exists(path):
        raise CheckpointError(f"expected {expected}, got {path!r}, a file that is not a checkpoint (no "
                              f"{os.path.basename(path)}.index beside it)")
    raise CheckpointError(f"expected {expected}, got {path!r}: {path}.index does not exist")

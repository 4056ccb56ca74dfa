"""glow_tf.files: atomic writes and appends (also under a real file-size limit) and checkpoint paths."""
import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from conftest import REPO_ROOT
from glow_tf import errors, files


def test_atomic_writes_get_the_permissions_of_a_plain_open(tmp_path):
    umask = os.umask(0o022)
    try:
        files.write_json_atomic(str(tmp_path / "sub" / "config.json"), {"a": 1})
        with open(tmp_path / "plain.json", "w") as f:
            f.write("{}")
    finally:
        os.umask(umask)
    mode = os.stat(tmp_path / "sub" / "config.json").st_mode & 0o777
    assert mode == os.stat(tmp_path / "plain.json").st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path / "sub") == ["config.json"]  # no staging file left behind


def test_a_killed_write_leaves_the_old_file_and_no_staging_file(tmp_path):
    path = tmp_path / "config.json"
    files.write_json_atomic(str(path), {"a": 1})

    def crash(f):
        f.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        files.write_atomic(str(path), crash)
    assert path.read_text() == '{\n  "a": 1\n}\n' and os.listdir(tmp_path) == ["config.json"]


def test_checkpoint_prefix_of_a_prefix_or_a_directory(tmp_path):
    prefix = tf.train.Checkpoint(v=tf.Variable(1.0)).save(str(tmp_path / "ckpt"))
    assert files.checkpoint_prefix(prefix) == prefix
    assert files.checkpoint_prefix(str(tmp_path)) == prefix  # through its 'checkpoint' file
    with pytest.raises(errors.CheckpointError, match=r"got .*: .*ckpt-9\.index does not exist"):
        files.checkpoint_prefix(str(tmp_path / "ckpt-9"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(errors.CheckpointError, match="without a checkpoint"):
        files.checkpoint_prefix(str(tmp_path / "empty"), "a training logdir")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(errors.CheckpointError, match=r"notes.txt', a file that is not a checkpoint"):
        files.checkpoint_prefix(str(tmp_path / "notes.txt"))
    with pytest.raises(errors.CheckpointError, match=r"one of a checkpoint's files: pass its prefix '.*ckpt-1'$"):
        files.checkpoint_prefix(prefix + ".index")


# In a fresh interpreter whose files may not grow past 1000 bytes (RLIMIT_FSIZE, as `ulimit -f`;
# Python ignores SIGXFSZ, so a write past the limit fails with EFBIG): an atomic rewrite and an
# append of 600 bytes onto files of 500, both of which the limit refuses. Prints what each raised.
_UNDER_A_LIMIT = """
import json, resource, sys
from glow_tf import errors, files
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
rewritten, appended = sys.argv[1], sys.argv[2]
raised = {}
for name, write in (("rewrite", lambda: files.write_atomic(rewritten, lambda f: f.write(b"n" * 1200))),
                    ("append", lambda: files.append_whole(appended, b"a" * 600))):
    try:
        write()
    except errors.WriteError as e:
        raised[name] = str(e)
print(json.dumps(raised))
"""


def test_a_write_past_a_file_size_limit_leaves_the_file_as_it_was(tmp_path):
    rewritten, appended = tmp_path / "config.json", tmp_path / "train.txt"
    rewritten.write_bytes(b"o" * 500)
    appended.write_bytes(b"r" * 500)
    result = subprocess.run([sys.executable, "-c", _UNDER_A_LIMIT, str(rewritten), str(appended)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    raised = json.loads(result.stdout.splitlines()[-1])
    for name, path in (("rewrite", rewritten), ("append", appended)):
        assert raised[name].startswith(f"could not write {path} (File too large; "), raised
        assert "file-size limit 1000 bytes (ulimit -f)" in raised[name] and "free on its disk" in raised[name]
    assert rewritten.read_bytes() == b"o" * 500  # the old file, whole
    assert appended.read_bytes() == b"r" * 500  # the 500 bytes that fitted were cut off again
    assert sorted(os.listdir(tmp_path)) == ["config.json", "train.txt"]  # no staging file left

"""glow_tf.files: atomic writes and checkpoint paths."""
import os

import pytest
import tensorflow as tf

from glow_tf import files


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
    with pytest.raises(ValueError, match=r"got .*: .*ckpt-9\.index does not exist"):
        files.checkpoint_prefix(str(tmp_path / "ckpt-9"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="without a checkpoint"):
        files.checkpoint_prefix(str(tmp_path / "empty"), "a training logdir")

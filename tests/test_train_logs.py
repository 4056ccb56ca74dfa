"""glow_tf.train_logs.JsonLinesLog: the original's JSON-lines logs, resumed without the records after
the checkpoint; a file that is not such a log is a one-line RunFileError."""
import json

import pytest

from glow_tf import errors
from glow_tf.train_logs import JsonLinesLog

HPS = {"problem": "digits"}


def test_resuming_keeps_the_records_up_to_the_checkpoint_and_drops_a_last_line_cut_short(tmp_path):
    path = tmp_path / "train.txt"
    log = JsonLinesLog(str(path), HPS)
    log.log({"step": 0}, {"step": 1})
    log.log({"step": 2})
    with open(path, "a") as f:
        f.write('{"step": 3, "lo')  # a kill in the middle of a write
    JsonLinesLog(str(path), {"problem": "other"}, keep=lambda record: record["step"] < 2)
    assert path.read_text().splitlines() == [json.dumps(HPS), '{"step": 0}', '{"step": 1}']  # the old hps stay


@pytest.mark.parametrize("content, message", [
    ("not json\n", r"train.txt: line 1: expected the run's hps as a JSON object, got 'not json'. Move the file aside"),
    ('["a list"]\n', r"train.txt: line 1: expected the run's hps as a JSON object, got '\[\"a list\"\]'"),
    ('{"problem": "digits"}\n{"step": 0}\n{"step": 1, "lo\n{"step": 2}\n',
     r"train.txt: line 3: expected a JSON record, got '\{\"step\": 1, \"lo'. Remove the line, or move the file aside"),
])
def test_a_file_that_is_not_a_log_is_a_run_file_error(tmp_path, content, message):
    path = tmp_path / "train.txt"
    path.write_text(content)
    with pytest.raises(errors.RunFileError, match=message):
        JsonLinesLog(str(path), HPS, keep=lambda record: True)
    assert path.read_text() == content  # left as it was
    JsonLinesLog(str(path), HPS)  # a new run starts the file anew
    assert path.read_text() == json.dumps(HPS) + "\n"

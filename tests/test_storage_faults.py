"""A training run against a full disk and damaged checkpoints (tests/processes.py's tiny run in one
process, --deterministic): it says what it could not write or read and where, stops with one line
where it cannot go on, keeps what it cannot read, and the same command then resumes exactly (the
uninterrupted run's losses, bit for bit)."""
import os

from glow_tf import checkpoints
from processes import TRAIN, finish, records, start, train_args

FILE_SIZE_LIMIT = 256 * 1024  # under a checkpoint's data file (about 660 KiB), over every other file written


def without_times(path):
    return [{k: v for k, v in record.items() if k != "train_time"} for record in records(path)]


def assert_same_run(logdir, reference):
    for name in ("train_steps.txt", "train.txt", "test.txt"):  # JSON floats are exact
        assert without_times(logdir / name) == without_times(reference / name), name


def last_line(err):
    assert "Traceback" not in err, err[-3000:]
    return err.strip().splitlines()[-1]


def test_a_full_disk_then_damaged_checkpoints_then_none_readable(tmp_path):
    """1. The run to step 4, with the path of a sample grid taken (a folder of that name): it warns
    and trains on. 2. The same run to step 8 with a checkpoint after every step, under a file-size
    limit that a checkpoint exceeds: ckpt-5's write fails; one line names it and ckpt-4, which is
    intact, and nothing of ckpt-5 is left. 3. The same command with room: resumes from ckpt-4 and
    gives the uninterrupted run's numbers. 4. ckpt-8 cut short, ckpt-7's index garbage, the best-loss
    checkpoint cut short: the same command says so, keeps them as ckpt-N.damaged.*, resumes from
    ckpt-6, and again gives the uninterrupted run's numbers. 5. Every checkpoint's index cut short:
    one line naming each, nothing changed, no new run."""
    reference, logdir = tmp_path / "reference", tmp_path / "run"
    ckpt = logdir / "checkpoints"
    uninterrupted = start([TRAIN] + train_args(reference), tmp_path / "reference")
    os.makedirs(logdir / "epoch_1_sample_3.png")
    code, out, err = finish(start([TRAIN] + train_args(logdir, 1, "--max_steps", "4"), tmp_path / "run1"))
    assert code == 0, err[-3000:]
    assert f"could not write {logdir}/epoch_1_sample_3.png (Is a directory; " in err
    assert "training goes on without that sample grid" in err and (logdir / "epoch_1_sample_7.png").exists()

    command = [TRAIN] + train_args(logdir, 1, "--checkpoint_minutes", "1e-9")  # a checkpoint after every step
    code, out, err = finish(start(command, tmp_path / "run2", file_size_limit=FILE_SIZE_LIMIT))
    line = last_line(err)
    assert code == 1 and line.startswith(f"train.py: error: could not write checkpoint {ckpt}/ckpt-5 ("), line
    assert "File too large" in line and "file-size limit 256.0 KiB (ulimit -f)" in line, line
    assert line.endswith(f"Training stopped at step 5; the last good checkpoint is {ckpt}/ckpt-4 (step 4). Make "
                         "room, then run the same command again to resume from it"), line
    assert sorted(os.listdir(ckpt)) == ["checkpoint", "ckpt-4.data-00000-of-00001", "ckpt-4.index"]
    assert checkpoints.read_failure(str(ckpt / "ckpt-4")) is None

    code, out, err = finish(start(command, tmp_path / "run3"))
    assert code == 0, err[-3000:]
    assert f"Resuming from {ckpt}/ckpt-4: step 4" in out
    code, _, err = finish(uninterrupted)
    assert code == 0, err[-3000:]
    assert_same_run(logdir, reference)

    assert sorted(os.listdir(ckpt)) == ["checkpoint"] + [f"ckpt-{n}.{kind}" for n in (6, 7, 8)
                                                         for kind in ("data-00000-of-00001", "index")]
    os.truncate(ckpt / "ckpt-8.data-00000-of-00001", 1000)
    (ckpt / "ckpt-7.index").write_bytes(b"garbage" * 100)
    best = logdir / checkpoints.BEST_DIR / "ckpt-8.index"
    os.truncate(best, 10)
    code, out, err = finish(start(command, tmp_path / "run4"))
    assert code == 0, err[-3000:]
    assert (f"Checkpoint {ckpt}/ckpt-8 cannot be read (Read less bytes than requested); its files are kept as "
            f"{ckpt}/ckpt-8.damaged.*; resuming from an older one") in out
    assert f"Checkpoint {ckpt}/ckpt-7 cannot be read (not an sstable (bad magic number)); its files are kept as" in out
    assert f"Resuming from {ckpt}/ckpt-6: step 6" in out
    assert os.path.getsize(ckpt / "ckpt-8.damaged.data-00000-of-00001") == 1000
    assert (ckpt / "ckpt-7.damaged.index").read_bytes() == b"garbage" * 100
    assert checkpoints.read_failure(str(logdir / checkpoints.BEST_DIR / "ckpt-8")) is None  # a new best written
    assert_same_run(logdir, reference)

    for n in (6, 7, 8):
        os.truncate(ckpt / f"ckpt-{n}.index", 10)
    before = {name: os.path.getsize(ckpt / name) for name in os.listdir(ckpt)}
    code, out, err = finish(start(command, tmp_path / "run5"))
    line = last_line(err)
    assert code == 1 and line == (
        f"train.py: error: {ckpt}: none of its 3 checkpoint(s) can be read (ckpt-8: file is too short to be an "
        "sstable; ckpt-7: file is too short to be an sstable; ckpt-6: file is too short to be an sstable). Nothing "
        "was changed. To resume, put back a copy of that folder; to start this run over, move the folder aside (or "
        "train in another --logdir)"), line
    assert "Starting a new run" not in out
    assert {name: os.path.getsize(ckpt / name) for name in os.listdir(ckpt)} == before

"""benchmarks/ablation.py: --quick trains its grid through train_and_evaluate and writes the curves,
table and Figure-3 plot; a re-run skips finished runs; a work folder of other flags is refused."""
import json
import os
import shutil

import pytest
from PIL import Image

from benchmarks import ablation
from glow_tf import train_lib


def _tree_mtimes(folder):
    """{path: mtime_ns} of every file and folder below ``folder``."""
    mtimes = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            mtimes[path] = os.stat(path).st_mtime_ns
    return mtimes


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The --quick grid trained once, with train_and_evaluate's calls counted."""
    workdir = str(tmp_path_factory.mktemp("ablation"))
    calls, original = [], train_lib.train_and_evaluate
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_lib, "train_and_evaluate", lambda config: (calls.append(config.logdir), original(config)))
        results = ablation.main(["--quick", "--workdir", workdir])
    return workdir, results, calls


def test_quick_writes_every_curve_the_table_and_the_plot(quick):
    workdir, results, calls = quick
    grid = ablation.QUICK
    assert len(calls) == len(grid.cells) * len(grid.seeds) == 2
    with open(os.path.join(workdir, "ablation.json")) as f:
        written = json.load(f)
    assert written == json.loads(json.dumps(results))
    assert set(written["runs"]) == {"reverse-additive-seed0", "conv1x1-affine-seed0"}
    expected_steps = [grid.eval_every * (i + 1) for i in range(grid.n_evals)]
    for run in written["runs"].values():
        assert run["status"] == "finished"
        assert run["steps"] == expected_steps == [2, 4]
        assert len(run["bits_per_dim"]) == grid.n_evals and all(0 < b < 10 for b in run["bits_per_dim"])
        assert run["wall_seconds"] > 0
    rows = {(row["permutation"], row["coupling"]): row for row in written["table"]}
    assert set(rows) == {("reverse", "additive"), ("1x1 conv", "affine")}
    final = written["runs"]["conv1x1-affine-seed0"]["bits_per_dim"][-1]
    assert rows["1x1 conv", "affine"]["mean"] == final and rows["1x1 conv", "affine"]["n_seeds"] == 1
    assert rows["1x1 conv", "affine"]["std"] is None  # one seed has no spread
    assert written["train_config"]["max_steps"] == grid.steps and "seed" not in written["train_config"]
    with Image.open(os.path.join(workdir, "ablation.png")) as image:
        assert image.format == "PNG" and image.width > image.height > 100


def test_a_finished_run_is_skipped_on_re_run(quick, monkeypatch):
    workdir, results, _ = quick
    before = _tree_mtimes(os.path.join(workdir, "reverse-additive-seed0"))
    calls = []
    monkeypatch.setattr(train_lib, "train_and_evaluate", calls.append)
    again = ablation.main(["--quick", "--workdir", workdir])
    assert calls == []
    assert _tree_mtimes(os.path.join(workdir, "reverse-additive-seed0")) == before
    assert again["runs"] == results["runs"]


def test_a_run_without_its_last_pass_is_trained_again(quick, tmp_path, monkeypatch):
    workdir = str(tmp_path / "copy")
    shutil.copytree(quick[0], workdir)
    test_log = os.path.join(workdir, "conv1x1-affine-seed0", "test.txt")
    with open(test_log) as f:
        lines = f.read().splitlines(keepends=True)
    with open(test_log, "w") as f:
        f.writelines(lines[:-1])  # as if killed between the last test pass and its checkpoint
    calls = []
    monkeypatch.setattr(train_lib, "train_and_evaluate", lambda config: calls.append(config.logdir))
    reported = ablation.main(["--quick", "--workdir", workdir, "--report_only"])  # an interrupted grid
    assert calls == [] and reported["runs"]["conv1x1-affine-seed0"]["status"] == "unfinished"
    results = ablation.main(["--quick", "--workdir", workdir])
    assert calls == [os.path.join(workdir, "conv1x1-affine-seed0")]
    assert results["runs"]["conv1x1-affine-seed0"]["status"] == "unfinished"
    assert results["runs"]["reverse-additive-seed0"]["status"] == "finished"
    affine = [row for row in results["table"] if row["coupling"] == "affine"]
    assert affine[0]["n_seeds"] == 0 and affine[0]["mean"] is None  # left out of the means


def test_is_finished_needs_max_steps_in_the_checkpoint_and_the_test_log(quick):
    config = ablation.run_config(ablation.QUICK, ablation.QUICK.cells[0], 0, quick[0], "digits", "")
    assert ablation.is_finished(config)
    assert not ablation.is_finished(config.with_flags(max_steps=6))
    assert not ablation.is_finished(config.with_flags(logdir=os.path.join(quick[0], "absent")))


def test_a_workdir_of_other_flags_is_refused(quick):
    workdir, _, _ = quick
    config = ablation.run_config(ablation.QUICK, ablation.QUICK.cells[0], 0, workdir, "digits", "")
    ablation.check_same_flags(config)  # the same flags: accepted
    with pytest.raises(ValueError, match=r"--width 16 \(now 32\).*another --workdir"):
        ablation.check_same_flags(config.with_flags(width=32))

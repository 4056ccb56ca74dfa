"""benchmarks/bench_scale.py --quick: it measures the loop against the real unrolled glow_tf."""
import json
import subprocess
import sys

from conftest import REPO_ROOT


def test_quick_run_compares_the_loop_with_the_unrolled_commit():
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_scale", "--quick", "--no_results"],
                         capture_output=True, text=True, cwd=REPO_ROOT, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 8  # 2 implementations x 2 modes x depths 1, 2
    by = {(r["implementation"], r["memory_saving"], r["depth"]): r for r in rows}
    for memory_saving in (False, True):
        # The baseline really is the per-step model: its variables grow with depth, the loop's do not.
        assert by["unrolled", memory_saving, 2]["trainable_variables"] > by["unrolled", memory_saving, 1]["trainable_variables"]
        assert by["loop", memory_saving, 2]["trainable_variables"] == by["loop", memory_saving, 1]["trainable_variables"]
        assert by["loop", memory_saving, 2]["graph_ops"] <= 1.01 * by["loop", memory_saving, 1]["graph_ops"]
        assert all(by[impl, memory_saving, d]["step_seconds"] > 0 for impl in ("loop", "unrolled") for d in (1, 2))
    assert "loop / unrolled step time" in out.stdout

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
    assert len(rows) == 4  # 2 implementations x depths 1, 2 (memory-saving mode)
    by = {(r["implementation"], r["depth"]): r for r in rows}
    assert all(r["memory_saving"] for r in rows)
    # The baseline really is the per-step model: its variables grow with depth, the loop's do not.
    assert by["unrolled", 2]["trainable_variables"] > by["unrolled", 1]["trainable_variables"]
    assert by["loop", 2]["trainable_variables"] == by["loop", 1]["trainable_variables"]
    assert by["loop", 2]["graph_ops"] <= 1.01 * by["loop", 1]["graph_ops"]
    assert all(r["step_seconds"] > 0 and len(r["step_seconds_all"]) == 2 for r in rows)
    assert "loop / unrolled step time" in out.stdout

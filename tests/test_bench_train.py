"""benchmarks/bench_train.py --quick: every mode trains, and the summary compares the fastest modes."""
from benchmarks import bench_train


def test_quick_times_every_mode_and_names_the_fastest():
    summary = bench_train.main(["--quick"])
    assert list(summary) == [4]
    fastest = summary[4]["fastest"]
    assert set(fastest) == {"glow_tf float32", "glow_tf mixed_bfloat16", "tfp float32"}
    assert all(mode.startswith(key) and mode.split()[-1] in bench_train.ENGINES for key, mode in fastest.items())
    assert all(ratio > 0 for key, ratio in summary[4].items() if key != "fastest")

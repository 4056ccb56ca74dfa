"""benchmarks/precision_quality.py --quick: both runs train, and the table compares three evaluations."""
import json
import math
import os

from benchmarks import precision_quality


def test_quick_trains_both_precisions_and_evaluates_the_mixed_model_in_both(tmp_path):
    results = precision_quality.main(["--quick", "--workdir", str(tmp_path)])
    assert [(r["trained_in"], r["evaluated_in"]) for r in results] == [
        ("float32", "float32"), ("mixed_bfloat16", "mixed_bfloat16"), ("mixed_bfloat16", "float32")]
    assert all(r["steps"] == 4 and math.isfinite(r["held_out_bits_per_dim"]) for r in results)
    # The same weights in two precisions: close, not equal.
    assert 0 < abs(results[2]["held_out_bits_per_dim"] - results[1]["held_out_bits_per_dim"]) < 0.05
    with open(os.path.join(tmp_path, "precision_quality.json")) as f:
        assert json.load(f)["results"] == results

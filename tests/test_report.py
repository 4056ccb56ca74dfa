"""benchmarks/RESULTS.md is what ``python -m benchmarks.report`` writes from the committed JSON files."""
import json

from benchmarks import report


def test_results_md_is_generated_from_the_json_files():
    with open(report.OUTPUT) as f:
        committed = f.read()
    assert committed == report.render(report.read(report.RESULTS), report.read(report.ABLATION),
                                     report.read(report.PRECISION_QUALITY)), (
        "benchmarks/RESULTS.md differs from what the JSON files give: run python -m benchmarks.report")
    assert report.main(["--check"]) == 0


def test_every_results_key_has_a_section_and_a_figure_changes_the_page():
    results = report.read(report.RESULTS)
    ablation = report.read(report.ABLATION)
    text = report.render(results, ablation)
    for key in results:
        assert key in report.SECTIONS or key.startswith("celeba_headline"), f"results.json key {key!r} has no section"
    for program in ("bench_train", "bench_sample", "bench_memory", "bench_scale", "bench_celeba", "ablation"):
        assert f"python -m benchmarks.{program}" in text  # each table says how to measure it again
    changed = json.loads(json.dumps(results))
    changed["train"]["summary"]["16"]["mixed_bfloat16_vs_tfp"] = 9.99
    assert "**9.99x**" in report.render(changed, ablation) and "**9.99x**" not in text

"""benchmarks/RESULTS.md from benchmarks/results.json, ablation.json and precision_quality.json.

    python -m benchmarks.report            # rewrites benchmarks/RESULTS.md
    python -m benchmarks.report --check    # exit status 1 if RESULTS.md is not what the JSON files give

Every table is computed from the JSON files that the benchmark programs write; each section names
the command that measures it again. The page is the benchmarks' record: the README quotes only a
few headline figures and links here.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results.json")
ABLATION = os.path.join(HERE, "ablation.json")
PRECISION_QUALITY = os.path.join(HERE, "precision_quality.json")
OUTPUT = os.path.join(HERE, "RESULTS.md")
GIB = 1024.0


def table(header, rows):
    """Markdown table lines from a header and rows of cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def machine(section):
    """'2 CPUs, TensorFlow 2.21.0, commit X' of a results.json section."""
    about = section.get("machine", {})
    commit = f", at commit {section['commit']}" if "commit" in section else ""
    return f"Measured on {about.get('cpus', '?')} CPUs, TensorFlow {about.get('tensorflow', '?')}{commit}."


def train_section(train):
    limit = train["limit_gflops"]
    rows = [[batch, mode, f"{r['images_per_second']:.1f}", f"{r['step_seconds']['median']:.3f}",
             f"{r['gflops_per_second']:.0f} ({r['fraction_of_limit']:.0%})", f"{r['compile_seconds']:.0f}"]
            for batch, result in train["batches"].items() for mode, r in result.items()]
    summary = [[batch, f"**{s['mixed_bfloat16_vs_today']:.2f}x**", f"**{s['mixed_bfloat16_vs_tfp']:.2f}x**",
                f"**{s['float32_vs_today']:.2f}x**", f"**{s['float32_vs_tfp']:.2f}x**",
                "; ".join(f"{key}: {mode.split()[-1]}" for key, mode in s["fastest"].items())]
               for batch, s in train["summary"].items()]
    peaks = ", ".join(f"{name} {value:.0f}" for name, value in train["matmul_gflops"].items())
    return ["## Training step: each precision and engine, and tfp.bijectors.Glow", "",
            "`python -m benchmarks.bench_train` (then `python -m benchmarks.plot`). One training step "
            "(forward, backward, Adamax, Polyak average), 32x32x3 images, 3 levels x depth 8, width 128, affine "
            "coupling, invertible 1x1 conv; TFP's `tfb.Glow` with the same sizes. Engines: XLA (`jit_compile`) "
            "or the TensorFlow graph (oneDNN's kernels). Every mode is timed in turn in one process, "
            f"{train['rounds']} rounds x {train['calls_per_round']} steps, the median shown. The limit is the "
            f"fastest 2048² matmul measured in the same run ({peaks} GFLOP/s): {limit:.0f} GFLOP/s "
            f"({train['limit']}). FLOPs: {train['flops_convention']}. Load average "
            f"{train['load_average']['start']} -> {train['load_average']['end']}. {machine(train)}", "",
            *table(["batch", "mode", "images/s", "step s", "GFLOP/s (of the limit)", "compile s"], rows), "",
            "Each implementation in its fastest mode, as images/s ratios (\"today\" is glow_tf float32 under XLA):", "",
            *table(["batch", "mixed_bfloat16 / today", "mixed_bfloat16 / TFP", "float32 / today", "float32 / TFP",
                    "fastest engines"], summary), "",
            "![throughput](throughput.png)", ""]


def sample_section(sample):
    rows = []
    for batch, result in sample["batches"].items():
        for task in ("sample", "encode"):
            best = result[task]["best"]
            ours, theirs = result[task][best["glow_tf"]], result[task][best["tfp"]]
            rows.append([batch, task, f"{best['glow_tf']} {ours['images_per_second']:.0f}",
                         f"{best['tfp']} {theirs['images_per_second']:.0f}", f"**{result[task]['speedup']:.2f}x**"])
    return ["## Sampling and encoding", "",
            "`python -m benchmarks.bench_sample`. `model.sample` against TFP's `sample` (both with the uint8 "
            f"postprocessing) and `log_prob`, each in every precision and engine; {sample['rounds']} rounds x "
            f"{sample['calls_per_round']} interleaved calls of each. Each implementation's fastest mode, "
            f"images/s. {machine(sample)}", "",
            *table(["batch", "task", "glow_tf, fastest", "TFP, fastest", "ratio"], rows), ""]


def precision_quality_section(quality):
    rows = [[r["trained_in"], r["evaluated_in"], r["steps"], f"{r['wall_seconds']:.0f}",
             f"{r['held_out_bits_per_dim']:.4f}"] for r in quality["results"]]
    return ["## Quality at equal time: float32 and mixed_bfloat16", "",
            "`python -m benchmarks.precision_quality`. The same model (MNIST 32x32, 3 levels x depth 8, width 128, "
            f"affine, 1x1 conv; Adam 1e-3, batch 64) trained for {quality['budget_seconds'] / 60:.0f} minutes of "
            "wall clock in each precision, each in its default engine, one after the other; held-out bits/dim of "
            f"the raw weights. {machine(quality)}", "",
            *table(["trained in", "evaluated in", "steps", "wall s", "held-out bits/dim"], rows), "",
            "The mixed_bfloat16 model evaluated in float32 minus in mixed_bfloat16: "
            f"{quality['evaluation_difference']:+.4f} bits/dim.", ""]


def memory_section(memory):
    rows = [[config["depth"], "memory-saving" if config["memory_saving"] else "normal",
             config["trainable_variables"], f"{config['graph_ops']:,}", f"{config['compile_seconds']:.1f}",
             f"{config['compile_peak_rss_mib']:.0f}", f"{config['step_peak_rss_mib']:.0f}",
             f"{config['step_seconds']:.3f}"] for config in memory["configs"]]
    ratios = [[name.replace("_", " "), f"{value:.2f}"] for name, value in memory["ratios"].items()]
    return ["## Memory: normal and memory-saving mode", "",
            "`python -m benchmarks.bench_memory`. One XLA training step at batch "
            f"{memory['batch']}, each configuration in a fresh process; peak RSS in MiB. {machine(memory)}", "",
            *table(["depth", "mode", "variables", "graph ops", "compile s", "compile peak RSS", "step peak RSS",
                    "step s"], rows), "", *table(["ratio", "value"], ratios), ""]


def scale_section(scale):
    rows = [[config["implementation"], "memory-saving" if config["memory_saving"] else "normal", config["depth"],
             config["trainable_variables"], f"{config['graph_ops']:,}", f"{config['trace_seconds']:.1f}",
             f"{config['compile_seconds']:.1f}", f"{config['peak_rss_mib']:.0f}", f"{config['step_seconds']:.3f}"]
            for config in scale["configs"]]
    growth = [[name, f"{r['compile_seconds']:.2f}x", f"{r['graph_ops']:.2f}x", f"{r['peak_rss_mib']:.2f}x"]
              for name, r in scale["ratios"]["depth 32 / depth 8"].items()]
    step = [[name, f"{value:.2f}x"] for name, value in scale["ratios"]["loop / unrolled step time"].items()]
    return ["## Scale: build cost flat in depth", "",
            "`python -m benchmarks.bench_scale`. Each level's flow steps run as one loop over stacked "
            "parameters (`glow_tf/layers/scan.py`); \"unrolled\" is glow_tf at "
            f"{scale['baseline']} (one layer and one set of variables per step), extracted with `git archive`. "
            f"One XLA training step at batch {scale['batch']}, the 32x32 workload above; the processes of one "
            f"depth and mode alternate, {scale['rounds']} rounds x {scale['steps']} steps, step s the median. "
            f"{machine(scale)}", "",
            *table(["implementation", "mode", "depth", "variables", "graph ops", "trace s", "compile s",
                    "peak RSS MiB", "step s"], rows), "",
            "From depth 8 to depth 32:", "",
            *table(["implementation/mode", "compile time", "graph ops", "peak RSS"], growth), "",
            *table(["mode/depth", "step time, loop / unrolled"], step), ""]


def celeba_section(runs):
    rows = []
    for name, run in runs.items():
        precision = "mixed_bfloat16" if name.endswith("mixed_bfloat16") else "float32"
        environment = " ".join(f"{k}={v}" for k, v in run.get("environment", {}).items()) or "default"
        rows.append([precision, environment, run.get("commit", "current"), run["load_average"]["start"][0],
                     f"{run['first_step_seconds']:.0f}", f"{run['peak_rss_mib'] / GIB:.2f}",
                     f"{run['wall_seconds']:.0f}"])
    command = next(iter(runs.values()))["command"]
    return ["## The CelebA-HQ command", "",
            "`python -m benchmarks.bench_celeba` (`--precision mixed_bfloat16` for the other precision). "
            "The original README's CelebA-HQ command on generated tfrecords in the original's layout, "
            f"`--max_steps 2`: train, test pass, sample grids, export. Command: `{command}`. "
            f"{machine(next(iter(runs.values())))}", "",
            *table(["precision", "allocator environment", "commit", "load average at start",
                    "start to first finished step s", "peak RSS GiB", "whole run s"], rows), ""]


def ablation_section(ablation):
    rows = [[cell["coupling"], cell["permutation"], f"{cell['mean']:.3f} ± {cell['std']:.3f}",
             f"{cell['min']:.3f}", f"{cell['max']:.3f}"] for cell in ablation["table"]]
    return ["## Ablation (the paper's Figure 3)", "",
            f"`python -m benchmarks.ablation` (`make ablation`). {ablation['description']}; seeds "
            f"{', '.join(map(str, ablation['seeds']))}. Final held-out bits/dim:", "",
            *table(["coupling", "permutation", "mean ± std over seeds", "min", "max"], rows), "",
            "![held-out bits/dim vs steps](ablation.png)", ""]


SECTIONS = {"train": train_section, "sample": sample_section, "memory": memory_section, "scale": scale_section}


def render(results, ablation, quality=None) -> str:
    """RESULTS.md's text: one section per results.json key (the CelebA runs share one), the quality at
    equal time (precision_quality.json), then the ablation."""
    lines = ["# Benchmark results", "",
             "Written by `python -m benchmarks.report` from `results.json`, `ablation.json` and `precision_quality.json`; do not edit by hand. "
             "`make bench` measures everything again. The machine is a shared VM with 2 CPU cores: absolute "
             "times vary by up to 2x between runs, the ratios much less.", ""]
    for key, section in SECTIONS.items():
        if key in results:
            lines += section(results[key])
    celeba = {key: run for key, run in results.items() if key.startswith("celeba_headline")}
    if celeba:
        lines += celeba_section(celeba)
    if quality:
        lines += precision_quality_section(quality)
    if ablation:
        lines += ablation_section(ablation)
    return "\n".join(lines)


def read(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare RESULTS.md with the JSON files; change nothing")
    args = parser.parse_args(argv)
    text = render(read(RESULTS), read(ABLATION), read(PRECISION_QUALITY))
    if args.check:
        current = open(OUTPUT).read() if os.path.exists(OUTPUT) else ""
        if current != text:
            print(f"{OUTPUT} is not what the JSON files give: run python -m benchmarks.report", file=sys.stderr)
            return 1
        return 0
    with open(OUTPUT, "w") as f:
        f.write(text)
    print(OUTPUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())

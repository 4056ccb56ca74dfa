"""benchmarks/throughput.png from benchmarks/results.json: images/s vs batch size of every mode
(implementation, precision, engine) of training (bench_train.py), sampling and encoding (bench_sample.py).

    python -m benchmarks.plot   # from the repository root
"""
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.harness import RESULTS  # noqa: E402

OUTPUT = os.path.join(os.path.dirname(RESULTS), "throughput.png")
COLORS = {"glow_tf": "tab:blue", "tfp": "tab:orange"}
LINES = {"float32": "-", "mixed_bfloat16": "--"}
MARKERS = {"XLA": "o", "graph": "s"}


def _style(mode):
    implementation, precision, engine = mode.split()
    return dict(color=COLORS[implementation], linestyle=LINES[precision], marker=MARKERS[engine])


def _label(mode):
    implementation, precision, engine = mode.split()
    return f"{'tfp.bijectors.Glow' if implementation == 'tfp' else 'glow_tf'} {precision}, {engine}"


def _series(batches, value):
    """{mode: ([batch], [images/s])} for every mode of ``batches`` ({batch: {mode: result}})."""
    modes = [m for m in next(iter(batches.values())) if len(m.split()) == 3]
    return {mode: ([int(b) for b in batches], [value(batches[b][mode]) for b in batches]) for mode in modes}


def panels(results):
    """[(title, {mode: ([batch], [images/s])})] for every benchmark present."""
    out = []
    if "train" in results:
        out.append(("training step", _series(results["train"]["batches"], lambda r: r["images_per_second"])))
    if "sample" in results:
        batches = results["sample"]["batches"]
        for task, title in (("sample", "sampling"), ("encode", "encoding (log_prob)")):
            out.append((title, _series({b: r[task] for b, r in batches.items()}, lambda r: r["images_per_second"])))
    return out


def main():
    with open(RESULTS) as f:
        results = json.load(f)
    found = panels(results)
    if not found:
        raise SystemExit(f"{RESULTS} holds no train or sample results; run bench_train.py / bench_sample.py first")
    fig, axes = plt.subplots(1, len(found), figsize=(4.5 * len(found), 3.8), squeeze=False)
    for ax, (title, series) in zip(axes[0], found):
        for mode, (batches, rates) in series.items():
            ax.plot(batches, rates, label=_label(mode), **_style(mode))
        ax.set_title(title)
        ax.set_xlabel("batch size")
        ax.set_ylabel("images / s")
        ax.set_xscale("log", base=2)
        batches = next(iter(series.values()))[0]
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("32x32x3 Glow, 3 levels x depth 8, width 128, affine, 1x1 conv; "
                 f"{os.cpu_count()} CPU cores", fontsize=10)
    fig.tight_layout()
    fig.savefig(OUTPUT, dpi=110)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()

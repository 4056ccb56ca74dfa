"""benchmarks/throughput.png from benchmarks/results.json: images/s vs batch size, glow_tf vs TFP,
for training (bench_train.py), sampling and encoding (bench_sample.py).

    python -m benchmarks.plot   # from the repository root
"""
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.harness import RESULTS  # noqa: E402

OUTPUT = os.path.join(os.path.dirname(RESULTS), "throughput.png")
STYLE = {"glow_tf": dict(color="tab:blue", marker="o"), "tfp": dict(color="tab:orange", marker="s")}
LABEL = {"glow_tf": "glow_tf", "tfp": "tfp.bijectors.Glow"}


def panels(results):
    """[(title, {implementation: ([batch], [images/s])})] for every benchmark present."""
    out = []
    if "train" in results:
        batches = results["train"]["batches"]
        out.append(("training step", {impl: ([int(b) for b in batches],
                                             [batches[b][impl]["images_per_second"] for b in batches])
                                      for impl in STYLE}))
    if "sample" in results:
        batches = results["sample"]["batches"]
        for task, title in (("sample", "sampling"), ("encode", "encoding (log_prob)")):
            out.append((title, {impl: ([int(b) for b in batches],
                                       [batches[b][task][impl]["images_per_second"] for b in batches])
                                for impl in STYLE}))
    return out


def main():
    with open(RESULTS) as f:
        results = json.load(f)
    found = panels(results)
    if not found:
        raise SystemExit(f"{RESULTS} holds no train or sample results; run bench_train.py / bench_sample.py first")
    fig, axes = plt.subplots(1, len(found), figsize=(4.5 * len(found), 3.8), squeeze=False)
    for ax, (title, series) in zip(axes[0], found):
        for impl, (batches, rates) in series.items():
            ax.plot(batches, rates, label=LABEL[impl], **STYLE[impl])
        ax.set_title(title)
        ax.set_xlabel("batch size")
        ax.set_ylabel("images / s")
        ax.set_xscale("log", base=2)
        ax.set_xticks(series["glow_tf"][0], [str(b) for b in series["glow_tf"][0]])
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("32x32x3 Glow, 3 levels x depth 8, width 128, affine, 1x1 conv; XLA on "
                 f"{os.cpu_count()} CPU cores", fontsize=10)
    fig.tight_layout()
    fig.savefig(OUTPUT, dpi=110)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()

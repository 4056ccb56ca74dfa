"""docs/demo_curve.png: held-out bits/dim of a training run against its training time.

    .venv/bin/python docs/plot_curve.py demo_out docs/demo_curve.png   # after `make demo`

Reads the run's JSON-lines logs, the original's format (first line the hps): test.txt has one
record per test pass (epoch, bits_x), train.txt one per epoch (its mean bits_x, and
train_time: seconds spent in training steps so far, without test passes or sampling). A test
pass is placed at the train_time of its epoch, so both curves share the time axis; the
end-of-run pass after a partial epoch has no train.txt record, so no time, and is left out.
The README's sample figure beside it is glow-sample's own (``sample.py --out``).
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_log(path):
    """(hps, records) of a JSON-lines log: its first line, then one dict per line."""
    with open(path) as f:
        lines = [json.loads(line) for line in f.read().splitlines() if line]
    return lines[0], lines[1:]


def curves(logdir):
    """{'train': (seconds, bits_x), 'test': (seconds, bits_x)}; test passes at their epoch's train_time."""
    _, train = read_log(os.path.join(logdir, "train.txt"))
    seconds = {record["epoch"]: record["train_time"] for record in train}
    _, test = read_log(os.path.join(logdir, "test.txt"))
    test = [record for record in test if record["epoch"] in seconds]
    return {"train": ([r["train_time"] for r in train], [float(r["bits_x"]) for r in train]),
            "test": ([seconds[r["epoch"]] for r in test], [float(r["bits_x"]) for r in test])}


def plot(logdir, out):
    """Writes the figure: train bits/dim per epoch, held-out bits/dim per test pass, each labelled."""
    found = curves(logdir)
    hps, _ = read_log(os.path.join(logdir, "train.txt"))
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    ax.set_title(f"{hps['problem']} {hps['image_size']}x{hps['image_size']}, {hps['n_bits_x']}-bit, "
                 f"{hps['n_levels']} levels x depth {hps['depth']}, width {hps['width']}", fontsize=9)
    ax.plot(*found["train"], color="tab:gray", lw=1, label="train (epoch mean)")
    ax.plot(*found["test"], color="tab:blue", marker="o", label="held out")
    for t, bits in zip(*found["test"]):
        ax.annotate(f"{bits:.2f}", (t, bits), textcoords="offset points", xytext=(0, 7), ha="center",
                    fontsize=8, color="tab:blue")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("bits / dim")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(f"usage: {sys.argv[0]} LOGDIR OUT.png")
    plot(*sys.argv[1:])

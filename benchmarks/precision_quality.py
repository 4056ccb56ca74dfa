"""Quality at equal time: the same Glow trained in float32 and in mixed_bfloat16 for the same
wall-clock budget on MNIST, and their held-out bits/dim.

    python -m benchmarks.precision_quality               # 2 x 6 minutes on ../shared/data/mnist
    python -m benchmarks.precision_quality --quick       # 2 x 4 steps on the embedded digits
    (from the repository root)

Both runs go through glow_tf's own training loop (``train_lib.train_and_evaluate``) with the
same flags but ``--precision``, each in train.py's default engine: 32x32 MNIST (the loader's
split of the t10k files: first 9,000 train, last 1,000 held out), 3 levels x depth 8, width 128,
affine coupling, invertible 1x1 conv, Adam with lr 0.001 (warm-up 1 epoch), batch 64,
``--max_time`` the budget (which counts everything the run does: compilation, init, the
sample grids of epochs 1 and 10). The runs go one after the other, never side by side.

Then the held-out bits/dim of each, with the raw weights (the original's evaluation) and the
same dequantisation noise: the float32 model in float32, the mixed_bfloat16 model in
mixed_bfloat16 and in float32 (``layers.precision_as``): what the evaluation's precision changes.
Writes OUT.json (benchmarks/precision_quality, or WORKDIR/precision_quality with --quick).
"""
import argparse
import json
import os
import time

import glow_tf.cli  # noqa: F401  first: the programs' environment (glow_tf/cli/console.py)
from glow_tf import checkpoints, data, files, train_lib
import numpy as np
import tensorflow as tf

from benchmarks.harness import machine, print_table
from glow_tf.layers import precision_as
from glow_tf.train_config import TrainConfig

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MNIST = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "mnist"))
PRECISIONS = ("float32", "mixed_bfloat16")

FULL = dict(problem="mnist", image_size=32, n_levels=3, depth=8, width=128, flow_permutation=2, flow_coupling=1,
            optimizer="adam", lr=0.001, n_batch_train=64, n_test=1000, epochs_warmup=1, epochs_full_valid=10000,
            epochs_full_sample=10000, gradient_checkpointing=0, export=False)
QUICK = dict(problem="digits", image_size=16, anchor_size=16, n_levels=2, depth=2, width=16, flow_permutation=2,
             flow_coupling=1, optimizer="adam", lr=0.001, n_batch_train=16, n_batch_init=32, n_train=64, n_test=64,
             epochs_warmup=1, epochs_full_valid=10000, epochs_full_sample=10000, gradient_checkpointing=0,
             export=False, max_steps=4)


def train(flags, precision, logdir, seconds):
    """One run of ``flags`` in ``precision`` for ``seconds`` (resumed if interrupted); its wall seconds."""
    config = TrainConfig.from_flags({**flags, "precision": precision, "logdir": logdir,
                                     **({"max_time": float(seconds)} if seconds else {})})
    start = time.perf_counter()
    train_lib.train_and_evaluate(config)
    return time.perf_counter() - start, config


def held_out_bits_per_dim(config, precision, batch=100):
    """Mean held-out bits/dim of the run's raw weights computed in ``precision``, fixed noise."""
    model = checkpoints.restore_model(config.logdir, use_ema=False)
    bits = tf.function(lambda x, noise: model.bits_per_dim(x, noise=noise))
    rng = np.random.RandomState(0)
    values = []
    with precision_as(precision):
        for x, _ in data.make_datasets(config.data.replace(global_batch_test=batch)).test:
            noise = rng.uniform(0, 1.0 / model.config.n_bins, x.shape).astype(np.float32)
            values.append(bits(x, noise).numpy())
    return float(np.concatenate(values).mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=6.0, help="training budget of each run")
    parser.add_argument("--data_dir", default=DEFAULT_MNIST, help="the MNIST idx files")
    parser.add_argument("--workdir", default=os.path.join(HERE, "precision_quality_runs"),
                        help="the runs' logdirs (runs resume)")
    parser.add_argument("--quick", action="store_true", help="the embedded digits, 4 steps per run")
    args = parser.parse_args(argv)
    flags = dict(QUICK) if args.quick else {**FULL, "data_dir": args.data_dir}
    seconds = 0 if args.quick else 60 * args.minutes
    out = os.path.join(args.workdir if args.quick else HERE, "precision_quality")

    runs = {}
    for precision in PRECISIONS:
        wall, config = train(flags, precision, os.path.join(args.workdir, precision), seconds)
        prefix = checkpoints.resolve(config.logdir)[1]  # LOGDIR/checkpoints/ckpt-<step>
        runs[precision] = {"config": config, "wall_seconds": wall, "steps": int(prefix.rsplit("-", 1)[1])}
    rows, results = [], []
    for trained, evaluated in (("float32", "float32"), ("mixed_bfloat16", "mixed_bfloat16"),
                               ("mixed_bfloat16", "float32")):
        run = runs[trained]
        bits = held_out_bits_per_dim(run["config"], evaluated)
        results.append({"trained_in": trained, "evaluated_in": evaluated, "steps": run["steps"],
                        "wall_seconds": run["wall_seconds"], "held_out_bits_per_dim": bits})
        rows.append([trained, evaluated, run["steps"], f"{run['wall_seconds']:.0f}", f"{bits:.4f}"])
    print(f"\nHeld-out bits/dim after equal budgets ({args.minutes if not args.quick else 'quick'} minutes each):")
    print_table(["trained in", "evaluated in", "steps", "wall s", "held-out bits/dim"], rows)
    difference = results[2]["held_out_bits_per_dim"] - results[1]["held_out_bits_per_dim"]
    print(f"mixed_bfloat16 model evaluated in float32 minus in mixed_bfloat16: {difference:+.4f} bits/dim")
    files.write_json_atomic(out + ".json", {"flags": flags, "budget_seconds": seconds, "results": results,
                                            "evaluation_difference": difference, "machine": machine()})
    return results


if __name__ == "__main__":
    main()

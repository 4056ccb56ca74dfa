"""The Glow paper's ablation (Section 5.1, Figure 3) on 2 CPU cores: reverse vs shuffle vs
invertible 1x1 conv, each with additive and with affine coupling, seeds 0, 1 and 2.

    python -m benchmarks.ablation            # make ablation: the 18 runs, then JSON, PNG, table
    python -m benchmarks.ablation --quick    # 2 cells x 1 seed x 4 steps on the embedded digits
    (from the repository root)

Every run goes through glow_tf's own training loop, ``train_lib.train_and_evaluate`` (the
original's Adamax, learning-rate warm-up and Polyak average), with the same flags and the same
number of steps; only ``--flow_permutation``, ``--flow_coupling`` and ``--seed`` change (the seed
also seeds the 1x1 convs' W, the shuffle permutations, the data order and the noise).

The grid (``FULL``), and why:
  * MNIST 32x32 (padded and tiled to RGB as the original), the loader's split of the t10k files
    in ../shared/data/mnist: first 9,000 images train, last 1,000 held out; ``--data_dir`` and
    ``--problem`` select a full MNIST or CIFAR-10 copy instead, with the same flags (its test
    passes then read the first 1,000 of its held-out images, so that they cost the same).
  * The original README's ablation flags where they fit 2 cores: ``--learntop --lr 0.001
    --n_bits_x 8``, Adamax, held-out bits/dim with the raw weights (``use_ema_for_eval`` False,
    the original's), n_levels 3; depth, width and batch reduced (below).
  * The loop tests every ``epochs_full_valid`` epochs, so an "epoch" here is the eval period:
    ``n_train = EVAL_EVERY * n_batch_train`` (it sets the epoch length only; every run still
    draws from all 9,000 images) and ``epochs_full_valid`` 1. ``polyak_epochs`` is set so that
    beta2 = 1 - 1 / (steps of one pass over the 9,000 images), the horizon of the original's
    default (``polyak_epochs`` 1, an epoch being the training set). Warm-up: the original's 10
    epochs would be most of the budget; 2 eval periods here.
  * Size and budget, measured on this 2-core machine with other sessions' jobs running (load
    average 2.4-4.5, no timing benchmark): 3 levels x depth 8, width 64, batch 32, 500 steps
    (16,000 images, 1.8 passes over the 9,000), held-out bits/dim every 50 steps (10 points
    per curve). XLA: 0.23 s per steady step against 0.29 s without (depth 8, width 128: 0.30
    against 0.56 s); its compilation costs a run about 15 s more (first 40 steps: 45 s against
    30 s), repaid within 300 steps. One whole run of this grid (reverse, affine, seed 0) took
    231 s: the first 50 steps 51 s (compilation, DDI, first test pass and sample grids), every
    later 50 steps with its test pass over the 1,000 held-out images 17-23 s, the end 3 s; so
    the 18 runs take about 70 minutes (up to ~85 under heavier load). Plain backprop
    (``gradient_checkpointing`` 0: the memory-saving mode saves memory this small model does
    not need); one step per call (``steps_per_execution`` 10 was slower: 184 s against 132 s
    for 200 steps).

Runs: ``WORKDIR/<permutation>-<coupling>-seed<k>/`` is one train.py ``--logdir``, and the loop's
own output goes to ``WORKDIR/<run>.log``. A run whose checkpoint is at ``max_steps`` and whose
test.txt has the last pass is finished and skipped on re-run; any other is resumed by
train_and_evaluate from its checkpoint. A run that diverges (the loop's NonFiniteError) is
reported and left out of the means. A work folder whose runs were trained with other flags is
refused, naming the flags, before anything trains.

Writes (atomically) ``OUT.json``: the flags, every run's curve (steps, held-out bits/dim), wall
and training seconds, and the table of final bits/dim per cell (mean, sample std, min, max over
seeds); ``OUT.png``: held-out bits/dim vs steps, two panels (additive, affine) with three lines
each (mean over seeds, min-max band), as the paper's Figure 3. OUT is benchmarks/ablation, or
WORKDIR/ablation with --quick.
"""
import argparse
import contextlib
import dataclasses
import itertools
import json
import os
import sys
import threading
import time

import glow_tf.cli  # noqa: F401  first: the programs' environment (glow_tf/cli/console.py)
from glow_tf import checkpoints, files, train_lib
import matplotlib
import numpy as np
import tensorflow as tf
import tf_keras

from benchmarks.harness import machine, print_table
from glow_tf.config import FLOW_COUPLINGS
from glow_tf.train_config import TrainConfig

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MNIST = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "mnist"))
PERMUTATIONS = {0: "reverse", 1: "shuffle", 2: "1x1 conv"}  # the paper's legend
RUN_SLUGS = {0: "reverse", 1: "shuffle", 2: "conv1x1"}
SEEDS = (0, 1, 2)
POLL_SECONDS = 2.0
WALL_SECONDS_FILE = "wall_seconds.json"
# Flags that differ between the runs of a grid (everything else is the grid's).
PER_RUN = ("flow_permutation", "flow_coupling", "seed", "logdir")

MNIST_TRAIN = 9000  # the loader's split of the t10k files: first 9,000 train
BATCH, EVAL_EVERY = 32, 50


@dataclasses.dataclass(frozen=True)
class Grid:
    """What is trained: every cell (permutation, coupling) with every seed, all runs on ``flags``.

    Attributes:
      cells: ((flow_permutation, flow_coupling), ...).
      seeds: the seeds of every cell.
      steps: training steps of every run (a multiple of eval_every, so the last pass is a
        regular one and every curve has steps // eval_every points).
      eval_every: steps between held-out passes.
      flags: TrainConfig fields shared by every run. image_size, n_train and n_test are given
        (not -1, "the data's"): the loop logs them resolved, and check_same_flags compares.
    """
    cells: tuple
    seeds: tuple
    steps: int
    eval_every: int
    flags: dict

    @property
    def n_evals(self):
        return self.steps // self.eval_every


FULL = Grid(
    cells=tuple(itertools.product(PERMUTATIONS, FLOW_COUPLINGS)), seeds=SEEDS, steps=500, eval_every=EVAL_EVERY,
    flags=dict(problem="mnist", image_size=32, anchor_size=32, n_levels=3, depth=8, width=64, n_bits_x=8,
               learntop=True, lr=0.001, n_batch_train=BATCH, n_test=1000, epochs_warmup=2,
               polyak_epochs=MNIST_TRAIN / (BATCH * EVAL_EVERY), gradient_checkpointing=0, jit_compile=True))

# A tiny grid for the test: two cells, one seed, two passes, on the embedded digits (offline).
QUICK = Grid(
    cells=((0, 0), (2, 1)), seeds=(0,), steps=4, eval_every=2,
    flags=dict(problem="digits", image_size=16, anchor_size=16, n_levels=2, depth=2, width=16, n_bits_x=8,
               learntop=True, lr=0.001, n_batch_train=16, n_batch_init=32, n_test=60, epochs_warmup=1,
               gradient_checkpointing=0, jit_compile=False))


# ----------------------------------------------------------------------------- the runs
def run_name(cell, seed):
    permutation, coupling = cell
    return f"{RUN_SLUGS[permutation]}-{FLOW_COUPLINGS[coupling]}-seed{seed}"


def run_config(grid, cell, seed, workdir, problem, data_dir):
    """The TrainConfig of one run: the grid's flags, its cell and seed, its logdir in workdir.

    Sample grids are written only where the loop always writes them (epochs 1 and 10, the
    end), the fewest checkpoints are kept (2: a damaged newest one leaves one to resume from), and
    there is no export: the ablation needs the test logs.
    """
    permutation, coupling = cell
    return TrainConfig.from_flags({**grid.flags, "problem": problem, "data_dir": data_dir},
                                  flow_permutation=permutation, flow_coupling=coupling, seed=seed,
                                  logdir=os.path.join(workdir, run_name(cell, seed)),
                                  n_train=grid.eval_every * grid.flags["n_batch_train"], epochs_full_valid=1,
                                  epochs_full_sample=10 ** 6, max_steps=grid.steps, keep_checkpoints=2, export=False)


def read_records(path):
    """The records of one of the loop's JSON-lines logs (first line: the hps), [] if absent.

    A line being appended while it is read (the progress thread reads during training) is
    left out; the next read has it.
    """
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for line in f.read().splitlines()[1:]:
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
    return records


def read_curve(config):
    """(steps, held-out bits/dim) of every test pass of the run so far (one replica)."""
    records = read_records(os.path.join(config.logdir, "test.txt"))
    return ([r["n_processed"] // config.n_batch_train for r in records],
            [float(r["bits_x"]) for r in records])


def trained_steps(config):
    """The step of the run's latest checkpoint (0 if it has none): what a resume starts from."""
    prefix = tf.train.latest_checkpoint(os.path.join(config.logdir, checkpoints.CHECKPOINTS_DIR))
    return int(tf.train.load_variable(prefix, "step/.ATTRIBUTES/VARIABLE_VALUE")) if prefix else 0


def is_finished(config):
    """max_steps reached: checkpoint there, and the last test pass logged."""
    steps, _ = read_curve(config)
    return trained_steps(config) == config.max_steps and steps[-1:] == [config.max_steps]


# Flags that change nothing a run computes (runs of grids before 2 checkpoints were the least kept
# have --keep_checkpoints 1).
_NOT_COMPARED = ("logdir", "keep_checkpoints")


def check_same_flags(config):
    """Refuses a logdir trained with other flags: a grid's runs must share every flag but PER_RUN."""
    if not os.path.exists(os.path.join(config.logdir, checkpoints.CONFIG_FILE)):
        return
    saved = checkpoints.read_run_config(config.logdir)["train"]
    changed = [f"--{name} {saved.get(name)!r} (now {value!r})" for name, value in config.flags().items()
               if name not in _NOT_COMPARED and saved.get(name) != value]
    if changed:
        raise ValueError(f"{config.logdir} was trained with other flags: {', '.join(changed)}. "
                         "Pass another --workdir, or delete that run to train it anew.")


@contextlib.contextmanager
def reporting(label, config, out):
    """Prints to ``out`` each new held-out pass of the run while the body trains it.

    The loop only appends to its test.txt, so a thread polls that file; ``out`` is the real
    stdout, the loop's own output going to the run's log file.
    """
    start, stop = time.time(), threading.Event()
    seen = len(read_curve(config)[0])

    def watch():
        nonlocal seen
        done = False
        while not done:
            done = stop.wait(POLL_SECONDS)
            steps, bits = read_curve(config)
            for step, value in zip(steps[seen:], bits[seen:]):
                print(f"{label}: step {step}/{config.max_steps}, held-out {value:.4f} bits/dim "
                      f"({time.time() - start:.0f} s)", file=out, flush=True)
            seen = max(seen, len(steps))

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def read_wall_seconds(workdir):
    """{run name: wall seconds of the processes that trained it} (a killed process's are lost)."""
    path = os.path.join(workdir, WALL_SECONDS_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def add_wall_seconds(workdir, name, seconds):
    """Adds a process's wall seconds on a run to WORKDIR/wall_seconds.json (so resumes add up)."""
    walls = read_wall_seconds(workdir)
    walls[name] = walls.get(name, 0.0) + seconds
    files.write_json_atomic(os.path.join(workdir, WALL_SECONDS_FILE), walls)


def train_run(config, label, workdir):
    """Trains (or resumes) one run; False if it diverged (the loop's NonFiniteError, reported)."""
    name, out = os.path.basename(config.logdir), sys.stdout
    print(f"{label}: training from step {trained_steps(config)} (log: {config.logdir}.log)", flush=True)
    start = time.time()
    try:
        with open(config.logdir + ".log", "a") as log, contextlib.redirect_stdout(log), \
                reporting(label, config, out):
            train_lib.train_and_evaluate(config)
        return True
    except train_lib.NonFiniteError as e:
        print(f"{label}: diverged, left out of the means: {e}", flush=True)
        return False
    finally:
        add_wall_seconds(workdir, name, time.time() - start)
        tf_keras.backend.clear_session()  # one process trains every run: drop Keras' global state


def ensure_trained(configs, workdir):
    """Trains or resumes every run that is not finished; returns the names of those that diverged."""
    for config in configs:
        check_same_flags(config)  # all of them before anything trains
    diverged = set()
    for index, config in enumerate(configs, 1):
        name = os.path.basename(config.logdir)
        label = f"[{index}/{len(configs)}] {name}"
        if is_finished(config):
            print(f"{label}: finished ({read_curve(config)[1][-1]:.4f} bits/dim), skipped", flush=True)
        elif not train_run(config, label, workdir):
            diverged.add(name)
    return diverged


# -------------------------------------------------------------------------- the results
def collect_runs(configs, diverged, workdir):
    """{run name: its cell, seed, status, curve, wall seconds and training seconds}.

    The status is read from the run itself ('finished': max_steps reached, see is_finished), so
    only finished curves, all of the same length, enter the means; else 'diverged' (this
    process saw the loop's NonFiniteError) or 'unfinished'.
    """
    walls = read_wall_seconds(workdir)
    runs = {}
    for config in configs:
        name = os.path.basename(config.logdir)
        status = "finished" if is_finished(config) else "diverged" if name in diverged else "unfinished"
        steps, bits = read_curve(config)
        train_records = read_records(os.path.join(config.logdir, "train.txt"))
        runs[name] = dict(flow_permutation=config.model.flow_permutation, flow_coupling=config.model.flow_coupling,
                          seed=config.seed, status=status, steps=steps, bits_per_dim=bits,
                          wall_seconds=walls.get(name),
                          train_seconds=train_records[-1]["train_time"] if train_records else None)
    return runs


def cell_curves(runs, grid):
    """{(permutation, coupling): [n_seeds, n_evals] array} of the finished runs' curves."""
    curves = {}
    for cell in grid.cells:
        rows = [run["bits_per_dim"] for run in runs.values()
                if (run["flow_permutation"], run["flow_coupling"]) == cell and run["status"] == "finished"]
        curves[cell] = np.array(rows, dtype=float).reshape(len(rows), grid.n_evals)
    return curves


def final_table(curves):
    """One row per cell: final held-out bits/dim over the finished seeds (mean, sample std, min, max)."""
    table = []
    for (permutation, coupling), curve in curves.items():
        final = curve[:, -1]
        table.append(dict(permutation=PERMUTATIONS[permutation], coupling=FLOW_COUPLINGS[coupling],
                          n_seeds=len(final), mean=_stat(np.mean, final),
                          std=_stat(lambda v: np.std(v, ddof=1), final, 2),
                          min=_stat(np.min, final), max=_stat(np.max, final)))
    return table


def _stat(fn, values, at_least=1):
    return float(fn(values)) if len(values) >= at_least else None


def paper_ordering(table):
    """Per coupling: the permutations from lowest to highest mean, and whether that is the paper's
    (1x1 conv below shuffle below reverse)."""
    ordering = {}
    for coupling in dict.fromkeys(row["coupling"] for row in table):
        rows = [row for row in table if row["coupling"] == coupling and row["mean"] is not None]
        order = [row["permutation"] for row in sorted(rows, key=lambda row: row["mean"])]
        ordering[coupling] = dict(lowest_first=order, paper_order_holds=order == ["1x1 conv", "shuffle", "reverse"])
    return ordering


def print_final_table(table):
    def number(value):
        return "-" if value is None else f"{value:.4f}"

    print_table(["coupling", "permutation", "seeds", "final bits/dim", "min", "max"],
                [[row["coupling"], row["permutation"], row["n_seeds"],
                  f"{number(row['mean'])} ± {number(row['std'])}", number(row["min"]), number(row["max"])]
                 for row in table])


def plot(curves, grid, title, path):
    """The paper's Figure 3: one panel per coupling, per permutation the mean over seeds and the
    min-max band, held-out bits/dim vs training steps."""
    steps = grid.eval_every * np.arange(1, grid.n_evals + 1)
    couplings = list(dict.fromkeys(coupling for _, coupling in grid.cells))
    fig, axes = plt.subplots(1, len(couplings), figsize=(5 * len(couplings), 4), sharey=True, squeeze=False)
    for ax, coupling in zip(axes[0], couplings):
        for (permutation, cell_coupling), curve in curves.items():
            if cell_coupling != coupling or not len(curve):
                continue
            color = f"C{permutation}"
            ax.plot(steps, curve.mean(axis=0), color=color, label=f"{PERMUTATIONS[permutation]} (n={len(curve)})")
            ax.fill_between(steps, curve.min(axis=0), curve.max(axis=0), color=color, alpha=0.2, linewidth=0)
        ax.set_title(f"{FLOW_COUPLINGS[coupling]} coupling")
        ax.set_xlabel("training steps")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    axes[0][0].set_ylabel("held-out bits/dim")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    files.write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def describe(grid, problem):
    flags = grid.flags
    return (f"{problem} {flags['image_size']}x{flags['image_size']}, {flags['n_levels']} levels x depth "
            f"{flags['depth']}, width {flags['width']}, batch {flags['n_batch_train']}, {grid.steps} steps, "
            f"held-out bits/dim every {grid.eval_every}; band: min-max over seeds")


# -------------------------------------------------------------------------------- main
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the tiny grid on the embedded digits (QUICK)")
    parser.add_argument("--report_only", action="store_true",
                        help="train nothing: write the JSON, PNG and table from the runs finished so far "
                             "(an interrupted grid; unfinished runs are listed, not averaged)")
    parser.add_argument("--problem", choices=("mnist", "cifar10", "digits"),
                        help="mnist (default) or cifar10; digits with --quick")
    parser.add_argument("--data_dir", help=f"the data (default for mnist: {DEFAULT_MNIST}; cifar10: the Keras cache)")
    parser.add_argument("--workdir", help="folder of the runs (default benchmarks/ablation_runs, "
                                          "benchmarks/ablation_quick with --quick)")
    parser.add_argument("--out", help="prefix of OUT.json and OUT.png (default benchmarks/ablation, "
                                      "WORKDIR/ablation with --quick)")
    args = parser.parse_args(argv)
    grid = QUICK if args.quick else FULL
    args.problem = args.problem or grid.flags["problem"]
    if args.data_dir is None:
        args.data_dir = DEFAULT_MNIST if args.problem == "mnist" else ""
    args.data_dir = os.path.abspath(args.data_dir) if args.data_dir else ""
    args.workdir = os.path.abspath(args.workdir or os.path.join(HERE, "ablation_quick" if args.quick
                                                                else "ablation_runs"))
    args.out = args.out or (os.path.join(args.workdir, "ablation") if args.quick else os.path.join(HERE, "ablation"))
    return args, grid


def main(argv=None):
    args, grid = parse_args(argv)
    # Seed by seed, so that an interrupted grid already has every cell.
    configs = [run_config(grid, cell, seed, args.workdir, args.problem, args.data_dir)
               for seed in grid.seeds for cell in grid.cells]
    os.makedirs(args.workdir, exist_ok=True)
    diverged = set() if args.report_only else ensure_trained(configs, args.workdir)
    runs = collect_runs(configs, diverged, args.workdir)
    curves = cell_curves(runs, grid)
    table = final_table(curves)
    shared = {k: v for k, v in configs[0].flags().items() if k not in PER_RUN}
    results = dict(description=describe(grid, args.problem), steps=grid.steps, eval_every=grid.eval_every,
                   seeds=list(grid.seeds), cells=[list(cell) for cell in grid.cells], train_config=shared,
                   per_run_flags=list(PER_RUN), machine=machine(), runs=runs, table=table,
                   ordering=paper_ordering(table),
                   wall_seconds_total=sum(run["wall_seconds"] or 0.0 for run in runs.values()))
    files.write_json_atomic(args.out + ".json", results)
    plot(curves, grid, describe(grid, args.problem), args.out + ".png")
    print_final_table(table)
    print(f"wrote {args.out}.json and {args.out}.png; runs in {args.workdir}")
    return results


if __name__ == "__main__":
    main()

"""Build cost against depth: the looped flow steps (this glow_tf) vs the unrolled ones (before).

Workload: workloads.py's (32x32x3, 3 levels, width 128, affine coupling, 1x1 conv), one XLA
training step (forward, backward, Adamax, Polyak average) at batch 64, at depth 8, 16 and 32,
in normal and memory-saving mode. Two implementations, measured in the same run:

- ``loop``: this checkout's glow_tf, each level's steps one ``tf.while_loop`` over stacked
  parameters (``layers.FlowScan``);
- ``unrolled``: glow_tf at ``--baseline`` (default 75a29d9, the last commit with one layer
  and one set of variables per flow step), its package extracted with ``git archive``.

Every configuration runs in a fresh process, which reports: trace time; graph ops (the
step's and those of every function it calls: loop bodies and their gradients); XLA compile
time (first call minus a later one); the whole process's peak RSS (VmHWM, never reset: model,
trace, compile and steps); and the step time. The two implementations' processes of one
depth and mode are built one after the other (so that neither compiles while the other
works), then kept alive and asked in turn for ``--steps`` steps, ``--rounds`` times, the
order alternating, so that load from outside (on a shared VM, CPU steal) hits both alike;
the step time is the median of every timed step. The ratios depth 32 / depth 8 and the
step time per flow step of the loop over the unrolled model's are printed and stored in
results.json under "scale".

Targets (issue 11), depth 8 -> 32: compile time <= 1.3x, graph ops <= 1.3x, memory-saving peak
RSS <= 1.3x; the loop's step time per flow step within 10% of the unrolled model's.

    python -m benchmarks.bench_scale [--depths 8 16 32] [--batch 64] [--steps 2] [--rounds 4]
        [--modes normal memory-saving] [--quick]
"""
import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BASELINE = "75a29d9"


def child(depth, memory_saving, batch):
    """In the subprocess (``glow_tf`` first on sys.path is the implementation): builds and compiles
    the step, prints its build figures as one JSON line, then for every line "n" on stdin times
    n steps and prints their wall times; at the end of stdin prints the peak RSS."""
    import tensorflow as tf

    import glow_tf
    from benchmarks import harness, workloads

    x = tf.constant(workloads.images(batch))
    model = workloads.make_glow_tf(batch, depth, gradient_checkpointing=memory_saving)
    step = workloads.make_train_step(workloads.glow_tf_loss(model), model.trainable_variables)
    start = time.perf_counter()
    concrete = step.get_concrete_function(x)
    trace_s = time.perf_counter() - start
    compile_s = harness.compile_seconds(step, x)
    print(json.dumps({"depth": depth, "memory_saving": memory_saving, "batch": batch,
                      "glow_tf": os.path.dirname(os.path.dirname(glow_tf.__file__)),
                      "trainable_variables": len(model.trainable_variables), "graph_ops": len(harness.graph_op_types(concrete)),
                      "trace_seconds": trace_s, "compile_seconds": compile_s}), flush=True)
    for line in sys.stdin:
        print(json.dumps([harness.timed(step, x)[0] for _ in range(int(line))]), flush=True)
    print(json.dumps({"peak_rss_mib": harness.status_mib("VmHWM")}), flush=True)


def extract_baseline(revision, into):
    """The glow_tf package of ``revision`` under ``into`` (git archive; nothing else of the tree)."""
    archive = subprocess.run(["git", "-C", REPO, "archive", "--format=tar", revision, "glow_tf"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


class Child:
    """A ``child`` process of one implementation, built and compiled on construction."""

    def __init__(self, root, depth, memory_saving, batch):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, REPO])}
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--child", str(depth), str(int(memory_saving)),
             "--batch", str(batch)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env, cwd=tempfile.gettempdir())
        self.row = self._reply()
        self.walls = []

    def _reply(self):
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"bench_scale child exited with {self.process.wait()}:\n{self.process.stderr.read()[-3000:]}")
        return json.loads(line)

    def time_steps(self, n):
        self.process.stdin.write(f"{n}\n")
        self.process.stdin.flush()
        self.walls += self._reply()

    def finish(self):
        """The row: build figures, peak RSS and the median step time."""
        self.process.stdin.close()
        peak = self._reply()
        self.process.wait()
        return {**self.row, **peak, "step_seconds": float(np.median(self.walls)), "step_seconds_all": self.walls}


def measure(roots, depth, memory_saving, args):
    """One row per implementation, step times interleaved (the module docstring)."""
    children = {name: Child(root, depth, memory_saving, args.batch) for name, root in roots.items()}
    try:
        names = list(children)
        for round_index in range(args.rounds):
            for name in (names if round_index % 2 == 0 else names[::-1]):
                children[name].time_steps(args.steps)
        return [{"implementation": name, **child.finish()} for name, child in children.items()]
    finally:
        for child in children.values():
            child.process.kill()


MODES = {"normal": False, "memory-saving": True}  # name -> memory_saving


def ratios(rows, depths, modes):
    """{implementation/mode: {figure: value at the deepest / value at the shallowest}} and the
    loop's step time per flow step over the unrolled one's at every depth."""
    by = {(r["implementation"], r["memory_saving"], r["depth"]): r for r in rows}
    low, high = min(depths), max(depths)
    growth = {}
    for implementation in ("loop", "unrolled"):
        for memory_saving in (MODES[m] for m in modes):
            key = f"{implementation}/{'memory-saving' if memory_saving else 'normal'}"
            a, b = by[implementation, memory_saving, low], by[implementation, memory_saving, high]
            growth[key] = {figure: b[figure] / a[figure] for figure in
                           ("compile_seconds", "graph_ops", "peak_rss_mib", "trace_seconds")}
    step_time = {f"{'memory-saving' if m else 'normal'}/depth {d}":
                 by["loop", m, d]["step_seconds"] / by["unrolled", m, d]["step_seconds"]
                 for m in (MODES[m] for m in modes) for d in depths}
    return {f"depth {high} / depth {low}": growth, "loop / unrolled step time": step_time}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per turn of one implementation")
    parser.add_argument("--rounds", type=int, default=4, help="turns of each implementation (alternating order)")
    parser.add_argument("--baseline", default=BASELINE, help="the unrolled glow_tf's commit")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--quick", action="store_true",
                        help="depths 1 and 2, memory-saving mode, batch 2, 2 rounds of 1 step (a smoke test)")
    parser.add_argument("--no_results", action="store_true", help="do not write results.json")
    parser.add_argument("--child", nargs=2, metavar=("DEPTH", "MEMORY_SAVING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1] == "1", args.batch)
        return
    if args.quick:
        args.depths, args.modes, args.batch, args.steps, args.rounds = [1, 2], ["memory-saving"], 2, 1, 2
    from benchmarks import harness

    load_start = harness.load_average()
    rows = []
    with tempfile.TemporaryDirectory(prefix="glow_tf_baseline_") as baseline_root:
        roots = {"loop": REPO, "unrolled": extract_baseline(args.baseline, baseline_root)}
        for depth in args.depths:
            for memory_saving in (MODES[m] for m in args.modes):
                for row in measure(roots, depth, memory_saving, args):
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    load_end = harness.load_average()
    summary = ratios(rows, args.depths, args.modes)

    print(f"\nOne XLA training step, batch {args.batch}; unrolled = glow_tf at {args.baseline}; step s = median of "
          f"{args.rounds} x {args.steps} interleaved steps; "
          f"load average {load_start} -> {load_end}")
    harness.print_table(
        ["implementation", "mode", "depth", "variables", "graph ops", "trace s", "compile s", "peak RSS MiB",
         "step s", "ms per flow step"],
        [[r["implementation"], "memory-saving" if r["memory_saving"] else "normal", r["depth"],
          r["trainable_variables"], r["graph_ops"], f"{r['trace_seconds']:.1f}", f"{r['compile_seconds']:.1f}",
          f"{r['peak_rss_mib']:.0f}", f"{r['step_seconds']:.3f}",
          f"{1000 * r['step_seconds'] / (3 * r['depth']):.1f}"] for r in rows])
    growth_key = next(k for k in summary if k.startswith("depth"))
    print(f"\n{growth_key} (targets for the loop: compile, graph ops and memory-saving peak RSS <= 1.3x)")
    harness.print_table(["implementation/mode", "compile", "graph ops", "peak RSS", "trace"],
                        [[k, *(f"{v[f]:.2f}x" for f in ("compile_seconds", "graph_ops", "peak_rss_mib",
                                                         "trace_seconds"))]
                         for k, v in summary[growth_key].items()])
    print("\nloop / unrolled step time (target <= 1.10): " +
          ", ".join(f"{k} {v:.2f}x" for k, v in summary["loop / unrolled step time"].items()))
    if not args.no_results:
        harness.update_results("scale", {"batch": args.batch, "baseline": args.baseline, "configs": rows,
                                         "ratios": summary, "load_average": {"start": load_start, "end": load_end},
                                         "machine": harness.machine()})


if __name__ == "__main__":
    main()

"""Peak resident memory and time of one glow_tf training step, normal vs memory-saving mode.

Depth 8 and depth 32 (the workload of workloads.py otherwise), each with and without
``gradient_checkpointing`` (reversible backprop, glow_tf/layers/reversible.py). Every configuration
runs in a fresh subprocess, which builds the model, traces and XLA-compiles the training step
and runs it once (warm-up), hands the memory freed by compilation back to the OS (malloc_trim),
resets the kernel's peak-RSS counter (/proc/self/clear_refs) and runs one step.

Two memory figures per configuration, because they answer different questions:

- step RSS increase = step peak - RSS before the step: what running one compiled step needs
  (activations, gradients, XLA's temporary buffers). This is what the memory-saving mode
  acts on: in that mode it should be flat in depth.
- step peak RSS = the process's resident memory at the step's peak, including the baseline
  it starts from (``rss_before_step``), which holds the TF runtime (~600 MiB after imports),
  the variables (weights, 2 Adamax slots, Polyak average: 4 x 6 MiB at depth 8, 4 x 25 MiB at
  depth 32) and the host-side metadata of the traced and compiled step that TF and XLA keep for
  the process's lifetime (the traced graph and its function library with a Python stack trace
  per op, the tf2xla graph, the HLO module and the executable). That metadata grows with the
  number of TF ops in the step, i.e. with the number of variables (about 38 ops each in the
  memory-saving mode, mostly the per-variable Adamax and Polyak updates), so it grows with depth in both
  modes even when the step's own memory does not.

The stages leading to the baseline are reported too (RSS after imports, after model build and
data-dependent init, after tracing, after compile + warm-up + malloc_trim), as is the
compilation peak (VmHWM before the reset; ru_maxrss cannot be used: clear_refs resets it too).

Targets (issue 7): memory-saving depth-32 step peak <= 1.3 x the memory-saving depth-8 one,
and its step time <= 1.6 x the normal mode's.

    python -m benchmarks.bench_memory [--batch 64] [--steps 3]   # from the repository root
"""
import argparse
import ctypes
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = [(8, False), (8, True), (32, False), (32, True)]  # (depth, memory saving)


def _reset_peak_rss():
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS


def child(depth, memory_saving, batch, steps):
    """Runs in the subprocess: one configuration; prints one JSON line."""
    import numpy as np
    import tensorflow as tf

    from benchmarks import harness, workloads

    stages = {"imports": harness.status_mib("VmRSS")}
    x = tf.constant(workloads.images(batch))
    model = workloads.make_glow_tf(batch, depth, gradient_checkpointing=memory_saving)
    step = workloads.make_train_step(workloads.glow_tf_loss(model), model.trainable_variables)
    stages["model_and_init"] = harness.status_mib("VmRSS")
    trace_start = time.perf_counter()
    graph_ops = len(step.get_concrete_function(x).graph.get_operations())
    trace_s = time.perf_counter() - trace_start
    stages["traced"] = harness.status_mib("VmRSS")
    compile_s = harness.compile_seconds(step, x)
    compile_peak = harness.status_mib("VmHWM")
    _reset_peak_rss()
    rss_before = harness.status_mib("VmRSS")
    first_wall, _ = harness.timed(step, x)
    step_peak = harness.status_mib("VmHWM")
    walls = [first_wall] + [harness.timed(step, x)[0] for _ in range(steps - 1)]
    print(json.dumps({
        "depth": depth, "memory_saving": memory_saving, "batch": batch,
        "trainable_variables": len(model.trainable_variables), "graph_ops": graph_ops,
        "step_peak_rss_mib": step_peak, "rss_before_step_mib": rss_before,
        "step_rss_increase_mib": step_peak - rss_before,
        "rss_stages_mib": {**stages, "compiled_and_trimmed": rss_before},
        "compile_peak_rss_mib": compile_peak,
        "step_seconds": float(np.median(walls)), "trace_seconds": trace_s,
        "compile_seconds": compile_s}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration (median)")
    parser.add_argument("--child", nargs=2, metavar=("DEPTH", "MEMORY_SAVING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1] == "1", args.batch, args.steps)
        return

    from benchmarks import harness

    load_start = harness.load_average()
    rows = []
    for depth, memory_saving in CONFIGS:
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_memory", "--child", str(depth),
                              str(int(memory_saving)), "--batch", str(args.batch), "--steps", str(args.steps)],
                             cwd=REPO, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(f"depth {depth:2d} memory_saving={memory_saving!s:5}: {rows[-1]}", flush=True)

    by = {(r["depth"], r["memory_saving"]): r for r in rows}
    checks = {
        "saving_depth32_over_depth8_peak": by[32, True]["step_peak_rss_mib"] / by[8, True]["step_peak_rss_mib"],
        "saving_depth32_over_depth8_step_increase":
            by[32, True]["step_rss_increase_mib"] / by[8, True]["step_rss_increase_mib"],
        "normal_depth32_over_depth8_peak": by[32, False]["step_peak_rss_mib"] / by[8, False]["step_peak_rss_mib"],
        "saving_over_normal_time_depth8": by[8, True]["step_seconds"] / by[8, False]["step_seconds"],
        "saving_over_normal_time_depth32": by[32, True]["step_seconds"] / by[32, False]["step_seconds"],
    }
    load_end = harness.load_average()
    print(f"\nOne training step, batch {args.batch}, XLA; load average {load_start} -> {load_end}")
    harness.print_table(
        ["depth", "mode", "vars", "graph ops", "RSS imports", "+model", "+traced", "+compiled (baseline)",
         "step peak RSS", "step increase", "compile peak", "step s", "trace s", "compile s"],
        [[r["depth"], "memory-saving" if r["memory_saving"] else "normal", r["trainable_variables"], r["graph_ops"]]
         + [f"{r['rss_stages_mib'][k]:.0f}" for k in ("imports", "model_and_init", "traced", "compiled_and_trimmed")]
         + [f"{r['step_peak_rss_mib']:.0f}", f"{r['step_rss_increase_mib']:.0f}", f"{r['compile_peak_rss_mib']:.0f}",
            f"{r['step_seconds']:.2f}", f"{r['trace_seconds']:.0f}", f"{r['compile_seconds']:.0f}"] for r in rows])
    print("(MiB; baseline = RSS before the step: runtime, variables and the compiled step's host-side metadata)")
    print(f"memory-saving: depth-32 / depth-8 step peak RSS = {checks['saving_depth32_over_depth8_peak']:.2f} "
          f"(target <= 1.3; normal mode {checks['normal_depth32_over_depth8_peak']:.2f}), step's own RSS increase "
          f"{checks['saving_depth32_over_depth8_step_increase']:.2f}x; step time vs normal "
          f"{checks['saving_over_normal_time_depth8']:.2f}x at depth 8, "
          f"{checks['saving_over_normal_time_depth32']:.2f}x at depth 32 (target <= 1.6)")
    harness.update_results("memory", {"batch": args.batch, "configs": rows, "ratios": checks,
                                      "load_average": {"start": load_start, "end": load_end},
                                      "machine": harness.machine()})


if __name__ == "__main__":
    main()

"""Peak resident memory and time of one glow_tf training step, normal vs memory-saving mode.

Depth 8 and depth 32 (the workload of workloads.py otherwise), each with and without
``gradient_checkpointing`` (reversible backprop, glow_tf/reversible.py). Every configuration
runs in a fresh subprocess, which builds the model, compiles the XLA training step and runs it
once (warm-up), hands the memory freed by compilation back to the OS (malloc_trim), resets the
kernel's peak-RSS counter (/proc/self/clear_refs) and runs one step: the peak RSS of that step
(VmHWM) is what the step needs on top of the runtime, model and compiled code. The process's
lifetime peak (ru_maxrss, which includes XLA compilation) is reported beside it.

Targets (issue 7): memory-saving depth-32 step peak <= 1.3 x the memory-saving depth-8 one,
and its step time <= 1.6 x the normal mode's.

    python benchmarks/bench_memory.py [--batch 64] [--steps 3]
"""
import argparse
import ctypes
import json
import os
import re
import resource
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIGS = [(8, False), (8, True), (32, False), (32, True)]  # (depth, memory saving)


def _status_kib(field):
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+) kB", f.read()).group(1))


def _reset_peak_rss():
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS


def child(depth, memory_saving, batch, steps):
    """Runs in the subprocess: one configuration; prints one JSON line."""
    import numpy as np
    import tensorflow as tf

    from benchmarks import harness, workloads

    x = tf.constant(workloads.images(batch))
    step = workloads.glow_tf_train_step(batch, depth, gradient_checkpointing=memory_saving)
    compile_s = harness.compile_seconds(step, x)
    _reset_peak_rss()
    rss_before = _status_kib("VmRSS")
    first_wall, _ = harness.timed(step, x)
    step_peak = _status_kib("VmHWM")
    walls = [first_wall] + [harness.timed(step, x)[0] for _ in range(steps - 1)]
    print(json.dumps({
        "depth": depth, "memory_saving": memory_saving, "batch": batch,
        "step_peak_rss_mib": step_peak / 1024, "rss_before_step_mib": rss_before / 1024,
        "step_rss_increase_mib": (step_peak - rss_before) / 1024,
        "process_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "step_seconds": float(np.median(walls)), "compile_seconds": compile_s}))


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
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", str(depth), str(int(memory_saving)),
                              "--batch", str(args.batch), "--steps", str(args.steps)],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(f"depth {depth:2d} memory_saving={memory_saving!s:5}: {rows[-1]}", flush=True)

    by = {(r["depth"], r["memory_saving"]): r for r in rows}
    checks = {
        "saving_depth32_over_depth8_peak": by[32, True]["step_peak_rss_mib"] / by[8, True]["step_peak_rss_mib"],
        "normal_depth32_over_depth8_peak": by[32, False]["step_peak_rss_mib"] / by[8, False]["step_peak_rss_mib"],
        "saving_over_normal_time_depth8": by[8, True]["step_seconds"] / by[8, False]["step_seconds"],
        "saving_over_normal_time_depth32": by[32, True]["step_seconds"] / by[32, False]["step_seconds"],
    }
    load_end = harness.load_average()
    print(f"\nOne training step, batch {args.batch}, XLA; load average {load_start} -> {load_end}")
    harness.print_table(
        ["depth", "mode", "step peak RSS MiB", "step RSS increase MiB", "process peak MiB", "step s", "compile s"],
        [[r["depth"], "memory-saving" if r["memory_saving"] else "normal", f"{r['step_peak_rss_mib']:.0f}",
          f"{r['step_rss_increase_mib']:.0f}", f"{r['process_peak_rss_mib']:.0f}", f"{r['step_seconds']:.2f}",
          f"{r['compile_seconds']:.0f}"] for r in rows])
    print(f"memory-saving: depth-32 / depth-8 step peak = {checks['saving_depth32_over_depth8_peak']:.2f} "
          f"(target <= 1.3; normal mode {checks['normal_depth32_over_depth8_peak']:.2f}); step time vs normal "
          f"{checks['saving_over_normal_time_depth8']:.2f}x at depth 8, "
          f"{checks['saving_over_normal_time_depth32']:.2f}x at depth 32 (target <= 1.6)")
    harness.update_results("memory", {"batch": args.batch, "configs": rows, "ratios": checks,
                                      "load_average": {"start": load_start, "end": load_end},
                                      "machine": harness.machine()})


if __name__ == "__main__":
    main()

"""Training-step throughput of glow_tf vs tfp.bijectors.Glow on the same work, in one run.

The step is forward + backward + the original's Adamax update and Polyak average, compiled
with ``tf.function(jit_compile=True)``; the two models are described in workloads.py. For
every batch size: compile time (first call minus a steady-state call), then ``--rounds``
rounds that time ``--calls`` steps of each implementation in turn (order alternating), so a
burst of load from other processes hits both alike; figures are medians over all timed steps.

GFLOP/s counts the convolutions analytically (workloads.conv_flops_per_image; forward +
backward = 3 x forward) and is compared with this machine's fp32 matmul rate measured in the
same run (best 2048 x 2048 matmul under XLA, before and after the timings).

    python -m benchmarks.bench_train [--batches 16 32 64] [--rounds 5] [--calls 2]   # from the repository root
"""
import argparse

from benchmarks import harness, workloads  # before TensorFlow: they import glow_tf, which sets its environment
import tensorflow as tf

IMPLEMENTATIONS = {"glow_tf": workloads.glow_tf_train_step, "tfp": workloads.tfp_train_step}


def bench_batch(batch, rounds, calls):
    x = tf.constant(workloads.images(batch))
    steps = {name: make(batch) for name, make in IMPLEMENTATIONS.items()}
    compile_s = {name: harness.compile_seconds(step, x) for name, step in steps.items()}
    times = harness.interleaved(steps, {name: (x,) for name in steps}, rounds, calls)
    flops = workloads.conv_flops_per_image() * workloads.TRAIN_FLOPS_FACTOR * batch
    result = {}
    for name in steps:
        wall = harness.summary(times[name]["wall"])
        result[name] = {"compile_seconds": compile_s[name], "step_seconds": wall,
                        "cpu_seconds_per_step": harness.summary(times[name]["cpu"])["median"],
                        "images_per_second": batch / wall["median"],
                        "gflops_per_second": flops / wall["median"] / 1e9}
    result["speedup"] = result["glow_tf"]["images_per_second"] / result["tfp"]["images_per_second"]
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2, help="steps of each implementation per round")
    args = parser.parse_args()

    load_start = harness.load_average()
    peak = [harness.matmul_peak_gflops()]
    results = {batch: bench_batch(batch, args.rounds, args.calls) for batch in args.batches}
    peak.append(harness.matmul_peak_gflops())
    peak_gflops = max(peak)
    load_end = harness.load_average()

    print(f"\nTraining step (forward + backward + Adamax + Polyak), XLA, {workloads.IMAGE_SHAPE}, "
          f"{workloads.N_LEVELS} levels x depth {workloads.DEPTH}, width {workloads.WIDTH}, affine, 1x1 conv")
    print(f"fp32 matmul peak measured: {peak_gflops:.1f} GFLOP/s (runs: {', '.join(f'{p:.1f}' for p in peak)}); "
          f"conv FLOPs per image, forward {workloads.conv_flops_per_image() / 1e6:.0f} M, training x3; "
          f"load average {load_start} -> {load_end}")
    for r in results.values():
        for name in IMPLEMENTATIONS:
            r[name]["fraction_of_peak"] = r[name]["gflops_per_second"] / peak_gflops
    rows = []
    for batch, r in results.items():
        for name in IMPLEMENTATIONS:
            s = r[name]
            rows.append([batch, name, f"{s['compile_seconds']:.1f}",
                         f"{s['step_seconds']['median']:.3f} ({s['step_seconds']['min']:.3f}-{s['step_seconds']['max']:.3f})",
                         f"{s['cpu_seconds_per_step']:.2f}", f"{s['images_per_second']:.1f}",
                         f"{s['gflops_per_second']:.1f}", f"{100 * s['fraction_of_peak']:.0f}%"])
        rows.append([batch, "glow_tf / tfp", "", "", "", f"{r['speedup']:.2f}x", "", ""])
    harness.print_table(["batch", "implementation", "compile s", "step s median (min-max)", "CPU s/step",
                         "images/s", "GFLOP/s", "of peak"], rows)
    harness.update_results("train", {
        "batches": {str(b): r for b, r in results.items()}, "matmul_peak_gflops": peak_gflops,
        "matmul_peak_runs": peak, "conv_flops_per_image_forward": workloads.conv_flops_per_image(),
        "flops_convention": "convolution FLOPs counted analytically, training = 3 x forward",
        "rounds": args.rounds, "calls_per_round": args.calls,
        "load_average": {"start": load_start, "end": load_end}, "machine": harness.machine()})


if __name__ == "__main__":
    main()

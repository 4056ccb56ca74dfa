"""Training-step throughput of glow_tf in each precision and engine vs tfp.bijectors.Glow, in one run,
as fractions of this machine's measured limit.

The step is forward + backward + the original's Adamax update and Polyak average (workloads.py
describes the two models). Each implementation runs in every mode it has:

    glow_tf  float32 / mixed_bfloat16  x  XLA (the whole step compiled: ``jit_compile``) /
                                          TensorFlow graph (oneDNN's kernels on CPU)
    tfp      float32                   x  XLA / TensorFlow graph (its layers take no Keras policy)

For every batch size: compile time (first call minus a steady-state call), then ``--rounds``
rounds that time ``--calls`` steps of every mode in turn (order reversed every other round), so
a burst of load from other processes hits all alike; figures are medians over all timed steps.

GFLOP/s counts the convolutions analytically (workloads.conv_flops_per_image; forward +
backward = 3 x forward). The machine's limit is the largest 2048 x 2048 matmul rate measured in
the same run, before and after the timings, over float32 / bfloat16 x XLA / TensorFlow's own
kernel (oneDNN): every row is printed as a fraction of it.

    python -m benchmarks.bench_train [--batches 16 32 64] [--rounds 5] [--calls 2] [--quick]
"""
import argparse
import itertools

from benchmarks import harness, workloads  # first: they set the programs' environment (glow_tf/cli/console.py)
import tensorflow as tf

from benchmarks.workloads import ENGINES, PRECISIONS

# (implementation, precision, engine) of every timed mode.
MODES = ([("glow_tf", precision, engine) for precision, engine in itertools.product(PRECISIONS, ENGINES)]
         + [("tfp", "float32", engine) for engine in ENGINES])
TODAY = ("glow_tf", "float32", "XLA")  # the default before the graph engine and mixed precision


def mode_name(mode):
    return " ".join(mode)


def make_step(mode, batch, depth):
    implementation, precision, engine = mode
    if implementation == "glow_tf":
        return workloads.glow_tf_train_step(batch, depth, precision=precision, jit_compile=ENGINES[engine])
    return workloads.tfp_train_step(batch, depth, jit_compile=ENGINES[engine])


def bench_batch(batch, modes, rounds, calls, depth=workloads.DEPTH):
    x = tf.constant(workloads.images(batch))
    steps = {mode: make_step(mode, batch, depth) for mode in modes}
    compile_s = {mode: harness.compile_seconds(step, x) for mode, step in steps.items()}
    times = harness.interleaved(steps, {mode: (x,) for mode in steps}, rounds, calls)
    flops = workloads.conv_flops_per_image(depth) * workloads.TRAIN_FLOPS_FACTOR * batch
    result = {}
    for mode in steps:
        wall = harness.summary(times[mode]["wall"])
        result[mode] = {"compile_seconds": compile_s[mode], "step_seconds": wall,
                        "cpu_seconds_per_step": harness.summary(times[mode]["cpu"])["median"],
                        "images_per_second": batch / wall["median"],
                        "gflops_per_second": flops / wall["median"] / 1e9}
    return result


def fastest(result, implementation, precision):
    """The fastest mode of ``implementation`` in ``precision`` among those measured."""
    candidates = [mode for mode in result if mode[:2] == (implementation, precision)]
    return max(candidates, key=lambda mode: result[mode]["images_per_second"])


def peaks():
    """{(dtype name, engine): GFLOP/s} of the 2048 x 2048 matmul."""
    return {(dtype.name, engine): harness.matmul_peak_gflops(dtype=dtype, jit_compile=jit)
            for dtype in (tf.float32, tf.bfloat16) for engine, jit in ENGINES.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2, help="steps of each mode per round")
    parser.add_argument("--quick", action="store_true",
                        help="depth 1, batch 4, one round of one step, results.json untouched: a smoke test")
    args = parser.parse_args(argv)
    depth = 1 if args.quick else workloads.DEPTH
    if args.quick:
        args.batches, args.rounds, args.calls = [4], 1, 1

    load_start = harness.load_average()
    peak_runs = [peaks()]
    results = {batch: bench_batch(batch, MODES, args.rounds, args.calls, depth) for batch in args.batches}
    peak_runs.append(peaks())
    load_end = harness.load_average()
    peak = {key: max(run[key] for run in peak_runs) for key in peak_runs[0]}
    limit_key = max(peak, key=peak.get)
    limit = peak[limit_key]

    print(f"\nTraining step (forward + backward + Adamax + Polyak), {workloads.IMAGE_SHAPE}, {workloads.N_LEVELS} "
          f"levels x depth {depth}, width {workloads.WIDTH}, affine, 1x1 conv; load average "
          f"{load_start} -> {load_end}")
    print("2048 x 2048 matmul, GFLOP/s (best of two runs): " + ", ".join(
        f"{dtype} {engine} {value:.0f}" for (dtype, engine), value in peak.items())
          + f"; the limit: {limit:.0f} ({' '.join(limit_key)})")
    rows = []
    for batch, result in results.items():
        for mode, r in result.items():
            r["fraction_of_limit"] = r["gflops_per_second"] / limit
            s = r["step_seconds"]
            rows.append([batch, mode_name(mode), f"{r['compile_seconds']:.1f}",
                         f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f})", f"{r['cpu_seconds_per_step']:.2f}",
                         f"{r['images_per_second']:.1f}", f"{r['gflops_per_second']:.0f}",
                         f"{100 * r['fraction_of_limit']:.0f}%"])
    harness.print_table(["batch", "mode", "compile s", "step s median (min-max)", "CPU s/step", "images/s",
                         "GFLOP/s", "of limit"], rows)
    summary = {}
    for batch, result in results.items():
        best = {key: fastest(result, *key) for key in
                (("glow_tf", "float32"), ("glow_tf", "mixed_bfloat16"), ("tfp", "float32"))}
        ips = {key: result[mode]["images_per_second"] for key, mode in best.items()}
        today = result[TODAY]["images_per_second"]
        summary[batch] = {"fastest": {" ".join(key): mode_name(mode) for key, mode in best.items()},
                          "mixed_bfloat16_vs_today": ips["glow_tf", "mixed_bfloat16"] / today,
                          "mixed_bfloat16_vs_tfp": ips["glow_tf", "mixed_bfloat16"] / ips["tfp", "float32"],
                          "float32_vs_today": ips["glow_tf", "float32"] / today,
                          "float32_vs_tfp": ips["glow_tf", "float32"] / ips["tfp", "float32"]}
        print(f"batch {batch}: fastest modes {summary[batch]['fastest']}; glow_tf mixed_bfloat16 "
              f"{summary[batch]['mixed_bfloat16_vs_today']:.2f}x today's float32 XLA step and "
              f"{summary[batch]['mixed_bfloat16_vs_tfp']:.2f}x TFP; glow_tf float32 "
              f"{summary[batch]['float32_vs_today']:.2f}x today's and {summary[batch]['float32_vs_tfp']:.2f}x TFP")
    if not args.quick:
        harness.update_results("train", {
            "batches": {str(b): {mode_name(mode): r for mode, r in result.items()} for b, result in results.items()},
            "summary": {str(b): s for b, s in summary.items()},
            "matmul_gflops": {" ".join(key): value for key, value in peak.items()},
            "limit_gflops": limit, "limit": " ".join(limit_key),
            "conv_flops_per_image_forward": workloads.conv_flops_per_image(),
            "flops_convention": "convolution FLOPs counted analytically, training = 3 x forward",
            "rounds": args.rounds, "calls_per_round": args.calls,
            "load_average": {"start": load_start, "end": load_end}, "machine": harness.machine()})
    return summary


if __name__ == "__main__":
    main()

"""Sampling and encoding throughput of glow_tf vs tfp.bijectors.Glow on the same model, one run.

Sampling: ``model.sample(n)`` (standard normal latents -> decode -> uint8 images) vs TFP's
``TransformedDistribution.sample(n)`` followed by the same uint8 postprocessing. Encoding:
``model.log_prob(x)`` vs TFP's ``log_prob(x)`` on the same continuous images. Every call is
compiled with ``tf.function(jit_compile=True)``; the models are those of workloads.py (as
initialised, both equally untrained). Timings interleave the two implementations; figures
are medians over ``--rounds`` x ``--calls`` calls; compile time is reported separately.

    python -m benchmarks.bench_sample [--batches 16 32 64] [--rounds 15] [--calls 3]   # from the repository root
"""
import argparse

from benchmarks import harness, workloads  # before TensorFlow: they import glow_tf, which sets its environment
import tensorflow as tf

TASKS = ("sample", "encode")


def _functions(batch):
    """{(task, implementation): (compiled fn, args)} for one batch size."""
    model = workloads.make_glow_tf(batch)
    _, dist = workloads.make_tfp_glow(batch)
    x = model.preprocess(workloads.images(batch, seed=2))
    return {
        ("sample", "glow_tf"): (tf.function(lambda: model.sample(batch), jit_compile=True), ()),
        ("sample", "tfp"): (tf.function(lambda: model.postprocess(dist.sample(batch)), jit_compile=True), ()),
        ("encode", "glow_tf"): (tf.function(model.log_prob, jit_compile=True), (x,)),
        ("encode", "tfp"): (tf.function(dist.log_prob, jit_compile=True), (x,)),
    }


def bench_batch(batch, rounds, calls):
    functions = _functions(batch)
    result = {}
    for task in TASKS:
        fns = {impl: fn for (t, impl), (fn, _) in functions.items() if t == task}
        args = {impl: a for (t, impl), (_, a) in functions.items() if t == task}
        compile_s = {impl: harness.compile_seconds(fn, *args[impl]) for impl, fn in fns.items()}
        times = harness.interleaved(fns, args, rounds, calls)
        result[task] = {impl: {"compile_seconds": compile_s[impl], "call_seconds": harness.summary(times[impl]["wall"]),
                               "images_per_second": batch / harness.summary(times[impl]["wall"])["median"]}
                        for impl in fns}
        result[task]["speedup"] = (result[task]["glow_tf"]["images_per_second"]
                                   / result[task]["tfp"]["images_per_second"])
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=3)
    args = parser.parse_args()

    load_start = harness.load_average()
    results = {batch: bench_batch(batch, args.rounds, args.calls) for batch in args.batches}
    load_end = harness.load_average()
    print(f"\nSampling and encoding (log_prob), XLA, same model as bench_train; load average {load_start} -> {load_end}")
    rows = []
    for batch, r in results.items():
        for task in TASKS:
            for impl in ("glow_tf", "tfp"):
                s = r[task][impl]
                rows.append([batch, task, impl, f"{s['compile_seconds']:.1f}",
                             f"{s['call_seconds']['median']:.3f}", f"{s['images_per_second']:.0f}"])
            rows.append([batch, task, "glow_tf / tfp", "", "", f"{r[task]['speedup']:.2f}x"])
    harness.print_table(["batch", "task", "implementation", "compile s", "call s (median)", "images/s"], rows)
    harness.update_results("sample", {"batches": {str(b): r for b, r in results.items()},
                                      "rounds": args.rounds, "calls_per_round": args.calls,
                                      "load_average": {"start": load_start, "end": load_end},
                                      "machine": harness.machine()})


if __name__ == "__main__":
    main()

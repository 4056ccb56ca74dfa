"""Sampling and encoding throughput of glow_tf in each precision and engine vs tfp.bijectors.Glow
on the same model, one run.

Sampling: ``model.sample(n)`` (standard normal latents -> decode -> uint8 images) vs TFP's
``TransformedDistribution.sample(n)`` followed by the same uint8 postprocessing. Encoding:
``model.log_prob(x)`` vs TFP's ``log_prob(x)`` on the same continuous images. glow_tf runs in
float32 and in mixed_bfloat16 (``layers.precision_as``: the same weights), each compiled by
XLA or run as a TensorFlow graph (oneDNN's kernels on CPU); TFP in float32, either engine. The
models are those of workloads.py (as initialised, both equally untrained). Timings interleave
every mode; figures are medians over ``--rounds`` x ``--calls`` calls; compile time is reported
separately. Each task's row "best" is each implementation's fastest mode.

    python -m benchmarks.bench_sample [--batches 16 32 64] [--rounds 15] [--calls 3]   # from the repository root
"""
import argparse

from benchmarks import harness, workloads  # first: they set the programs' environment (glow_tf/cli/console.py)
import tensorflow as tf

from benchmarks.workloads import ENGINES, PRECISIONS
from glow_tf.layers import precision_as

TASKS = ("sample", "encode")


def _in_precision(fn, precision):
    def traced(*args):
        with precision_as(precision):
            return fn(*args)
    return traced


def _functions(batch):
    """{(task, mode): (fn, args)} for one batch size; a mode is (implementation, precision, engine)."""
    model = workloads.make_glow_tf(batch)
    _, dist = workloads.make_tfp_glow(batch)
    x = model.preprocess(workloads.images(batch, seed=2))
    functions = {}
    for engine, jit in ENGINES.items():
        for precision in PRECISIONS:
            mode = ("glow_tf", precision, engine)
            functions["sample", mode] = (tf.function(_in_precision(lambda: model.sample(batch), precision),
                                                     jit_compile=jit), ())
            functions["encode", mode] = (tf.function(_in_precision(model.log_prob, precision), jit_compile=jit), (x,))
        mode = ("tfp", "float32", engine)
        functions["sample", mode] = (tf.function(lambda: model.postprocess(dist.sample(batch)), jit_compile=jit), ())
        functions["encode", mode] = (tf.function(dist.log_prob, jit_compile=jit), (x,))
    return functions


def bench_batch(batch, rounds, calls):
    functions = _functions(batch)
    result = {}
    for task in TASKS:
        fns = {mode: fn for (t, mode), (fn, _) in functions.items() if t == task}
        args = {mode: a for (t, mode), (_, a) in functions.items() if t == task}
        compile_s = {mode: harness.compile_seconds(fn, *args[mode]) for mode, fn in fns.items()}
        times = harness.interleaved(fns, args, rounds, calls)
        result[task] = {" ".join(mode): {"compile_seconds": compile_s[mode],
                                         "call_seconds": harness.summary(times[mode]["wall"]),
                                         "images_per_second": batch / harness.summary(times[mode]["wall"])["median"]}
                        for mode in fns}
        best = {impl: max((m for m in result[task] if m.startswith(impl)),
                          key=lambda m: result[task][m]["images_per_second"]) for impl in ("glow_tf", "tfp")}
        result[task]["best"] = best
        result[task]["speedup"] = (result[task][best["glow_tf"]]["images_per_second"]
                                   / result[task][best["tfp"]]["images_per_second"])
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
    print(f"\nSampling and encoding (log_prob), same model as bench_train; load average {load_start} -> {load_end}")
    rows = []
    for batch, r in results.items():
        for task in TASKS:
            for mode, s in r[task].items():
                if mode not in ("best", "speedup"):
                    rows.append([batch, task, mode, f"{s['compile_seconds']:.1f}",
                                 f"{s['call_seconds']['median']:.3f}", f"{s['images_per_second']:.0f}"])
            best = r[task]["best"]
            rows.append([batch, task, f"best glow_tf ({best['glow_tf']}) / best tfp ({best['tfp']})", "", "",
                         f"{r[task]['speedup']:.2f}x"])
    harness.print_table(["batch", "task", "mode", "compile s", "call s (median)", "images/s"], rows)
    harness.update_results("sample", {"batches": {str(b): r for b, r in results.items()},
                                      "rounds": args.rounds, "calls_per_round": args.calls,
                                      "load_average": {"start": load_start, "end": load_end},
                                      "machine": harness.machine()})


if __name__ == "__main__":
    main()

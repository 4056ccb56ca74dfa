"""Timing, machine peak, load, graph-size and results.json helpers shared by the benchmark
programs (and by tests that check structural properties: op counts, compiled FLOPs)."""
import json
import math
import os
import re
import time

import glow_tf.cli  # noqa: F401  first: the programs' environment (glow_tf/cli/console.py)
import numpy as np
import tensorflow as tf

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.json")


def _wait(result):
    for t in tf.nest.flatten(result):
        if hasattr(t, "numpy"):
            t.numpy()
    return result


def timed(fn, *args):
    """(wall seconds, CPU seconds of this process) of fn(*args), waiting for the result."""
    wall, cpu = time.perf_counter(), time.process_time()
    _wait(fn(*args))
    return time.perf_counter() - wall, time.process_time() - cpu


def compile_seconds(fn, *args):
    """Wall time of the first call (tracing + XLA compilation + one run) minus a later run."""
    first, _ = timed(fn, *args)
    again, _ = timed(fn, *args)  # also the warm-up
    return first - again


def interleaved(fns, args, rounds, calls_per_round=1):
    """Times every fn of ``fns`` ({name: fn}) in turn, ``rounds`` times, the order reversed every
    other round so that a burst of load from other processes hits all of them alike.

    Returns {name: {"wall": [seconds per call], "cpu": [...]}}.
    """
    times = {name: {"wall": [], "cpu": []} for name in fns}
    names = list(fns)
    for round_index in range(rounds):
        for name in (names if round_index % 2 == 0 else names[::-1]):
            for _ in range(calls_per_round):
                wall, cpu = timed(fns[name], *args[name])
                times[name]["wall"].append(wall)
                times[name]["cpu"].append(cpu)
    return times


def summary(samples):
    """Median and spread of a list of seconds."""
    return {"median": float(np.median(samples)), "min": float(np.min(samples)),
            "max": float(np.max(samples)), "n": len(samples)}


def matmul_peak_gflops(size=2048, repeats=7, dtype=tf.float32, jit_compile=True):
    """This machine's matmul rate in ``dtype``: the best of ``repeats`` size x size matmuls, under
    XLA (``jit_compile``) or TensorFlow's own kernel (oneDNN on CPU)."""
    a = tf.cast(tf.random.stateless_normal([size, size], seed=[0, 0]), dtype)
    matmul = tf.function(lambda a: tf.matmul(a, a), jit_compile=jit_compile)
    _wait(matmul(a))
    best = min(timed(matmul, a)[0] for _ in range(repeats))
    return 2.0 * size ** 3 / best / 1e9


def graph_op_types(concrete_function):
    """The op type of every node of a traced function and of every function in its library
    (loop bodies, their gradients), one entry per node."""
    graph_def = concrete_function.graph.as_graph_def()
    return [node.op for node in graph_def.node] + [node.op for f in graph_def.library.function for node in f.node_def]


_HLO_SHAPE = r"\w+\[([\d,]*)\]"
_HLO_NAME = r"%([\w.\-]+)"


def _dims(text):
    return [int(d) for d in text.split(",") if d]


def hlo_flops(hlo_text):
    """Convolution and matmul FLOPs of an HLO module (``experimental_get_compiler_ir``'s
    "optimized_hlo" text), every instruction counted once: a loop body once, whatever its
    trip count (TensorFlow's loops carry none XLA could annotate).

    An instruction costs 2 * (output elements) * (multiply-adds per output element: the
    contracted dimensions of a dot, the kernel's elements per output feature of a convolution).
    """
    shapes = {name: _dims(dims) for name, dims in re.findall(rf"{_HLO_NAME}: {_HLO_SHAPE}", hlo_text)}  # parameters
    shapes.update({name: _dims(dims) for name, dims in re.findall(rf"^\s*(?:ROOT )?{_HLO_NAME} = {_HLO_SHAPE}",
                                                                   hlo_text, re.M)})
    total = 0
    for out, op, lhs, rhs, attributes in re.findall(
            rf"^\s*(?:ROOT )?%[\w.\-]+ = {_HLO_SHAPE}\S* (convolution|dot)\({_HLO_NAME}, {_HLO_NAME}\)(.*)$",
            hlo_text, re.M):
        if op == "dot":
            contracted = _dims(re.search(r"lhs_contracting_dims=\{([\d,]*)\}", attributes).group(1))
            per_output = math.prod(shapes[lhs][d] for d in contracted)
        else:  # the kernel's 'o' dimension from dim_labels, e.g. b01f_01io->b01f
            kernel_labels = re.search(r"dim_labels=\w+_(\w+)->", attributes).group(1)
            per_output = math.prod(shapes[rhs]) // shapes[rhs][kernel_labels.index("o")]
        total += 2 * math.prod(_dims(out)) * per_output
    return total


def status_mib(field, pid="self"):
    """A memory figure of /proc/PID/status in MiB: VmRSS (resident now) or VmHWM (its peak)."""
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(rf"{field}:\s+(\d+) kB", f.read()).group(1)) / 1024


def load_average():
    return [round(v, 2) for v in os.getloadavg()]


def machine():
    return {"cpus": os.cpu_count(), "tensorflow": tf.__version__,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "default"}


def update_results(section, values):
    """Writes ``values`` under ``section`` of benchmarks/results.json, keeping other sections."""
    results = {}
    if os.path.exists(RESULTS):
        with open(RESULTS) as f:
            results = json.load(f)
    results[section] = values
    from glow_tf import files  # here: bench_scale's children import this module under an older glow_tf
    files.write_json_atomic(RESULTS, results)


def print_table(headers, rows):
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    for row in [headers, ["-" * w for w in widths]] + rows:
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths)))

"""The headline: the original README's CelebA-HQ command, run as written (float32, so XLA by default;
``--precision mixed_bfloat16`` adds that flag: bfloat16 coupling networks on the TensorFlow graph).

    python train.py --problem celeba --data_dir DIR --image_size 256 --n_level 6 --depth 32 \\
        --flow_permutation 2 --flow_coupling 0 --seed 0 --learntop --lr 0.001 --n_bits_x 5

plus ``--max_steps 2 --logdir LOGDIR --log_steps``, on generated images in the original's
tfrecords layout (celeba_tfrecords.py: 32 train and 8 validation images). It reports

- the time from the start of the process to the first finished training step (when its
  record appears in train_steps.txt; target <= 3 minutes on 2 cores);
- the process's peak RSS (ru_maxrss of the child; target <= 6 GiB at the default batch, 1
  image per step at 256 px);
- the whole run's wall time, which includes the end-of-run test pass, the sample grids and
  the SavedModel export (target <= 10 minutes);
- when each of train.py's own progress lines was printed, and the process's RSS then and
  its peak so far, as a breakdown of time and memory.

``--quick`` runs the same path at 64x64 (6 levels, depth 2, width 16, one step of 16 images, so
that the sample grids' 100 images decode in 7 batches, not 100), a smoke test.

    python -m benchmarks.bench_celeba [--quick] [--keep DIR]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

from benchmarks import celeba_tfrecords, harness

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ORIGINAL_COMMAND = ("--problem celeba --image_size 256 --n_level 6 --depth 32 --flow_permutation 2 "
                    "--flow_coupling 0 --seed 0 --learntop --lr 0.001 --n_bits_x 5").split()
QUICK_CHANGES = {"--image_size": "64", "--depth": "2"}
QUICK_EXTRA = ["--width", "16", "--n_batch_train", "64"]
_LOG_NOISE = ("I0000", "W0000", "E0000", "WARNING: All log")  # TF's C++ start-up lines


def command(data_dir, logdir, quick, max_steps, extra=()):
    args = list(ORIGINAL_COMMAND) + list(extra)
    if quick:
        for flag, value in QUICK_CHANGES.items():
            args[args.index(flag) + 1] = value
        args += QUICK_EXTRA
    return ([sys.executable, os.path.join(REPO, "train.py"), *args, "--data_dir", data_dir, "--logdir", logdir,
             "--max_steps", str(max_steps), "--log_steps"])


def run(data_dir, logdir, quick=False, max_steps=2, extra=()):
    """Runs the command; returns {first_step_seconds, wall_seconds, peak_rss_mib, kernel_peak_rss_mib,
    sampled_peak_rss_mib, lines, returncode}.

    ``lines``: (seconds since the start, RSS MiB then, peak RSS MiB so far, the line) for every
    progress line train.py printed; the RSS is sampled every 0.5 s. ``peak_rss_mib`` is the larger
    of the kernel's high-water mark and the sampled peak (see the end of the function).
    """
    start = time.perf_counter()
    process = subprocess.Popen(command(data_dir, logdir, quick, max_steps, extra), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, cwd=REPO)
    lines, rss = [], {"now": 0.0, "peak": 0.0}

    def read():
        for line in process.stdout:
            if line.strip() and not line.startswith(_LOG_NOISE):
                seconds = round(time.perf_counter() - start, 1)
                lines.append((seconds, round(rss["now"]), round(rss["peak"]), line.rstrip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    steps_file = os.path.join(logdir, "train_steps.txt")
    first_step = None
    while process.poll() is None:
        # 0 once the process has exited: its last lines keep the last reading.
        rss["now"] = _rss_mib(process.pid) or rss["now"]
        rss["peak"] = max(rss["peak"], rss["now"])
        if first_step is None and os.path.exists(steps_file) and _has_step_record(steps_file):
            first_step = time.perf_counter() - start
        time.sleep(0.5)
    wall = time.perf_counter() - start
    reader.join()
    if first_step is None and os.path.exists(steps_file) and _has_step_record(steps_file):
        first_step = wall
    # Two accountings of the peak: the kernel's high-water mark (ru_maxrss of the largest child so
    # far) and the largest sampled VmRSS. Neither bounds the other: the kernel updates its mark
    # lazily (pages that madvise returns, as the heap trimmer's malloc_trim does, can leave
    # unrecorded), and sampling every 0.5 s misses short peaks. The run's peak is the larger.
    kernel_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"first_step_seconds": first_step, "wall_seconds": wall,
            "peak_rss_mib": max(kernel_peak, rss["peak"]), "kernel_peak_rss_mib": kernel_peak,
            "sampled_peak_rss_mib": rss["peak"], "returncode": process.returncode, "lines": lines}


def _rss_mib(pid):
    """The resident memory of process ``pid`` (0 once it has exited)."""
    try:
        return harness.status_mib("VmRSS", pid)
    except (OSError, AttributeError):
        return 0.0


def _has_step_record(path):
    with open(path) as f:
        return any('"step"' in line for line in f.readlines()[1:])  # the first line holds the hps


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="64x64, depth 2, width 16, one step of 16 images")
    parser.add_argument("--keep", help="write the data and the run here (default: a temporary folder)")
    parser.add_argument("--no_results", action="store_true", help="do not write results.json")
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"],
                        help="train.py's --precision (and so its default engine: XLA in float32, the "
                             "TensorFlow graph in mixed_bfloat16); results.json keeps each under its own key")
    args = parser.parse_args()
    extra = ["--precision", args.precision] if args.precision != "float32" else []

    with tempfile.TemporaryDirectory(prefix="glow_tf_celeba_") as scratch:
        root = args.keep or scratch
        data_dir = celeba_tfrecords.write_celeba(os.path.join(root, "data"), 64 if args.quick else 256)
        logdir = os.path.join(root, "logs")
        load_start = harness.load_average()
        result = run(data_dir, logdir, args.quick, max_steps=1 if args.quick else 2, extra=extra)
        load_end = harness.load_average()
    print("[seconds since start, RSS then / peak so far] train.py's output")
    for seconds, rss, peak, line in result["lines"]:
        print(f"[{seconds:7.1f} s, {rss / 1024:5.2f} / {peak / 1024:5.2f} GiB] {line}")
    if result["returncode"] != 0:
        raise SystemExit(f"train.py exited with {result['returncode']}")
    summary = {k: result[k] for k in ("first_step_seconds", "wall_seconds", "peak_rss_mib")}
    print(f"\n{'quick ' if args.quick else ''}CelebA-HQ command {' '.join(extra)}, load average {load_start} -> "
          f"{load_end}:")
    print(f"  first training step finished after {summary['first_step_seconds']:.0f} s (target <= 180 s)")
    print(f"  peak RSS {summary['peak_rss_mib'] / 1024:.2f} GiB (target <= 6 GiB)")
    print(f"  whole run (--max_steps {1 if args.quick else 2}: train, test pass, sample grids, export) "
          f"{summary['wall_seconds']:.0f} s (target <= 600 s)")
    if not args.no_results and not args.quick:
        key = "celeba_headline" + ("" if args.precision == "float32" else "_" + args.precision)
        harness.update_results(key, {**summary, "command": " ".join(ORIGINAL_COMMAND + extra),
                                                   "progress": result["lines"][-40:],
                                                   "load_average": {"start": load_start, "end": load_end},
                                                   "machine": harness.machine()})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

"""Training runs in subprocesses for the multi-worker, MPI and preemption tests.

One tiny run everywhere: the embedded digits at 16x16, 2 levels of depth 2, width 8; a global
batch of 16 images (one process of 16, or 2 workers of 8), 4 steps per epoch, 8 steps, every
step logged (train_steps.txt) and bit-identical reruns on CPU (--deterministic). Every process
writes its stdout and stderr to files beside its logdir, and every wait is bounded.
"""
import json
import os
import resource
import socket
import subprocess
import sys
import time

from conftest import REPO_ROOT

TRAIN = os.path.join(REPO_ROOT, "train.py")
TRAIN_WITH_FAULTS = os.path.join(REPO_ROOT, "tests", "train_with_faults.py")
STEPS, GLOBAL_BATCH = 8, 16
TINY = ["--problem", "digits", "--n_levels", "2", "--depth", "2", "--width", "8", "--anchor_size", "16",
        "--n_batch_init", "32", "--n_batch_test", "100", "--n_train", "64", "--epochs_warmup", "0",
        "--lr", "0.003", "--epochs_full_valid", "1", "--epochs_full_sample", "100", "--log_steps",
        "--gradient_checkpointing", "0", "--deterministic", "--nojit_compile", "--max_steps", str(STEPS)]
TIMEOUT = 300  # seconds any one run may take (they take 20 to 40 s on 2 cores)


def train_args(logdir, workers=1, *extra):
    """train.py's arguments: TINY at the global batch, split over ``workers`` processes."""
    return TINY + ["--logdir", str(logdir), "--n_batch_train", str(GLOBAL_BATCH // workers), "--noexport", *extra]


def start(command, output_prefix, env=None, file_size_limit=None):
    """Popen of ``command`` (python + args) in the repo, stdout/stderr to OUTPUT_PREFIX.out/.err.

    Its TMPDIR is OUTPUT_PREFIX.tmp unless ``env`` gives one: what a killed process leaves there
    (TensorFlow's autograph files, a worker's checkpoint copies) stays in the test's directory.
    ``file_size_limit``: bytes no file it writes may grow past (RLIMIT_FSIZE, as `ulimit -f`; its
    stdout and stderr files included).
    """
    env = {"TMPDIR": f"{output_prefix}.tmp", **(env or {})}
    os.makedirs(env["TMPDIR"], exist_ok=True)
    out, err = open(f"{output_prefix}.out", "w"), open(f"{output_prefix}.err", "w")
    limit = None if file_size_limit is None else (
        lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit)))
    process = subprocess.Popen([sys.executable] + command, cwd=REPO_ROOT, stdout=out, stderr=err, preexec_fn=limit,
                               env={**os.environ, **{name: str(value) for name, value in env.items()}})
    process.output_prefix = str(output_prefix)
    return process


def finish(process, timeout=TIMEOUT):
    """(exit status, stdout, stderr), killing the process if it runs longer than ``timeout`` seconds."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"{process.args} ran longer than {timeout} s; its output: {process.output_prefix}.*")
    return process.returncode, output(process, "out"), output(process, "err")


def output(process, stream):
    with open(f"{process.output_prefix}.{stream}") as f:
        return f.read()


def records(path):
    """The records of a JSON-lines log (the first line, the hps, left out)."""
    with open(path) as f:
        return [json.loads(line) for line in f.read().splitlines()[1:]]


def wait_for_steps(logdir, n, processes, timeout=TIMEOUT):
    """Waits until LOGDIR/train_steps.txt holds ``n`` step records, while all ``processes`` run."""
    path = os.path.join(logdir, "train_steps.txt")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path) and len(records(path)) >= n:
            return
        ended = [p for p in processes if p.poll() is not None]
        assert not ended, (f"{ended[0].args} ended ({ended[0].returncode}) before step {n}: "
                           + output(ended[0], "err")[-3000:])
        time.sleep(0.05)
    raise AssertionError(f"no {n} steps in {path} after {timeout} s")


def _kernel_port_floor():
    """The lowest port the kernel hands out by itself (to bind(port 0) and to outgoing connections)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


# Ports for the tests' clusters: below the kernel's own range, so that no connection the kernel
# numbers (TensorFlow's gRPC clients, other tests') can take one between the test choosing it and
# the worker binding it; a block of its own per pytest-xdist worker, and never one port twice in
# a process, so that no two of the suite's clusters ever ask for the same port.
_PORTS_PER_WORKER = 2000
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").lstrip("gw") or 0)
_next_port = [max(1024, min(20000, _kernel_port_floor() - 2 * _PORTS_PER_WORKER)) + _WORKER * _PORTS_PER_WORKER]


def free_ports(n):
    """``n`` consecutive ports free on 127.0.0.1: the next ``n`` of this worker's block that bind."""
    end = _next_port[0] - _next_port[0] % _PORTS_PER_WORKER + _PORTS_PER_WORKER
    while _next_port[0] + n <= end:
        base = _next_port[0]
        _next_port[0] += n
        try:
            for port in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return list(range(base, base + n))
        except OSError:  # taken by something outside the suite: the next ones
            continue
    raise AssertionError(f"no {n} consecutive free ports left in this worker's block")


def tf_config(ports, index):
    """The TF_CONFIG of worker ``index`` of a cluster on 127.0.0.1:ports."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


def start_workers(logdirs, extra=(), env=None, scripts=None, output_dir=None):
    """One train.py process per logdir, as the workers of one TF_CONFIG cluster on free ports.

    ``env``/``scripts``: per worker, extra environment and the script (TRAIN by default).
    """
    n = len(logdirs)
    ports = free_ports(n)
    processes = []
    for index, logdir in enumerate(logdirs):
        worker_env = {"TF_CONFIG": tf_config(ports, index), **((env or [{}] * n)[index])}
        script = (scripts or [TRAIN] * n)[index]
        processes.append(start([script] + train_args(logdir, n, "--strategy", "multi_worker", *extra),
                               os.path.join(output_dir, f"worker{index}"), worker_env))
    return processes


def step_losses(logdir):
    return [record["loss"] for record in records(os.path.join(logdir, "train_steps.txt"))]

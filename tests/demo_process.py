"""glow-demo in a subprocess for the demo's API and browser tests (and docs/screenshot_demo.py).

The server is the real program, ``python -m glow_tf.demo``, started on port 0: it takes a free
port and prints its URL, which ``start_demo`` waits for (bounded, while the process runs).
"""
import os
import re
import subprocess
import sys
import time

from conftest import REPO_ROOT, tiny_digits
from processes import output

STARTUP_TIMEOUT = 300  # seconds to the "serving" line (it takes 10 to 20 s on 2 cores)
_SERVING = re.compile(r"^glow-demo: serving .* at (http://\S+) ", re.MULTILINE)


def train_tiny_model(logdir):
    """A class-conditional digits Glow trained for one epoch of 4 steps (seconds): the demo's test model."""
    from glow_tf import train_lib
    train_lib.train_and_evaluate(tiny_digits(logdir, ycond=True, epochs=2, n_test=20))
    return logdir


def files_in(directory):
    """{path under ``directory``: (size, mtime in ns)} of every file: what a process must leave alone."""
    found = {}
    for root, _, names in os.walk(directory):
        for name in names:
            stat = os.stat(os.path.join(root, name))
            found[os.path.relpath(os.path.join(root, name), directory)] = (stat.st_size, stat.st_mtime_ns)
    return found


class DemoProcess:
    """A running glow-demo: ``url`` (ends with '/'), ``process``, and the directory it ran in (``cwd``)."""

    def __init__(self, process, url, cwd):
        self.process, self.url, self.cwd = process, url, cwd

    def stop(self):
        self.process.kill()
        self.process.wait()


def start_demo(args, directory, cwd=None):
    """Starts ``python -m glow_tf.demo --port 0 ARGS`` in ``cwd`` (default: DIRECTORY/work, created
    empty); its stdout and stderr go to DIRECTORY/demo.out and .err, its TMPDIR is DIRECTORY/demo.tmp."""
    prefix = os.path.join(directory, "demo")
    work = cwd or os.path.join(directory, "work")
    os.makedirs(work, exist_ok=cwd is not None)
    os.makedirs(f"{prefix}.tmp")
    # This repository's glow_tf, whichever one the environment has installed.
    python_path = os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")]))
    with open(f"{prefix}.out", "w") as out, open(f"{prefix}.err", "w") as err:
        process = subprocess.Popen([sys.executable, "-m", "glow_tf.demo", "--port", "0", *args], cwd=work,
                                   stdout=out, stderr=err,
                                   env={**os.environ, "TMPDIR": f"{prefix}.tmp", "PYTHONPATH": python_path})
    process.output_prefix = prefix
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        match = _SERVING.search(output(process, "out"))
        if match:
            return DemoProcess(process, match.group(1), work)
        if process.poll() is not None:
            raise AssertionError(f"glow-demo ended ({process.returncode}) before serving: {output(process, 'err')[-3000:]}")
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"glow-demo did not serve within {STARTUP_TIMEOUT} s; its output: {prefix}.*")

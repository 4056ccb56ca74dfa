"""The original's launch, ``mpiexec -n N python train.py ...``, with only --strategy multi_worker added:
Open MPI's mpiexec (Debian's openmpi-bin, which ``make test`` installs when it can) on 2 local ranks
against one process at the same global batch (tests/processes.py's tiny run).
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from processes import TIMEOUT, TRAIN, TRAIN_WITH_FAULTS, free_ports, step_losses, train_args
from conftest import REPO_ROOT


def _open_mpi():
    """mpiexec's path if it is Open MPI's, else the reason to skip."""
    path = shutil.which("mpiexec")
    if path is None:
        return None, ("mpiexec not found: install Open MPI (Debian: apt-get install openmpi-bin; make test does so "
                      "as root)")
    version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60).stdout
    if "Open MPI" not in version and "OpenRTE" not in version:
        return None, f"this test drives Open MPI's mpiexec; {path} is {version.splitlines()[:1]}"
    return path, ""


MPIEXEC, SKIP_REASON = _open_mpi()
# One pytest-xdist worker runs the tests that share the session fixture one_process_run (computed once).
pytestmark = [pytest.mark.skipif(MPIEXEC is None, reason=SKIP_REASON), pytest.mark.xdist_group("one_process_run")]
# Open MPI refuses to run as root (containers, CI) unless told.
ROOT_OK = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def mpiexec(ranks, output_prefix):
    """Runs ``mpiexec -n 1 RANK0 : -n 1 RANK1 ...`` (each rank: (environment, script, args)); (status, out, err)."""
    command = [MPIEXEC]
    for index, (env, script, args) in enumerate(ranks):
        command += ([":"] if index else []) + ["-n", "1", "env", *(f"{k}={v}" for k, v in env.items()),
                                                 sys.executable, script, *args]
    with open(f"{output_prefix}.out", "w") as out, open(f"{output_prefix}.err", "w") as err:
        result = subprocess.run(command, cwd=REPO_ROOT, stdout=out, stderr=err, env={**os.environ, **ROOT_OK},
                                timeout=TIMEOUT)
    with open(f"{output_prefix}.out") as out, open(f"{output_prefix}.err") as err:
        return result.returncode, out.read(), err.read()


def test_mpiexec_two_ranks_equal_one_process_and_stop_together(one_process_run, tmp_path):
    """2 ranks of 8 images against one process of 16. With --max_time 100000, rank 1's clock jumps
    10**6 s ahead after step 4: both stop there (5 steps) and finish (test pass, grids, export), as
    every worker agrees on --max_time. Rank 1 has its own --logdir and TMPDIR: nothing of it stays."""
    logdir, rank1_logdir, rank1_tmp = tmp_path / "run", tmp_path / "rank1_logdir", tmp_path / "rank1_tmp"
    rank1_tmp.mkdir()
    base_port = free_ports(2)[0]
    args = lambda directory: train_args(directory, 2, "--strategy", "multi_worker", "--base_port", str(base_port),
                                        "--max_time", "100000", "--export")
    code, out, err = mpiexec([({}, TRAIN, args(logdir)),
                              ({"TMPDIR": rank1_tmp, "GLOW_TEST_CLOCK_JUMP_AFTER_STEP": 4}, TRAIN_WITH_FAULTS,
                               args(rank1_logdir))], tmp_path / "mpiexec")
    assert code == 0, err[-3000:]
    assert f"MPI launch (Open MPI): 2 workers (127.0.0.1:{base_port}, 127.0.0.1:{base_port + 1})" in out
    assert "Finished at step 5 (epoch 2)" in out
    reference = one_process_run.wait()
    np.testing.assert_allclose(step_losses(logdir), step_losses(reference)[:5], rtol=1e-5)
    one, two = (tf.train.load_checkpoint(str(d / "checkpoints" / "ckpt-4")) for d in (reference, logdir))
    for name, _ in tf.train.list_variables(str(logdir / "checkpoints" / "ckpt-4")):
        if name.startswith("model/") and "initialized" not in name:
            np.testing.assert_allclose(two.get_tensor(name), one.get_tensor(name), rtol=1e-5, atol=1e-7, err_msg=name)
    assert (logdir / "saved_model" / "saved_model.pb").exists()
    assert not rank1_logdir.exists() and list(rank1_tmp.iterdir()) == []  # rank 1: nothing left, no export

"""cluster.resolve: the cluster of --strategy multi_worker from TF_CONFIG, Slurm or an MPI launch,
with fake environments (no processes); the original README's mpiexec commands; failure messages."""
import json
import os
import re

import pytest
import tensorflow as tf

from glow_tf import cluster
from glow_tf.train_config import TrainConfig
from test_original_flags import COMMANDS, parse, readme_commands

LAUNCH_VARIABLES = ("TF_CONFIG", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST",
                    "SLURM_STEP_TASKS_PER_NODE", "SLURM_JOB_ID", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                    "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE", "PMI_RANK", "PMI_SIZE",
                    "MPI_LOCALRANKID", "MPI_LOCALNRANKS", "CUDA_VISIBLE_DEVICES")


@pytest.fixture
def environ(monkeypatch):
    """Sets launcher variables for one test (all others of LAUNCH_VARIABLES unset; PATH without nvidia-smi)."""
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")

    def set_variables(**variables):
        for name, value in variables.items():
            monkeypatch.setenv(name, str(value))
    return set_variables


def open_mpi(rank, size, local_rank=None, local_size=None):
    variables = dict(OMPI_COMM_WORLD_RANK=rank, OMPI_COMM_WORLD_SIZE=size)
    if local_rank is not None:
        variables.update(OMPI_COMM_WORLD_LOCAL_RANK=local_rank, OMPI_COMM_WORLD_LOCAL_SIZE=local_size)
    return variables


SLURM_STEP = dict(SLURM_STEP_NUM_TASKS=4, SLURM_STEP_NODELIST="node[01-02]", SLURM_STEP_TASKS_PER_NODE="2(x2)",
                  SLURM_JOB_ID=77)


def task(found):
    return found.resolver.task_type, found.resolver.task_id


def test_tf_config(environ):
    workers = ["a:2222", "b:2222", "c:2222"]
    environ(TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": 2}}))
    found = cluster.resolve("", 12345)
    assert (found.source, found.workers, task(found)) == ("TF_CONFIG", workers, ("worker", 2))
    assert "3 workers (a:2222, b:2222, c:2222); this process is worker 2" in found.describe()


def test_open_mpi_on_one_host_listens_on_consecutive_ports(environ):
    environ(**open_mpi(rank=2, size=3, local_rank=2, local_size=3))
    found = cluster.resolve("", 5000)
    assert found.source == "MPI launch (Open MPI)"
    assert found.workers == ["127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5002"]
    assert task(found) == ("worker", 2) and found.resolver.num_accelerators() == {}  # this machine: no GPU


@pytest.mark.parametrize("hosts, rank, local_rank, expected_worker", [
    ("h1:2,h2:2", 2, 0, "h2:7000"),
    ("h1:3,h2:1", 3, 0, "h2:7000"),
    ("h1:3,h2:1", 2, 2, "h1:7002"),
    ("h1,h2", 1, 1, "h1:7001"),  # 4 ranks split evenly
])
def test_mpich_over_several_hosts_fills_them_in_order(environ, hosts, rank, local_rank, expected_worker):
    environ(PMI_RANK=rank, PMI_SIZE=4, MPI_LOCALRANKID=local_rank)
    found = cluster.resolve(hosts, 7000)
    assert found.source == "MPI launch (MPICH)" and len(found.workers) == 4
    assert found.workers[rank] == expected_worker and task(found) == ("worker", rank)


@pytest.mark.parametrize("variables, hosts, base_port, message", [
    ({}, "", 12345, "expected a cluster to join, from TF_CONFIG, a Slurm job step"),
    (dict(TF_CONFIG="{cluster"), "", 12345, "TF_CONFIG: expected JSON"),
    (dict(TF_CONFIG='{"cluster": {"worker": ["a:1"]}}'), "", 12345, 'TF_CONFIG: expected {"cluster"'),
    (dict(TF_CONFIG='{"cluster": {"worker": ["a:1"]}, "task": {}}'), "h1", 12345, "and TF_CONFIG is set"),
    ({}, "h1:2", 12345, "--worker_hosts: expected only with an MPI launch (mpiexec, which sets OMPI_COMM_WORLD_RANK"),
    (dict(SLURM_PROCID=0, **SLURM_STEP), "h1", 12345, "got 'h1', and this is a Slurm job step"),
    (open_mpi(0, 4, 0, 2), "", 12345, "the MPI launch has 4 ranks, 2 on this host; expected the hosts"),
    (open_mpi(0, 4), "h1:1,h2:1", 12345, "expected ranks for the 4 ranks of the MPI launch, got 2"),
    (open_mpi(0, 4), "h1,h2,h3", 12345, "expected a number of hosts that divides 4"),
    (open_mpi(0, 4), "h1:2,h2", 12345, "expected every host with a rank count >= 1"),
    (open_mpi(0, 4), "h1:2,,h2:2", 12345, "got an empty host"),
    (open_mpi(1, 4, 0, 2), "h1:2,h2:2", 12345, "rank 1 would be rank 1 on h1, but mpiexec made it rank 0"),
    (open_mpi(0, 2, 0, 2), "", 65535, "--base_port: expected a port such that base_port + 1"),
    (open_mpi(4, 4), "", 12345, "OMPI_COMM_WORLD_RANK: expected a rank in 0..OMPI_COMM_WORLD_SIZE - 1 = 3, got 4"),
    (dict(PMI_RANK="x", PMI_SIZE=2), "", 12345, "PMI_RANK: expected an integer, got 'x'"),
])
def test_what_cannot_be_resolved_says_what_was_expected(environ, variables, hosts, base_port, message):
    environ(**variables)
    with pytest.raises(ValueError, match=re.escape(message)):
        cluster.resolve(hosts, base_port)


def test_slurm_step_on_cpu_nodes(environ):
    environ(SLURM_PROCID=3, **SLURM_STEP)
    found = cluster.resolve("", 9000)
    assert found.source == "Slurm job step 77"
    assert found.workers == ["node01:9000", "node01:9001", "node02:9000", "node02:9001"]
    assert task(found) == ("worker", 3) and found.resolver.num_accelerators() == {}


def test_slurm_step_on_gpu_nodes_gives_each_task_its_share(environ):
    environ(SLURM_PROCID=1, CUDA_VISIBLE_DEVICES="0,1,2,3", **SLURM_STEP)
    found = cluster.resolve("", 9000)
    assert task(found) == ("worker", 1) and found.resolver.num_accelerators() == {"GPU": 2}
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"  # SlurmClusterResolver's allocation of task 1


def test_slurm_that_describes_the_mpi_ranks_is_used_and_mpiexec_inside_an_allocation_is_not(environ):
    environ(SLURM_PROCID=2, PMI_RANK=2, PMI_SIZE=4, **SLURM_STEP)  # srun with PMI: the same ranks
    assert cluster.resolve("", 12345).source == "Slurm job step 77"
    # mpiexec inside an allocation: its ranks carry the Slurm variables of the daemon that started them
    environ(SLURM_PROCID=0, SLURM_STEP_NUM_TASKS=1, SLURM_STEP_NODELIST="node01", SLURM_STEP_TASKS_PER_NODE="1",
            OMPI_COMM_WORLD_RANK=1, OMPI_COMM_WORLD_SIZE=2, PMI_RANK=1, PMI_SIZE=2)
    found = cluster.resolve("", 12345)
    assert found.source == "MPI launch (Open MPI)" and task(found) == ("worker", 1)


def test_the_original_readme_mpiexec_commands_need_only_the_strategy(environ):
    """The original trained with ``mpiexec -n 8 python train.py ...``: with --strategy multi_worker
    added, each such command parses and validates, and its ranks find the cluster of N workers."""
    with open(COMMANDS) as f:
        ranks = [int(line.split()[2]) for line in f.read().splitlines() if line.startswith("mpiexec -n ")]
    launched = [argv for heading, argv in readme_commands() if heading != "Simple Train with 1 GPU"]
    assert len(launched) == len(ranks) == 10
    for n, argv in zip(ranks, launched):
        config = parse(argv + ["--strategy", "multi_worker"])  # a TrainConfig: validated
        for rank in (0, n - 1):
            environ(**open_mpi(rank, n, rank, n))
            found = cluster.resolve(config.worker_hosts, config.base_port)
            assert len(found.workers) == n and task(found) == ("worker", rank)


@pytest.mark.parametrize("error, message", [
    (tf.errors.UnavailableError(None, None, "Graph execution error:\n\nDetected at node X defined at (most recent "
                                "call last):\n  File \"a.py\", line 1, in f\n\nCollective ops is aborted by: Error "
                                "reported from /job:worker/task:1: The following tasks are unhealthy (stopped "
                                "sending heartbeats):\n/job:worker/replica:0/task:1\nThe error could be from a "
                                "previous operation. Restart your program to reset.\n\t [[{{node X}}]]"),
     "the cluster failed, so this worker stops: Error reported from /job:worker/task:1: The following tasks are "
     "unhealthy (stopped sending heartbeats): /job:worker/replica:0/task:1. Every worker stops; the last checkpoint "
     "is L/ckpt-4: start every worker again with the same command to resume from it."),
    (tf.errors.DeadlineExceededError(None, None, "Collective has timed out during execution.\n\t [[{{node X}}]]"),
     "the cluster failed, so this worker stops: Collective has timed out during execution. Every worker stops;"),
    (tf.errors.InvalidArgumentError(None, None, "Incompatible shapes"), None),
])
def test_failure_messages_are_one_line(error, message):
    found = cluster.failure_message(error, "L/ckpt-4")
    assert found == message if message is None or message.endswith("it.") else found.startswith(message)
    assert found is None or "\n" not in found


def test_a_single_process_needs_no_agreement():
    strategy = tf.distribute.get_strategy()
    assert cluster.num_workers(strategy) == 1
    assert cluster.any_worker(strategy, True) and not cluster.any_worker(strategy, False)
    cluster.check_same_step(strategy, 3)  # nothing to compare with


@pytest.mark.parametrize("flags, message", [
    (dict(worker_hosts="h1:2"), "--worker_hosts: expected '' unless --strategy multi_worker, got 'h1:2'"),
    (dict(strategy="multi_worker", base_port=0), "--base_port: expected an int in 1..65535, got 0"),
    (dict(strategy="multi_worker", collective_timeout=-1.0), "--collective_timeout: expected a finite float >= 0 (0: none)"),
])
def test_bad_cluster_flags_fail_before_any_work(flags, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig.from_flags(flags)

"""Which cluster this process is in: the workers of ``--strategy multi_worker`` and what they agree on.

A multi-worker run is one process per worker, each running the same command; every process
finds the cluster (each worker's address) and its own place in it from its launcher's
environment, the first of these that applies:

1. ``TF_CONFIG``, TensorFlow's own description (``tf.distribute.cluster_resolver.
   TFConfigClusterResolver``)::

       TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}}'

2. A Slurm job step (``srun python train.py ...``): ``SLURM_PROCID`` and
   ``SLURM_STEP_NUM_TASKS`` with the step's node list and tasks per node
   (``tf.distribute.cluster_resolver.SlurmClusterResolver``); task k of a node listens on
   ``base_port + k``. It applies unless MPI rank variables (below) say otherwise, as they do
   when ``mpiexec`` runs inside a Slurm allocation (its ranks inherit the Slurm variables of
   the daemons that started them).
3. An MPI launch (``mpiexec -n N python train.py ...``, the original's command line): rank and
   size from Open MPI's ``OMPI_COMM_WORLD_RANK`` / ``OMPI_COMM_WORLD_SIZE`` or MPICH (Hydra)'s
   ``PMI_RANK`` / ``PMI_SIZE``. MPI gives every rank its number but no addresses, so
   ``worker_hosts`` lists the hosts in the order mpiexec fills them with ranks, as Open MPI's
   ``--host``: ``'h1:4,h2:4'`` (4 ranks each) or ``'h1,h2'`` (the ranks split evenly); ranks
   fill a host before the next (mpiexec's default with slot counts). Rank ``r`` is worker ``r``
   and listens on ``base_port + k``, k its index on its host; ``''`` puts every rank on this
   machine (127.0.0.1), which a launch over several hosts is told to change. With GPUs, each
   rank sees one, chosen by its index on its host (the original's Horovod
   ``visible_device_list = local_rank``).

Worker 0 is the chief: it alone writes the logs, sample grids, checkpoints and the export
(``is_chief``); the others keep their checkpoint copies in a temporary directory
and resume from the chief's, so ``--logdir`` must be one directory that every worker reads (on
several machines, a shared file system): ``check_same_step`` stops a run whose workers would
start from different steps.

Failures: TensorFlow's coordination service (on in every multi-worker strategy) watches every
worker's heartbeat, so a worker that dies, is killed or stops responding aborts the others'
collectives within about 15 s (measured on one machine); ``failure_message`` turns that error
into one line. ``collective_timeout`` also bounds each collective, for a worker that is alive
but never arrives; TensorFlow keeps one sleeping thread per collective for that long (about 4
collectives per training step), so it is off by default.
"""
import dataclasses
import json
import os
import shutil

import tensorflow as tf
from absl import logging

LOCALHOST = "127.0.0.1"
_OPEN_MPI = ("Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
             "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE")
_MPICH = ("MPICH", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS")
_SLURM_STEP = ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST", "SLURM_STEP_TASKS_PER_NODE")
_COLLECTIVE_ABORT = "Collective ops is aborted by: "  # TensorFlow's prefix of a collective's failure
_WORKER_FAILURES = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError)
# Where TensorFlow's message of a failed collective goes on past its reason.
_NOT_THE_REASON = ("The error could be from a previous operation", "Additional GRPC error information", "[[")


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A multi-worker cluster as found in the environment.

    Attributes:
      resolver: the ``tf.distribute.cluster_resolver.ClusterResolver`` for the strategy.
      source: where it came from, for the log ('TF_CONFIG', 'Slurm job step', 'MPI launch (Open MPI)').
    """
    resolver: tf.distribute.cluster_resolver.ClusterResolver
    source: str

    @property
    def workers(self):
        """The workers' addresses, chief first."""
        spec = self.resolver.cluster_spec().as_dict()
        return list(spec.get("chief", [])) + list(spec.get("worker", []))

    def describe(self):
        """One line for the log: where the cluster came from, its workers and this process's task."""
        task = f"{self.resolver.task_type} {self.resolver.task_id}"
        return f"{self.source}: {len(self.workers)} workers ({', '.join(self.workers)}); this process is {task}"


def resolve(worker_hosts, base_port) -> Cluster:
    """The cluster of this process (module docstring), from ``os.environ``.

    Args:
      worker_hosts: MPI launches only: 'h1:4,h2:4', 'h1,h2', or '' (every rank on this machine).
      base_port: Slurm and MPI launches: the port of each host's first worker.

    Raises ValueError naming what was expected and what was found.
    """
    environ = os.environ
    mpi = _mpi_launch(environ)
    slurm = all(name in environ for name in _SLURM_STEP) and (mpi is None or _slurm_agrees(environ, mpi))
    launcher = "TF_CONFIG" if "TF_CONFIG" in environ else "Slurm" if slurm else "MPI" if mpi else None
    if worker_hosts and launcher != "MPI":
        found = {"TF_CONFIG": "TF_CONFIG is set", "Slurm": "this is a Slurm job step", None: "no launcher found"}
        raise ValueError(f"--worker_hosts: expected only with an MPI launch (mpiexec, which sets {_OPEN_MPI[1]} or "
                         f"{_MPICH[1]}), got {worker_hosts!r}, and {found[launcher]}")
    if launcher == "TF_CONFIG":
        return Cluster(_tf_config_resolver(environ["TF_CONFIG"]), "TF_CONFIG")
    if launcher == "Slurm":
        return Cluster(_slurm_resolver(environ, base_port), f"Slurm job step {environ.get('SLURM_JOB_ID', '')}".strip())
    if launcher == "MPI":
        return Cluster(_mpi_resolver(mpi, worker_hosts, base_port), f"MPI launch ({mpi.implementation})")
    raise ValueError(
        "--strategy multi_worker: expected a cluster to join, from TF_CONFIG, a Slurm job step (srun: "
        f"{', '.join(_SLURM_STEP)}) or an MPI launch (mpiexec: {_OPEN_MPI[1]}/{_OPEN_MPI[2]} or "
        f"{_MPICH[1]}/{_MPICH[2]}); found none of these variables. One machine needs no cluster: "
        "--strategy mirrored uses all its GPUs.")


def multi_worker_strategy(worker_hosts, base_port, collective_timeout):
    """``tf.distribute.MultiWorkerMirroredStrategy`` over ``resolve(...)``'s cluster.

    ``collective_timeout`` > 0: seconds after which a collective that not every worker has
    joined fails (``tf.distribute.experimental.CommunicationOptions(timeout_seconds=...)``).
    Call before TensorFlow runs any op.
    """
    cluster = resolve(worker_hosts, base_port)
    print(cluster.describe(), flush=True)
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=collective_timeout or None)
    return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=cluster.resolver,
                                                     communication_options=options)


def make_strategy(config) -> tf.distribute.Strategy:
    """The tf.distribute strategy of ``--strategy`` (a ``TrainConfig``'s; call before TensorFlow runs any op)."""
    if config.cpu_replicas:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * config.cpu_replicas)
        except RuntimeError as e:
            raise ValueError(f"--cpu_replicas: TensorFlow is already initialised; set it before any "
                             f"TensorFlow op runs ({e})") from None
    if config.strategy == "default":
        return tf.distribute.get_strategy()
    if config.strategy == "mirrored":
        devices = ([d.name for d in tf.config.list_logical_devices("GPU")]
                   or [d.name for d in tf.config.list_logical_devices("CPU")])
        return tf.distribute.MirroredStrategy(devices)
    if config.strategy == "multi_worker":
        return multi_worker_strategy(config.worker_hosts, config.base_port, config.collective_timeout)
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=config.tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy) -> bool:
    """Whether this process writes logs, samples and the export (multi-worker: the chief)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker"
                                             and resolver.task_id == 0)


# ------------------------------------------------------------------------------- sources
def _tf_config_resolver(text):
    try:
        tf_config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG: expected JSON ({e}), got {text[:200]!r}") from None
    if not isinstance(tf_config, dict) or not isinstance(tf_config.get("cluster"), dict) or "task" not in tf_config:
        raise ValueError('TF_CONFIG: expected {"cluster": {"worker": ["host:port", ...]}, "task": {"type": '
                         f'"worker", "index": i}}, got {text[:200]!r}')
    return tf.distribute.cluster_resolver.TFConfigClusterResolver()


@dataclasses.dataclass(frozen=True)
class _MpiLaunch:
    implementation: str
    rank: int
    size: int
    local_rank: int  # -1: not given by the launcher
    local_size: int


def _mpi_launch(environ):
    """The MPI rank variables of this process (None: not started by mpiexec)."""
    for implementation, rank, size, local_rank, local_size in (_OPEN_MPI, _MPICH):
        if rank in environ and size in environ:
            values = [_int_variable(environ, name) for name in (rank, size)]
            locals_ = [_int_variable(environ, name) if name in environ else -1 for name in (local_rank, local_size)]
            launch = _MpiLaunch(implementation, *values, *locals_)
            if not 0 <= launch.rank < launch.size:
                raise ValueError(f"{rank}: expected a rank in 0..{size} - 1 = {launch.size - 1}, got {launch.rank}")
            return launch
    return None


def _int_variable(environ, name):
    try:
        return int(environ[name])
    except ValueError:
        raise ValueError(f"{name}: expected an integer, got {environ[name]!r}") from None


def _slurm_agrees(environ, mpi):
    """Whether the Slurm step describes this process as MPI does (srun with PMI: yes; mpiexec
    inside an allocation: no, its ranks carry the Slurm variables of the daemons)."""
    return (_int_variable(environ, "SLURM_PROCID") == mpi.rank
            and _int_variable(environ, "SLURM_STEP_NUM_TASKS") == mpi.size)


def _slurm_resolver(environ, base_port):
    """SlurmClusterResolver's cluster and task, and the GPUs it gives this task.

    SlurmClusterResolver divides each node's GPUs among its tasks (through
    CUDA_VISIBLE_DEVICES) and cannot describe a node without GPUs (its allocation loop steps
    by GPUs per task, 0 there, and without CUDA_VISIBLE_DEVICES it runs nvidia-smi). On such
    a node it is given one placeholder GPU per task and no CUDA_VISIBLE_DEVICES changes, and
    only its cluster and task are kept.
    """
    n_tasks = _int_variable(environ, "SLURM_STEP_NUM_TASKS")
    gpus = _node_gpus(environ)
    try:
        if gpus == 0:
            slurm = tf.distribute.cluster_resolver.SlurmClusterResolver(
                port_base=base_port, gpus_per_node=n_tasks, gpus_per_task=1, auto_set_gpu=False)
        else:
            slurm = tf.distribute.cluster_resolver.SlurmClusterResolver(port_base=base_port, gpus_per_node=gpus)
        spec = slurm.cluster_spec()  # also sets task_type, task_id (and CUDA_VISIBLE_DEVICES)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"Slurm job step ({', '.join(f'{n}={environ[n]}' for n in _SLURM_STEP)}): {e}") from None
    _check_ports(base_port, max(len(addresses) for addresses in _hosts_of(spec).values()), "Slurm node")
    return tf.distribute.cluster_resolver.SimpleClusterResolver(
        spec, task_type=slurm.task_type, task_id=slurm.task_id,
        num_accelerators=slurm.num_accelerators() if gpus != 0 else {}, rpc_layer="grpc")


def _node_gpus(environ):
    """GPUs of this node as SlurmClusterResolver counts them: CUDA_VISIBLE_DEVICES, else
    nvidia-smi (None: let it ask), else 0."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([device for device in visible.split(",") if device.strip() and device.strip() != "-1"])
    return None if shutil.which("nvidia-smi") else 0


def _hosts_of(spec):
    hosts = {}
    for address in spec.as_dict()["worker"]:
        hosts.setdefault(address.rsplit(":", 1)[0], []).append(address)
    return hosts


def _mpi_resolver(mpi, worker_hosts, base_port):
    hosts = _rank_hosts(mpi, worker_hosts)  # [(host, index on host)] per rank
    _check_ports(base_port, max(index for _, index in hosts) + 1, "host")
    host, index = hosts[mpi.rank]
    if mpi.local_rank not in (-1, index):
        raise ValueError(
            f"--worker_hosts {worker_hosts!r}: rank {mpi.rank} would be rank {index} on {host}, but mpiexec "
            f"made it rank {mpi.local_rank} of its host: expected ranks placed a host at a time, in the order "
            "of --worker_hosts (Open MPI: --map-by slot; MPICH: -hosts h1:N,h2:N), got another placement")
    spec = tf.train.ClusterSpec({"worker": [f"{h}:{base_port + i}" for h, i in hosts]})
    return tf.distribute.cluster_resolver.SimpleClusterResolver(
        spec, task_type="worker", task_id=mpi.rank, num_accelerators=_pin_one_gpu(index), rpc_layer="grpc")


def _rank_hosts(mpi, worker_hosts):
    """(host, index on that host) of every rank: hosts filled in order of --worker_hosts."""
    if not worker_hosts:
        if mpi.local_size not in (-1, mpi.size):
            raise ValueError(
                f"--worker_hosts: the MPI launch has {mpi.size} ranks, {mpi.local_size} on this host; expected "
                f"the hosts in mpiexec's order (e.g. --worker_hosts h1:{mpi.local_size},h2:{mpi.local_size}), "
                "got none (every rank on this machine)")
        return [(LOCALHOST, rank) for rank in range(mpi.size)]
    entries = [entry.strip() for entry in worker_hosts.split(",")]
    if any(not entry for entry in entries):
        raise ValueError(f"--worker_hosts: expected 'host:ranks,...' or 'host,...', got an empty host in "
                         f"{worker_hosts!r}")
    counted = [entry.rpartition(":") if ":" in entry else (entry, "", "") for entry in entries]
    if any(count for _, _, count in counted) and not all(count.isdigit() and int(count) > 0 for _, _, count in counted):
        raise ValueError(f"--worker_hosts: expected every host with a rank count >= 1 ('h1:4,h2:4') or none "
                         f"('h1,h2'), got {worker_hosts!r}")
    if counted[0][2]:
        slots = [(host, int(count)) for host, _, count in counted]
    elif mpi.size % len(entries) == 0:
        slots = [(host, mpi.size // len(entries)) for host, _, _ in counted]
    else:
        raise ValueError(f"--worker_hosts: {len(entries)} hosts without rank counts share the {mpi.size} ranks of the "
                         f"MPI launch evenly; expected a number of hosts that divides {mpi.size}, or counts "
                         f"('h1:N,h2:M'), got {worker_hosts!r}")
    total = sum(count for _, count in slots)
    if total != mpi.size:
        raise ValueError(f"--worker_hosts: expected ranks for the {mpi.size} ranks of the MPI launch, got {total} "
                         f"({worker_hosts!r})")
    return [(host, index) for host, count in slots for index in range(count)]


def _check_ports(base_port, workers_per_host, where):
    if not 1 <= base_port <= 65535 - (workers_per_host - 1):
        raise ValueError(f"--base_port: expected a port such that base_port + {workers_per_host - 1} (the last "
                         f"worker of a {where}) is at most 65535, got {base_port}")


def _pin_one_gpu(index_on_host):
    """One GPU per rank, chosen by its index on its host (the original's Horovod placement);
    the accelerators the strategy should use (none on a machine without GPUs)."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return {}
    if index_on_host >= len(gpus):
        raise ValueError(f"MPI launch: rank {index_on_host} of its host, which has {len(gpus)} GPUs; expected at "
                         "most one rank per GPU")
    tf.config.set_visible_devices(gpus[index_on_host], "GPU")
    return {"GPU": 1}


# ---------------------------------------------------------------- what the workers agree on
def num_workers(strategy) -> int:
    """Processes training in sync: the workers of a MultiWorkerMirroredStrategy, else 1."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or strategy.cluster_resolver is None:
        return 1
    spec = strategy.cluster_resolver.cluster_spec().as_dict()
    return max(1, len(spec.get("chief", [])) + len(spec.get("worker", [])))


@tf.function
def _sum_over_replicas(strategy, value):
    """``value`` summed over every replica of every worker: a collective, every worker calls it."""
    total = strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, tf.identity(value)))  # identity: a copy on the replica's device
    return strategy.experimental_local_results(total)[0]


def any_worker(strategy, flag: bool) -> bool:
    """Whether ``flag`` holds on any worker; every worker must call it at the same point."""
    if num_workers(strategy) == 1:
        return bool(flag)
    return bool(_sum_over_replicas(strategy, tf.constant(float(flag))).numpy() > 0)


def check_same_step(strategy, step: int):
    """Raises ValueError unless every worker starts at ``step`` (every worker calls it).

    Every worker resumes from the chief's checkpoints in --logdir; a worker that does not see
    them (another directory, no shared file system) would start afresh while the chief resumes.
    """
    if num_workers(strategy) == 1:
        return
    per_replica = strategy.experimental_distribute_values_from_function(lambda _: tf.constant([step], tf.float64))
    steps = sorted({int(s) for s in strategy.gather(per_replica, axis=0).numpy()})
    if len(steps) > 1:
        raise ValueError(
            f"--logdir: expected every worker to start at the same step, got steps {steps} (this worker: {step}). "
            "The workers resume from the chief's checkpoints in --logdir: give every worker the same --logdir, "
            "on a file system they all see")


def barrier(strategy):
    """Returns when every worker has called it."""
    any_worker(strategy, False)


def failure_message(error: tf.errors.OpError, last_checkpoint):
    """One line for a collective's failure (another worker died, stopped or timed out); None for other errors."""
    text = error.message
    if not (_COLLECTIVE_ABORT in text or isinstance(error, _WORKER_FAILURES)):
        return None
    logging.info("cluster failure: %s", text)
    lines = text.splitlines()
    if any(line.startswith("Detected at node") for line in lines):  # skip where the op was defined
        lines = lines[max((i for i, line in enumerate(lines) if line.startswith("  File ")), default=-1) + 1:]
    reason = []
    for line in (line.strip() for line in lines):
        if line.startswith(_NOT_THE_REASON):
            break
        if line and line != "Graph execution error:":
            reason.append(line.replace(_COLLECTIVE_ABORT, ""))
    reason = " ".join(reason).rstrip(".")
    resume = (f"the last checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was written yet")
    return (f"the cluster failed, so this worker stops: {reason[:500]}. Every worker stops; {resume}: start every "
            "worker again with the same command to resume from it.")

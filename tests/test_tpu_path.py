"""--strategy tpu cannot run here (no TPU); what of its path can run, runs under stand-ins.

* ``make_strategy``'s TPU branch, with recording fakes: TPUClusterResolver(--tpu), connecting to
  the cluster, initialising the TPU system, TPUStrategy over the resolver, in that order.
* The Trainer under a strategy that the trainer's ``isinstance(..., tf.distribute.TPUStrategy)``
  checks take for a TPUStrategy (a MirroredStrategy on this CPU): with --jit_compile it asks
  XLA for nothing around the step (TPUStrategy compiles the replicated step itself; the test
  pass and the sample grids follow the same decision), and its steps run and train.

Untested without a TPU: the resolver finding a TPU, the connection and the TPU system's
initialisation, TPUStrategy.run's compilation of the step for the TPU cores and its
replication, the input pipeline feeding TPU hosts, and variables, the random generator and
checkpoints of a TPU run.
"""
import tensorflow as tf

from conftest import tiny_digits
from glow_tf import cluster
from glow_tf.plan import make_data
from glow_tf.trainer import Trainer


class TPUStandIn(tf.distribute.MirroredStrategy):
    """A MirroredStrategy on this CPU, registered as tf.distribute.TPUStrategy for one test."""


def xla_requested(function, example):
    """Whether tracing ``function(example)`` asks XLA to compile any function it calls (or itself)."""
    concrete = function.get_concrete_function(example)
    functions = [concrete.function_def] + list(concrete.graph.as_graph_def().library.function)
    return any(f.attr["_XlaMustCompile"].b for f in functions if "_XlaMustCompile" in f.attr)


def test_the_xla_check_sees_a_jit_compiled_call():
    inner = tf.function(tf.math.square, jit_compile=True)
    spec = tf.TensorSpec([], tf.float32)
    assert xla_requested(tf.function(lambda x: inner(x) + 1), spec)
    assert not xla_requested(tf.function(lambda x: tf.math.square(x) + 1), spec)


def test_make_strategy_connects_initialises_and_builds_a_tpu_strategy(monkeypatch, tmp_path):
    calls = []

    class Resolver:
        def __init__(self, tpu):
            calls.append(("resolver", tpu))

    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", Resolver)
    monkeypatch.setattr(tf.config, "experimental_connect_to_cluster", lambda r: calls.append(("connect", r)))
    monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system", lambda r: calls.append(("initialize", r)))
    monkeypatch.setattr(tf.distribute, "TPUStrategy", lambda r: ("TPUStrategy", r))
    strategy = cluster.make_strategy(tiny_digits(tmp_path, strategy="tpu", tpu="my-tpu"))
    resolver = strategy[1]
    assert calls == [("resolver", "my-tpu"), ("connect", resolver), ("initialize", resolver)]
    assert strategy == ("TPUStrategy", resolver)


def test_the_trainer_under_a_tpu_stand_in_asks_no_xla_and_trains(monkeypatch, tmp_path):
    monkeypatch.setattr(tf.distribute, "TPUStrategy", TPUStandIn)
    config = tiny_digits(tmp_path, jit_compile=True)
    strategy = TPUStandIn(["/cpu:0"])
    datasets, plan = make_data(config, strategy.num_replicas_in_sync)
    trainer = Trainer(config, strategy, datasets, plan)
    trainer.data_dependent_init()
    assert not xla_requested(trainer.compiled.train_chunk, tf.TensorSpec([], tf.int32))
    stats, ok = (t.numpy() for t in trainer.compiled.train_chunk(tf.constant(4, tf.int32)))
    assert ok.all() and stats.shape == (4, 4) and stats[-1, 0] < stats[0, 0]  # it trained
    assert trainer.state.steps_done == 4


def test_the_default_strategy_does_ask_xla_for_the_step(tmp_path):
    """The counterpart: without the stand-in, the same config asks XLA for the step (so the check above can fail)."""
    config = tiny_digits(tmp_path, jit_compile=True)
    strategy = tf.distribute.get_strategy()
    datasets, plan = make_data(config, 1)
    trainer = Trainer(config, strategy, datasets, plan)
    trainer.data_dependent_init()
    assert xla_requested(trainer.compiled.train_chunk, tf.TensorSpec([], tf.int32))

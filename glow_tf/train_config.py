"""TrainConfig: every flag of the original train.py (same names, same defaults) plus glow_tf's.

TrainConfig holds the run's ``GlowConfig`` and ``DataConfig`` whole, and the training flags.
Every flag is a field, of TrainConfig or of the nested config it configures, declared once with
its default, help and rule (``glow_tf.fields``); ``FLAGS`` lists them under the original's flat
names and ``train.py`` turns each into an absl flag (``python train.py --help`` lists them).
Each config checks its fields when built: bad values and invalid combinations are a ValueError
naming the flag, what was expected and what was seen.

Batch sizes follow the original: ``n_batch_train`` and ``n_batch_init`` are per replica (the
original's per-Horovod-rank) at the ``anchor_size`` resolution, so a replica trains on
``n_batch_train * anchor_size**2 // image_size**2`` images per step, and an epoch is
``ceil(n_train / (n_batch_train * replicas))`` steps whatever the resolution. The test batch
follows the original's table of local training batches unless ``n_batch_test`` is given
(``TrainConfig.local_batch_test``).

The original parsed its flags with argparse, which accepts any unambiguous prefix of a flag
(its README writes ``--n_level``); ``expand_original_abbreviations`` gives train.py the same.
"""
import dataclasses
import itertools
from typing import Optional

from glow_tf import fields
from glow_tf.config import GlowConfig
from glow_tf.data.config import DataConfig
from glow_tf.layers.base import resolve_precision
from glow_tf.optim import OPTIMIZERS

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")

# The original's test batch per local training batch (its train.py: "round down to closest
# divisor of 50"); it ignored --n_batch_test.
ORIGINAL_BATCH_TEST = {64: 50, 32: 25, 16: 10, 8: 5, 4: 2, 2: 2, 1: 1}


# Where each nested config's flag fields live in TrainConfig.
_NESTED = ("model", "data")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training flags; see each field's help (``python train.py --help``).

    ``model`` and ``data`` are the run's GlowConfig and DataConfig, whole: their flag fields are
    train.py's flags of the same name (``flags()`` / ``from_flags``). ``from_flags`` sets the
    model's image_size, n_channels and n_y from the problem (the data a run loads fix them:
    ``model_for``), and the model's and the data's seed from ``--seed``.
    """
    # ----------------------------------------------------------------- the original's flags
    model: GlowConfig = fields.field(None, "The model.", None, flag=False,
                                     default_factory=lambda: GlowConfig(gradient_checkpointing=True,
                                                                        precision="float32"))
    data: DataConfig = fields.field(None, "The data.", None, flag=False,
                                    default_factory=lambda: DataConfig(problem="cifar10", n_train=50000))
    verbose: bool = fields.field(False, "Print every step's loss (as the original's --verbose).", fields.BOOL,
                                 original=0, resumable=True)
    restore_path: str = fields.field(
        "", "Start from another run's weights: a glow_tf logdir, checkpoint dir or checkpoint prefix "
        "(model, Polyak average and optimizer slots; the step, data position and logs start afresh, "
        "as the original), or an ORIGINAL OpenAI checkpoint prefix (weights, the optimizer's t and "
        "slots, averages: the original run goes on as its own --restore_path went on). With "
        "--inference: the model to encode with. Ignored when --logdir already holds a checkpoint "
        "(that run is resumed).", fields.STRING, original=1, resumable=True)
    inference: bool = fields.field(
        False, "Inference mode (the original's `infer`): encode the test set with the --restore_path model "
        "and write the latents, labels and reconstructions to LOGDIR/latents.npz (z: [N, D] float32, "
        "every level's eps flattened and joined as the original's flatten_eps; y: [N] int32; x: [N, H, W, "
        "C] uint8 decoded from z), instead of training.", fields.BOOL, original=2)
    logdir: str = fields.field("./logs", "Directory of the run: config.json, logs, checkpoints, sample grids, "
                               "TensorBoard summaries, SavedModel. Re-running with the same --logdir resumes.",
                               fields.Rule("a directory", lambda v: isinstance(v, str) and v != ""),
                               original=3, resumable=True)
    # Optimisation hyper-parameters (the data's and the model's are in DataConfig and GlowConfig).
    n_batch_train: int = fields.field(64, "Training batch per replica at the anchor resolution.",
                                      fields.POSITIVE_INT, original=12)
    n_batch_test: int = fields.field(-1, "Test batch per replica; -1: the original's rule, which ignored this "
                                     "flag: the local training batch B (at image_size) gives "
                                     f"{ORIGINAL_BATCH_TEST}[B], and a B not in that table the entry of the "
                                     "largest key <= B (e.g. 48 -> 25).", fields.INT_OR_MINUS_ONE, original=13)
    n_batch_init: int = fields.field(256, "Batch for data-dependent init at the anchor resolution.",
                                     fields.POSITIVE_INT, original=14)
    optimizer: str = fields.field("adamax", "Optimizer of the original's optim.py.", fields.one_of(OPTIMIZERS),
                                  original=15)
    lr: float = fields.field(0.001, "Base learning rate (linear warm-up over --epochs_warmup).",
                             fields.POSITIVE_FLOAT, original=16)
    beta1: float = fields.field(0.9, "Adam/Adamax beta1 (0: no first moment).",
                                fields.float_in("a float in [0, 1)", lambda v: 0.0 <= v < 1.0), original=17)
    polyak_epochs: float = fields.field(1.0, "beta2 (second moment and Polyak average decay) = "
                                        "1 - 1 / (steps per epoch * polyak_epochs).", fields.POSITIVE_FLOAT,
                                        original=18)
    weight_decay: float = fields.field(1.0, "Multiplicative weight decay w <- weight_decay * w - step; "
                                       "1.0 switches it off.",
                                       fields.float_in("a float in (0, 1] (1.0: no decay)", lambda v: 0.0 < v <= 1.0),
                                       original=19)
    epochs: int = fields.field(1000000, "Epochs: as the original, trains epochs 1 .. epochs - 1.",
                               fields.int_at_least(2, " (the original trains epochs 1 .. epochs - 1)"),
                               original=20, resumable=True)
    epochs_warmup: int = fields.field(10, "Learning-rate warm-up epochs: lr * min(1, images seen at the anchor "
                                      "resolution / (n_train * epochs_warmup)); 0: no warm-up.",
                                      fields.int_at_least(0), original=21)
    epochs_full_valid: int = fields.field(50, "Epochs between test passes (and best-loss checkpoints).",
                                          fields.POSITIVE_INT, original=22)
    anchor_size: int = fields.field(32, "Anchor size for deciding the batch size (see --n_batch_train).",
                                    fields.POSITIVE_INT, original=25)
    # Synthesis / sampling.
    n_sample: int = fields.field(1, "Minibatch size for sample (accepted for compatibility; unused, as in the "
                                 "original).", fields.POSITIVE_INT, original=31)
    epochs_full_sample: int = fields.field(50, "Epochs between sample grids (also epochs 1 and 10, as the "
                                           "original).", fields.POSITIVE_INT, original=32)
    seed: int = fields.field(0, "Random seed (data order, augmentation, noise, init, samples).",
                             fields.int_at_least(0), original=35)
    # -------------------------------------------------------------------------- glow_tf's
    strategy: str = fields.field("default", "tf.distribute strategy: default (one device), mirrored (all "
                                 "local GPUs, else the CPU devices), multi_worker (one process per worker, on one "
                                 "or several machines: the cluster from TF_CONFIG, a Slurm job step or an MPI "
                                 "launch, see glow_tf/cluster.py), tpu.", fields.one_of(STRATEGIES))
    worker_hosts: str = fields.field("", "--strategy multi_worker launched by mpiexec: the hosts in the order mpiexec "
                                     "fills them with ranks, 'host:ranks,...' as Open MPI's --host ('h1:4,h2:4') or "
                                     "'h1,h2' (ranks split evenly); '': every rank on this machine.", fields.STRING,
                                     resumable=True)
    base_port: int = fields.field(12345, "--strategy multi_worker from Slurm or mpiexec: the port of each host's "
                                  "first worker (worker k of a host listens on base_port + k).",
                                  fields.int_in(1, 65535), resumable=True)
    collective_timeout: float = fields.field(
        0.0, "--strategy multi_worker: seconds after which a collective that not every worker joined fails the "
        "run (TensorFlow keeps one sleeping thread per collective that long, about 4 per step); 0: none. A "
        "worker that dies or freezes ends the others within about 15 s either way (TensorFlow's heartbeats).",
        fields.float_at_least(0, " (0: none)"), resumable=True)
    tpu: str = fields.field("", "TPU address or name for --strategy tpu ('' = local TPU VM / Colab).", fields.STRING)
    cpu_replicas: int = fields.field(0, "Split the CPU into this many logical devices (0: leave it), so that "
                                     "--strategy mirrored can be tried without GPUs.", fields.int_at_least(0))
    jit_compile: Optional[bool] = fields.field(
        None, "Compile the training step (and the test pass and sample grids) with XLA; --nojit_compile runs them "
        "as TensorFlow graphs, whose convolutions are TensorFlow's own (oneDNN on CPU, cuDNN on GPU). Default: "
        "the faster on CPU, measured (benchmarks/bench_train.py): XLA in float32, the TensorFlow graph in "
        "mixed_bfloat16 (XLA:CPU gains nothing from bfloat16; oneDNN's bfloat16 kernels are the fastest here).",
        fields.bool_or_none("the faster for --precision"))
    steps_per_execution: int = fields.field(1, "Training steps run in one tf.function call (fewer host "
                                            "round trips; logs and checkpoints happen between calls).",
                                            fields.POSITIVE_INT, resumable=True)
    use_ema_for_eval: bool = fields.field(False, "Evaluate and sample with the Polyak-averaged weights (the "
                                          "original evaluates the raw weights). Export always uses them.",
                                          fields.BOOL)
    fixed_sample_latents: bool = fields.field(False, "Draw the sample grids from the same latents every time "
                                              "(for figures and tests); by default each sampling epoch draws "
                                              "fresh ones, as the original, seeded by (--seed, epoch, grid).",
                                              fields.BOOL)
    max_steps: int = fields.field(0, "Stop after this many training steps in total (0: no limit); the run "
                                  "ends with a checkpoint, a test pass and the export.",
                                  fields.int_at_least(0, " (0: no limit)"), resumable=True)
    max_time: float = fields.field(0.0, "Stop after this many seconds of training in this process (0: no "
                                   "limit); the run ends with a checkpoint, a test pass and the export.",
                                   fields.float_in("seconds >= 0 (0: no limit)", lambda v: v >= 0), resumable=True)
    deterministic: bool = fields.field(False, "Turn on tf.config.experimental.enable_op_determinism "
                                       "(bit-identical reruns and resumes on CPU; --seed seeds everything "
                                       "either way).", fields.BOOL)
    checkpoint_minutes: float = fields.field(10.0, "Minutes between checkpoints within an epoch (checkpoints "
                                             "are also written at every epoch end).", fields.POSITIVE_FLOAT,
                                             resumable=True)
    keep_checkpoints: int = fields.field(3, "Latest checkpoints kept in LOGDIR/checkpoints (the best-test-loss "
                                         "one is kept apart in LOGDIR/model_best_loss); at least 2, so that a "
                                         "newest one that cannot be read leaves an older one to resume from.",
                                         fields.int_at_least(2, " (an unreadable newest checkpoint then leaves "
                                                                "an older one to resume from)"), resumable=True)
    max_nonfinite: int = fields.field(10, "Consecutive steps with a non-finite loss or gradient (each is "
                                      "skipped: no update) after which the run stops.", fields.POSITIVE_INT)
    export: bool = fields.field(True, "Write the SavedModel (Polyak-averaged weights) to LOGDIR/saved_model at "
                                "the end of training.", fields.BOOL, resumable=True)
    log_steps: bool = fields.field(False, "Also log every step's statistics to LOGDIR/train_steps.txt "
                                   "(JSON lines: step, loss, bits_x, bits_y, pred_loss, ok).", fields.BOOL,
                                   resumable=True)

    def __post_init__(self):
        fields.check(self, "--")
        where = "--"
        fields.expect(self.model.weight_y == 0 or self.model.ycond, where, "weight_y",
                      "0 unless --ycond (the classifier exists only in class-conditional models)", self.model.weight_y)
        fields.expect(not self.inference or self.restore_path, where, "restore_path",
                      "a checkpoint to encode with (--inference needs --restore_path)", self.restore_path)
        fields.expect(not self.tpu or self.strategy == "tpu", where, "tpu", "'' unless --strategy tpu", self.tpu)
        fields.expect(not self.cpu_replicas or self.strategy == "mirrored", where, "cpu_replicas",
                      "0 unless --strategy mirrored", self.cpu_replicas)
        fields.expect(not self.worker_hosts or self.strategy == "multi_worker", where, "worker_hosts",
                      "'' unless --strategy multi_worker", self.worker_hosts)

    # ------------------------------------------------------------------------- the flags
    @classmethod
    def from_flags(cls, values=None, **changes) -> "TrainConfig":
        """The config of train.py's flags: ``values`` (flag name -> value) and ``changes``, the
        rest at their defaults. A bad value is a ValueError naming the flag."""
        values = {**flag_defaults(), **(values or {}), **changes}
        unknown = sorted(set(values) - set(FLAGS))
        if unknown:
            raise ValueError(f"TrainConfig: expected flags of train.py, got unknown {unknown}")
        nested = {owner: {} for owner in _NESTED}
        top = {}
        for name, flag in FLAGS.items():
            value = _original_int_bool(name, values[name]) if flag.bool_as_int else values[name]
            (nested[flag.owner] if flag.owner else top)[name] = value
        try:
            data = DataConfig(**nested["data"], seed=values["seed"])
            model = GlowConfig(**nested["model"], image_size=data.resolved_image_size, seed=values["seed"],
                               n_y=max(data.defaults.n_y, 1))
        except fields.FieldError as e:
            raise e.as_flag() from None
        return cls(model=model, data=data, **top)

    def flags(self) -> dict:
        """{flag name: value} in the original's order, then glow_tf's: the hps of train.txt and config.json."""
        values = {}
        for name, flag in FLAGS.items():
            value = getattr(getattr(self, flag.owner) if flag.owner else self, name)
            values[name] = int(value) if flag.bool_as_int else value
        return values

    def with_flags(self, **changes) -> "TrainConfig":
        """This config with some flags changed (``from_flags`` of the changed flags)."""
        return TrainConfig.from_flags(self.flags(), **changes)

    @property
    def xla(self) -> bool:
        """Whether XLA compiles the step: ``jit_compile``, or by default the faster for the precision."""
        if self.jit_compile is not None:
            return self.jit_compile
        return resolve_precision(self.model.precision) == "float32"

    def model_for(self, info) -> GlowConfig:
        """The model's config for the data loaded (``data.DatasetInfo``): its size, channels and classes."""
        return self.model.replace(image_size=info.image_size, n_channels=info.n_channels, n_y=info.n_y)

    def local_batch_test(self, local_batch_train: int) -> int:
        """The test batch per replica: ``n_batch_test``, or when it is -1 the original's rule.

        The original sized the test batch from the local training batch (``local_batch_train``,
        at image_size, >= 1), so that a 256x256 run with local batch 1 tests one image at a
        time, not 50; ``ORIGINAL_BATCH_TEST`` is its table, and a local batch between its keys
        takes the entry of the largest key below it.
        """
        if self.n_batch_test != -1:
            return self.n_batch_test
        return ORIGINAL_BATCH_TEST[max(key for key in ORIGINAL_BATCH_TEST if key <= local_batch_train)]


@dataclasses.dataclass(frozen=True)
class Flag:
    """One of train.py's flags: the config field it sets.

    Attributes:
      field: the dataclasses.Field (its help, rule and facts: ``fields.field``).
      owner: "model", "data" or None (a TrainConfig field).
    """
    field: dataclasses.Field
    owner: Optional[str]

    @property
    def bool_as_int(self) -> bool:
        """A bool field whose flag is the original's 0/1 int (--gradient_checkpointing)."""
        return self.field.metadata["original_int_bool"]

    @property
    def help(self) -> str:
        return fields.help_text(self.field) if not self.bool_as_int else self.field.metadata["help"] + (
            " One of [0, 1] (the original tests == 1, so it took any other value as 0; here that is an error).")

    @property
    def choices(self):
        return (0, 1) if self.bool_as_int else self.field.metadata["rule"].choices


def _flags():
    """{name: Flag} of every flag field of TrainConfig, GlowConfig and DataConfig: the original's
    flags first, in its order, then glow_tf's."""
    found = {}
    for f in dataclasses.fields(TrainConfig):
        if f.name in _NESTED:
            for inner in dataclasses.fields({"model": GlowConfig, "data": DataConfig}[f.name]):
                if inner.metadata["flag"]:
                    found[inner.name] = Flag(inner, f.name)
        else:
            found[f.name] = Flag(f, None)
    original = sorted((name for name in found if found[name].field.metadata["original"] is not None),
                      key=lambda name: found[name].field.metadata["original"])
    return {name: found[name] for name in original + [name for name in found if name not in original]}


def _original_int_bool(name, value) -> bool:
    """The bool of the original's 0/1 int flag ``--name``. The original tests ``== 1`` (1 on, any
    other value off); a value other than 0 and 1 is an error here, not a silent off."""
    fields.expect(value in (0, 1), "--", name, "0 or 1 (1: on, 0: off; the original took any value but 1 as 0)",
                  value)
    return bool(value)
FLAGS = _flags()
# The original train.py's flags, in its order: the only ones that may be abbreviated.
ORIGINAL_FLAGS = tuple(name for name, flag in FLAGS.items() if flag.field.metadata["original"] is not None)
# Flags that may change when a run resumes without a note.
RESUMABLE_FLAGS = frozenset(name for name, flag in FLAGS.items() if flag.field.metadata["resumable"])


def flag_defaults() -> dict:
    """{flag name: default}: the original's defaults, and glow_tf's for its own flags."""
    return TrainConfig().flags()


def expand_original_abbreviations(argv, defined):
    """argv with argparse's abbreviations of the original's flags written out, for absl.

    The original parsed its flags with argparse, which takes any unambiguous prefix of a flag
    name (its README writes ``--n_level 3`` for ``--n_levels 3``); absl takes exact names only.
    So train.py rewrites its command line first:
      * ``--PREFIX`` or ``--PREFIX=VALUE``, where PREFIX is no flag absl knows but starts exactly
        one of the original's flags (``ORIGINAL_FLAGS``) and no other flag, becomes that flag;
        the original's store_true booleans keep their style (``--learn`` is ``--learntop``);
      * a PREFIX that starts several of the original's flags (argparse's "ambiguous option"), or
        one of them and a flag the original did not have (glow_tf's, absl's: ``--de`` is
        ``--depth`` to argparse, but also starts ``--deterministic``), is a ValueError naming
        every candidate, so that an abbreviation never silently picks one of them;
      * glow_tf's own flags are never abbreviated; exact names, absl's ``--noNAME``, flag values,
        single-dash flags, everything after ``--`` and the contents of a ``--flagfile`` are
        left as they are (absl reports unknown flags).

    Args:
      argv: the command line, program name first.
      defined: every flag name absl knows -> whether it is a boolean (takes no separate value).
    """
    expanded, args = list(argv[:1]), iter(argv[1:])
    for arg in args:
        if arg == "--":
            return expanded + [arg, *args]
        if not arg.startswith("-") or arg == "-":
            expanded.append(arg)
            continue
        dashes = "--" if arg.startswith("--") else "-"
        name, equals, value = arg[len(dashes):].partition("=")
        if dashes == "--" and not _is_defined(name, defined):
            name = _original_flag(name, defined)
        expanded.append(dashes + name + equals + value)
        if not equals and not defined.get(name, True):  # "--name value": the value is next
            expanded.extend(itertools.islice(args, 1))
    return expanded


def _is_defined(name, defined) -> bool:
    return name in defined or (name.startswith("no") and defined.get(name[2:], False))


def _original_flag(prefix, defined) -> str:
    """The original's flag that ``prefix`` abbreviates; ``prefix`` if it starts none of them."""
    original = [name for name in ORIGINAL_FLAGS if name.startswith(prefix)]
    if not original:
        return prefix
    others = sorted(name for name in defined if name.startswith(prefix) and name not in ORIGINAL_FLAGS)
    if len(original) + len(others) > 1:
        raise ValueError(f"--{prefix} is ambiguous: it could be "
                         f"{', '.join('--' + name for name in original + others)}; spell the flag out")
    return original[0]

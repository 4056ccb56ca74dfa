"""TrainConfig: every flag of the original train.py (same names, same defaults) plus glow_tf's.

This is the one place where training flags, their defaults and their help live; ``train.py``
turns each field into an absl flag (``python train.py --help`` lists them). ``validate``
rejects bad values and invalid combinations with a ValueError saying what was expected.

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
import math

from glow_tf.config import FLOW_COUPLINGS, FLOW_PERMUTATIONS, GlowConfig
from glow_tf.data.config import PROBLEMS
from glow_tf.optim import OPTIMIZERS

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")

# The original train.py's argparse flags, in its order: the only ones that may be abbreviated.
ORIGINAL_FLAGS = (
    "verbose", "restore_path", "inference", "logdir", "problem", "category", "data_dir", "dal", "fmap",
    "pmap", "n_train", "n_test", "n_batch_train", "n_batch_test", "n_batch_init", "optimizer", "lr",
    "beta1", "polyak_epochs", "weight_decay", "epochs", "epochs_warmup", "epochs_full_valid",
    "gradient_checkpointing", "image_size", "anchor_size", "width", "depth", "weight_y", "n_bits_x",
    "n_levels", "n_sample", "epochs_full_sample", "learntop", "ycond", "seed", "flow_permutation",
    "flow_coupling")

# The original's test batch per local training batch (its train.py: "round down to closest
# divisor of 50"); it ignored --n_batch_test.
ORIGINAL_BATCH_TEST = {64: 50, 32: 25, 16: 10, 8: 5, 4: 2, 2: 2, 1: 1}


def _field(default, help_text, choices=None):
    return dataclasses.field(default=default, metadata={"help": help_text, "choices": choices})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training flags; see each field's help (``python train.py --help``)."""
    # ----------------------------------------------------------------- the original's flags
    verbose: bool = _field(False, "Print every step's loss (as the original's --verbose).")
    restore_path: str = _field(
        "", "Start from another run's weights: a glow_tf logdir, checkpoint dir or checkpoint prefix "
        "(model, Polyak average and optimizer slots; the step, data position and logs start afresh, "
        "as the original), or an ORIGINAL OpenAI checkpoint prefix (weights and averages). With "
        "--inference: the model to encode with. Ignored when --logdir already holds a checkpoint "
        "(that run is resumed).")
    inference: bool = _field(
        False, "Inference mode (the original's `infer`): encode the test set with the --restore_path model "
        "and write the latents, labels and reconstructions to LOGDIR/latents.npz (z: [N, D] float32, "
        "every level's eps flattened and joined as the original's flatten_eps; y: [N] int32; x: [N, H, W, "
        "C] uint8 decoded from z), instead of training.")
    logdir: str = _field("./logs", "Directory of the run: config.json, logs, checkpoints, sample grids, "
                         "TensorBoard summaries, SavedModel. Re-running with the same --logdir resumes.")
    # Dataset hyper-parameters.
    problem: str = _field("cifar10", "Data set.", PROBLEMS)
    category: str = _field("", "LSUN category (appended to --data_dir, as the original).")
    data_dir: str = _field("", "Location of the data: MNIST idx files or Keras' mnist.npz (mnist), Keras' "
                           "cifar-10-batches-py/ or cifar-10-python.tar.gz (cifar10), the original's "
                           "tfrecords, a tfds data dir, or an image folder (--problem folder). '': for "
                           "mnist and cifar10 the Keras cache where the original's keras.datasets put "
                           "them ($KERAS_HOME/datasets, ~/.keras/datasets), else tfds' default.")
    dal: int = _field(1, "Data augmentation level: 0 none, 1 standard (random shift), 2 extra (cifar10: "
                      "also flip, rotation, zoom, shear).", (0, 1, 2))
    fmap: int = _field(1, "Files read in parallel.")
    pmap: int = _field(16, "Parallel map calls in the input pipeline (-1: autotune).")
    # Optimisation hyper-parameters.
    n_train: int = _field(50000, "Epoch size in images at the anchor resolution (as the original: an "
                          "epoch is ceil(n_train / (n_batch_train * replicas)) steps); -1: the size of the "
                          "train split.")
    n_test: int = _field(-1, "Held-out images evaluated per test pass; -1: the problem's default.")
    n_batch_train: int = _field(64, "Training batch per replica at the anchor resolution.")
    n_batch_test: int = _field(-1, "Test batch per replica; -1: the original's rule, which ignored this "
                               "flag: the local training batch B (at image_size) gives "
                               f"{ORIGINAL_BATCH_TEST}[B], and a B not in that table the entry of the "
                               "largest key <= B (e.g. 48 -> 25).")
    n_batch_init: int = _field(256, "Batch for data-dependent init at the anchor resolution.")
    optimizer: str = _field("adamax", "Optimizer of the original's optim.py.", OPTIMIZERS)
    lr: float = _field(0.001, "Base learning rate (linear warm-up over --epochs_warmup).")
    beta1: float = _field(0.9, "Adam/Adamax beta1 (0: no first moment).")
    polyak_epochs: float = _field(1.0, "beta2 (second moment and Polyak average decay) = "
                                  "1 - 1 / (steps per epoch * polyak_epochs).")
    weight_decay: float = _field(1.0, "Multiplicative weight decay w <- weight_decay * w - step; "
                                 "1.0 switches it off.")
    epochs: int = _field(1000000, "Epochs: as the original, trains epochs 1 .. epochs - 1.")
    epochs_warmup: int = _field(10, "Learning-rate warm-up epochs: lr * min(1, images seen at the anchor "
                                "resolution / (n_train * epochs_warmup)); 0: no warm-up.")
    epochs_full_valid: int = _field(50, "Epochs between test passes (and best-loss checkpoints).")
    gradient_checkpointing: int = _field(1, "1: memory-saving gradients (reversible: activations "
                                         "recomputed by inverting each flow step); 0: plain backprop.",
                                         (0, 1))
    # Model hyper-parameters.
    image_size: int = _field(-1, "Image size; -1: the problem's size.")
    anchor_size: int = _field(32, "Anchor size for deciding the batch size (see --n_batch_train).")
    width: int = _field(512, "Width of the coupling networks' hidden layers.")
    depth: int = _field(32, "Flow steps per level.")
    weight_y: float = _field(0.0, "Weight of the classification loss log p(y|x) (needs --ycond).")
    n_bits_x: int = _field(8, "Number of bits of x.")
    n_levels: int = _field(3, "Number of levels.")
    # Synthesis / sampling.
    n_sample: int = _field(1, "Minibatch size for sample (accepted for compatibility; unused, as in the "
                           "original).")
    epochs_full_sample: int = _field(50, "Epochs between sample grids (also epochs 1 and 10, as the "
                                     "original).")
    # Ablation.
    learntop: bool = _field(False, "Learn the spatial (top) prior.")
    ycond: bool = _field(False, "Class-conditional prior (and classifier with --weight_y > 0).")
    seed: int = _field(0, "Random seed (data order, augmentation, noise, init, samples).")
    flow_permutation: int = _field(2, "Permutation: " + ", ".join(f"{k}={v}" for k, v in
                                                                  FLOW_PERMUTATIONS.items()) + ".",
                                   tuple(FLOW_PERMUTATIONS))
    flow_coupling: int = _field(0, "Coupling: " + ", ".join(f"{k}={v}" for k, v in FLOW_COUPLINGS.items())
                                + ".", tuple(FLOW_COUPLINGS))
    # -------------------------------------------------------------------------- glow_tf's
    strategy: str = _field("default", "tf.distribute strategy: default (one device), mirrored (all "
                           "local GPUs, else the CPU devices), multi_worker (from TF_CONFIG), tpu.",
                           STRATEGIES)
    tpu: str = _field("", "TPU address or name for --strategy tpu ('' = local TPU VM / Colab).")
    cpu_replicas: int = _field(0, "Split the CPU into this many logical devices (0: leave it), so that "
                               "--strategy mirrored can be tried without GPUs.")
    jit_compile: bool = _field(True, "Compile the training step with XLA.")
    steps_per_execution: int = _field(1, "Training steps run in one tf.function call (fewer host "
                                      "round trips; logs and checkpoints happen between calls).")
    use_ema_for_eval: bool = _field(False, "Evaluate and sample with the Polyak-averaged weights (the "
                                    "original evaluates the raw weights). Export always uses them.")
    fixed_sample_latents: bool = _field(False, "Draw the sample grids from the same latents every time "
                                        "(for figures and tests); by default each sampling epoch draws "
                                        "fresh ones, as the original, seeded by (--seed, epoch, grid).")
    max_steps: int = _field(0, "Stop after this many training steps in total (0: no limit); the run "
                            "ends with a checkpoint, a test pass and the export.")
    max_time: float = _field(0.0, "Stop after this many seconds of training in this process (0: no "
                             "limit); the run ends with a checkpoint, a test pass and the export.")
    deterministic: bool = _field(False, "Turn on tf.config.experimental.enable_op_determinism "
                                 "(bit-identical reruns and resumes on CPU; --seed seeds everything "
                                 "either way).")
    checkpoint_minutes: float = _field(10.0, "Minutes between checkpoints within an epoch (checkpoints "
                                       "are also written at every epoch end).")
    keep_checkpoints: int = _field(3, "Latest checkpoints kept in LOGDIR/checkpoints (the best-test-loss "
                                   "one is kept apart in LOGDIR/model_best_loss).")
    max_nonfinite: int = _field(10, "Consecutive steps with a non-finite loss or gradient (each is "
                                "skipped: no update) after which the run stops.")
    export: bool = _field(True, "Write the SavedModel (Polyak-averaged weights) to LOGDIR/saved_model at "
                          "the end of training.")
    log_steps: bool = _field(False, "Also log every step's statistics to LOGDIR/train_steps.txt "
                             "(JSON lines: step, loss, bits_x, bits_y, pred_loss, ok).")
    debug_inject_nan_at_step: int = _field(-1, "Testing only: make the loss of this step (0-based) NaN "
                                           "to exercise the non-finite guard; -1: never.")

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def glow_config(self, image_size, n_channels, n_y) -> GlowConfig:
        """The model's GlowConfig given the data's resolved size, channels and classes."""
        return GlowConfig(image_size=image_size, n_channels=n_channels, n_levels=self.n_levels,
                          depth=self.depth, width=self.width, n_bits_x=self.n_bits_x,
                          flow_permutation=self.flow_permutation, flow_coupling=self.flow_coupling,
                          learntop=self.learntop, ycond=self.ycond, n_y=n_y, weight_y=self.weight_y,
                          gradient_checkpointing=bool(self.gradient_checkpointing), seed=self.seed)

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


def help_text(name) -> str:
    """The help of field ``name``, with its choices."""
    field = {f.name: f for f in dataclasses.fields(TrainConfig)}[name]
    choices = field.metadata["choices"]
    return field.metadata["help"] + (f" One of {list(choices)}." if choices else "")


def validate(config: TrainConfig):
    """Raises ValueError naming the flag, what was expected and what was seen."""
    def expect(ok, name, expected):
        if not ok:
            raise ValueError(f"--{name}: expected {expected}, got {getattr(config, name)!r}")

    for field in dataclasses.fields(TrainConfig):
        choices = field.metadata["choices"]
        if choices is not None:
            expect(getattr(config, field.name) in choices, field.name, f"one of {list(choices)}")
    for name in ("n_batch_train", "n_batch_init", "anchor_size", "width", "depth",
                 "n_levels", "n_sample", "epochs_full_valid", "epochs_full_sample", "steps_per_execution",
                 "keep_checkpoints", "max_nonfinite", "fmap"):
        expect(getattr(config, name) >= 1, name, "an int >= 1")
    for name in ("n_train", "n_test", "n_batch_test", "image_size"):
        expect(getattr(config, name) == -1 or getattr(config, name) >= 1, name, "-1 or an int >= 1")
    expect(config.pmap == -1 or config.pmap >= 1, "pmap", "-1 or an int >= 1")
    expect(config.epochs >= 2, "epochs", "an int >= 2 (the original trains epochs 1 .. epochs - 1)")
    expect(config.epochs_warmup >= 0, "epochs_warmup", "an int >= 0")
    expect(1 <= config.n_bits_x <= 8, "n_bits_x", "an int in 1..8")
    for name in ("lr", "polyak_epochs", "checkpoint_minutes"):
        expect(math.isfinite(getattr(config, name)) and getattr(config, name) > 0, name, "a float > 0")
    expect(0.0 <= config.beta1 < 1.0, "beta1", "a float in [0, 1)")
    expect(0.0 < config.weight_decay <= 1.0, "weight_decay", "a float in (0, 1] (1.0: no decay)")
    expect(math.isfinite(config.weight_y) and config.weight_y >= 0, "weight_y", "a float >= 0")
    expect(config.weight_y == 0 or config.ycond, "weight_y",
           "0 unless --ycond (the classifier exists only in class-conditional models)")
    expect(config.seed >= 0, "seed", "an int >= 0")
    expect(config.cpu_replicas >= 0, "cpu_replicas", "an int >= 0")
    expect(config.max_steps >= 0, "max_steps", "an int >= 0 (0: no limit)")
    expect(math.isfinite(config.max_time) and config.max_time >= 0, "max_time", "seconds >= 0 (0: no limit)")
    expect(config.debug_inject_nan_at_step >= -1, "debug_inject_nan_at_step", "-1 or a step >= 0")
    expect(not config.inference or config.restore_path, "restore_path",
           "a checkpoint to encode with (--inference needs --restore_path)")
    expect(not config.tpu or config.strategy == "tpu", "tpu", "'' unless --strategy tpu")
    expect(not config.cpu_replicas or config.strategy == "mirrored", "cpu_replicas",
           "0 unless --strategy mirrored")
    expect(config.logdir != "", "logdir", "a directory")


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

"""DataConfig: the data flags of the original train.py, and the per-problem defaults.

Defaults are the original's flag defaults (train.py's TrainConfig keeps those), except:
  * ``problem`` defaults to "digits" (the original: "cifar10", which needs a download);
  * ``n_train`` defaults to -1, "the size of the train split" (the original: 50000). Either way
    ``n_train`` is the epoch size the training loop counts in, as in the original; it never
    drops training examples.
"""
import dataclasses

from glow_tf import fields

PROBLEMS = ("mnist", "cifar10", "imagenet-oord", "imagenet", "celeba", "lsun_realnvp", "lsun",
            "folder", "digits")

# The original's large problems: read from its tfrecords or from tfds, never augmented.
TFRECORD_PROBLEMS = ("imagenet-oord", "imagenet", "celeba", "lsun_realnvp", "lsun")

# The original's epoch size when a split's length is not known without reading it all.
DEFAULT_EPOCH_SIZE = 50000


@dataclasses.dataclass(frozen=True)
class ProblemDefaults:
    """What the original's train.py fixes per problem (plus our two new problems).

    Attributes:
      image_size: the size ``image_size=-1`` resolves to.
      n_test: the held-out examples ``n_test=-1`` resolves to (capped at the split's size);
        -1: the whole held-out split.
      n_y: number of classes; -1: from the data (folder: its class sub-folders).
      max_dal: highest augmentation level the problem has: 0 none (``dal`` is ignored, as the
        original's tfrecord problems), 1 random shift (``dal`` >= 1 means shift, as the
        original's mnist), 2 shift, or shift + flip + rotation + zoom + shear (as cifar10).
    """
    image_size: int
    n_test: int
    n_y: int
    max_dal: int


PROBLEM_DEFAULTS = {
    "mnist": ProblemDefaults(image_size=32, n_test=10000, n_y=10, max_dal=1),
    "cifar10": ProblemDefaults(image_size=32, n_test=10000, n_y=10, max_dal=2),
    "imagenet-oord": ProblemDefaults(image_size=64, n_test=50000, n_y=1000, max_dal=0),
    "imagenet": ProblemDefaults(image_size=256, n_test=50000, n_y=1000, max_dal=0),
    "celeba": ProblemDefaults(image_size=256, n_test=3000, n_y=1, max_dal=0),
    "lsun_realnvp": ProblemDefaults(image_size=64, n_test=300, n_y=1, max_dal=0),
    "lsun": ProblemDefaults(image_size=256, n_test=300, n_y=1, max_dal=0),
    "folder": ProblemDefaults(image_size=32, n_test=-1, n_y=-1, max_dal=2),
    "digits": ProblemDefaults(image_size=16, n_test=-1, n_y=10, max_dal=1),
}


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is batched, named as the original's flags.

    Each field's help says what it is; the flag fields are train.py's flags of the same name
    (``train_config``), whose batch flags are per replica at the anchor resolution and become
    these global ones at the run's start. Bad values raise a ValueError (``fields.FieldError``).
    """
    problem: str = fields.field("digits", "Data set.", fields.one_of(PROBLEMS), original=4)
    data_dir: str = fields.field(
        "", "Location of the data: MNIST idx files or Keras' mnist.npz (mnist), Keras' cifar-10-batches-py/ "
        "or cifar-10-python.tar.gz (cifar10), the original's tfrecords, a tfds data dir, or an image folder "
        "(--problem folder). '': for mnist and cifar10 the Keras cache where the original's keras.datasets "
        "put them ($KERAS_HOME/datasets, ~/.keras/datasets), else tfds' default. See data/problems.py.",
        fields.STRING, original=6)
    category: str = fields.field("", "LSUN category (appended to --data_dir, as the original).", fields.STRING,
                                 original=5)
    image_size: int = fields.field(-1, "Image size; -1: the problem's size (PROBLEM_DEFAULTS).",
                                   fields.INT_OR_MINUS_ONE, original=24)
    n_train: int = fields.field(
        -1, "Epoch size in images at the anchor resolution (as the original: an epoch is ceil(n_train / "
        "(--n_batch_train * replicas)) steps); -1: the size of the train split (50000 where unknown). It never "
        "drops training examples.", fields.INT_OR_MINUS_ONE, original=10)
    n_test: int = fields.field(-1, "Held-out images evaluated per test pass (the first n_test of the held-out "
                               "split); -1: the problem's default, capped at the split's size.",
                               fields.INT_OR_MINUS_ONE, original=11)
    global_batch_train: int = fields.field(
        64, "Training batch of all replicas together, split over them by tf.distribute (train.py: --n_batch_train, "
        "per replica, times the replicas).", fields.POSITIVE_INT, flag=False)
    global_batch_test: int = fields.field(50, "Evaluation batch of all replicas together.", fields.POSITIVE_INT,
                                          flag=False)
    init_batch: int = fields.field(256, "The data-dependent init's one batch, the same on every replica.",
                                   fields.POSITIVE_INT, flag=False)
    dal: int = fields.field(1, "Data augmentation level: 0 none, 1 standard (random shift of up to 10%, as the "
                            "original's ImageDataGenerator), 2 extra (cifar10: also flip, rotation, zoom, "
                            "shear); capped per problem (ProblemDefaults.max_dal).", fields.one_of((0, 1, 2)),
                            original=7)
    fmap: int = fields.field(1, "Files read in parallel.", fields.POSITIVE_INT, original=8)
    pmap: int = fields.field(16, "Parallel map calls in the input pipeline (-1: autotune).", fields.INT_OR_MINUS_ONE,
                             original=9)
    seed: int = fields.field(0, "Seeds shuffling, augmentation and random crops (train.py: --seed).",
                             fields.int_at_least(0), flag=False)
    shuffle_buffer: int = fields.field(
        -1, "-1: the whole train split for in-memory sources (one index per image), 4 * global_batch_train for "
        "streamed ones (the original's tfrecord reader); else this size.", fields.INT_OR_MINUS_ONE, flag=False)

    def __post_init__(self):
        fields.check(self, "DataConfig.")

    @property
    def defaults(self) -> ProblemDefaults:
        return PROBLEM_DEFAULTS[self.problem]

    @property
    def resolved_image_size(self) -> int:
        return self.defaults.image_size if self.image_size == -1 else self.image_size

    @property
    def augmentation_level(self) -> int:
        return min(self.dal, self.defaults.max_dal)

    def replace(self, **changes) -> "DataConfig":
        return dataclasses.replace(self, **changes)

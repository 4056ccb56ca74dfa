"""DataConfig: the data flags of the original train.py, and the per-problem defaults.

Defaults are the original's flag defaults, except:
  * ``problem`` defaults to "digits" (the original: "cifar10", which needs a download);
  * ``n_train`` defaults to -1, "the size of the train split" (the original: 50000). Either way
    ``n_train`` is the epoch size the training loop counts in, as in the original; it never
    drops training examples.
"""
import dataclasses

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

    Attributes:
      problem: one of ``PROBLEMS``.
      data_dir: "" (mnist, cifar10: the Keras cache if it holds them; else tfds' default data
        dir, or $TFDS_DATA_DIR) or a folder holding: MNIST idx files or Keras' mnist.npz
        (mnist), Keras' CIFAR-10 batches (cifar10), the original's tfrecords (the five large
        problems), a tfds data dir, or images (folder, where it is required). See ``sources``.
      category: LSUN category (lsun, lsun_realnvp); appended to ``data_dir`` as the original.
      image_size: output height = width; -1: the problem's default (``PROBLEM_DEFAULTS``).
      n_train: epoch size in images; -1: the train split's size (50000 where unknown).
      n_test: held-out images that ``Datasets.test`` passes over (the first ``n_test`` of the
        held-out split); -1: the problem's default, capped at the split's size.
      n_batch_train: GLOBAL training batch (split over replicas by tf.distribute).
      n_batch_test: evaluation batch.
      n_batch_init: size of the data-dependent-init batch.
      dal: data augmentation level: 0 none, 1 random shift of up to 10% (as the original's
        ImageDataGenerator(width_shift_range=.1, height_shift_range=.1)), 2 also flips,
        rotation, zoom and shear (the original's cifar10 level 2). Capped per problem by
        ``ProblemDefaults.max_dal``.
      fmap: files read in parallel (tfrecord / tfds interleave).
      pmap: parallel map calls; -1: tf.data.AUTOTUNE.
      seed: seeds shuffling, augmentation and random crops.
      shuffle_buffer: -1: the whole train split for in-memory sources (one index per image),
        4 * n_batch_train for streamed ones (the original's tfrecord reader); else this size.
    """
    problem: str = "digits"
    data_dir: str = ""
    category: str = ""
    image_size: int = -1
    n_train: int = -1
    n_test: int = -1
    n_batch_train: int = 64
    n_batch_test: int = 50
    n_batch_init: int = 256
    dal: int = 1
    fmap: int = 1
    pmap: int = 16
    seed: int = 0
    shuffle_buffer: int = -1

    def __post_init__(self):
        if self.problem not in PROBLEMS:
            raise ValueError(f"DataConfig.problem: expected one of {PROBLEMS}, got {self.problem!r}")
        for name in ("n_batch_train", "n_batch_test", "n_batch_init", "fmap"):
            _expect_int(self, name, lambda v: v >= 1, "an int >= 1")
        for name in ("image_size", "n_train", "n_test", "shuffle_buffer", "pmap"):
            _expect_int(self, name, lambda v: v == -1 or v >= 1, "-1 or an int >= 1")
        _expect_int(self, "dal", lambda v: v in (0, 1, 2), "0, 1 or 2")
        _expect_int(self, "seed", lambda v: v >= 0, "an int >= 0")

    @property
    def defaults(self) -> ProblemDefaults:
        return PROBLEM_DEFAULTS[self.problem]

    @property
    def resolved_image_size(self) -> int:
        return self.defaults.image_size if self.image_size == -1 else self.image_size

    @property
    def augmentation_level(self) -> int:
        return min(self.dal, self.defaults.max_dal)


def _expect_int(config, name, is_valid, expected):
    value = getattr(config, name)
    if not isinstance(value, int) or isinstance(value, bool) or not is_valid(value):
        raise ValueError(f"DataConfig.{name}: expected {expected}, got {value!r}")

"""GlowConfig: the model hyper-parameters, named and defaulted as the original's flags.

Only what shapes the model lives here (training flags live in ``train_lib``). Defaults are the
original train.py's, except ``image_size`` whose original default ``-1`` means "the problem's
size" and is resolved by the data pipeline; here it is a concrete 32.
"""
import dataclasses
import json
import math
import os
from typing import Any, Mapping

# The original's `hps` keys that are model hyper-parameters, under our names.
_OPENAI_MODEL_KEYS = ("image_size", "n_levels", "depth", "width", "n_bits_x", "flow_permutation",
                      "flow_coupling", "learntop", "ycond", "n_y", "weight_y")

FLOW_PERMUTATIONS = {0: "reverse", 1: "shuffle", 2: "invertible 1x1 conv",
                     3: "invertible 1x1 conv, LU-decomposed"}
FLOW_COUPLINGS = {0: "additive", 1: "affine"}


def _expect(ok, name, expected, seen):
    if not ok:
        raise ValueError(f"GlowConfig.{name}: expected {expected}, got {seen!r}")


@dataclasses.dataclass(frozen=True)
class GlowConfig:
    """Hyper-parameters of a Glow model.

    Attributes:
      image_size: height = width of the images (square, as in the original).
      n_channels: image channels (the original always uses 3; MNIST is tiled to RGB).
      n_levels: number of multi-scale levels; ``image_size`` must be divisible by 2**n_levels.
      depth: flow steps per level.
      width: channels of the coupling network's hidden layers.
      n_bits_x: bits per colour channel the model sees (1..8); n_bins = 2**n_bits_x.
      flow_permutation: 0 reverse, 1 fixed random shuffle, 2 invertible 1x1 conv (plain W, as
        the original), 3 invertible 1x1 conv with the LU parameterisation (the original's
        disabled variant).
      flow_coupling: 0 additive, 1 affine (sigmoid(h + 2) scale).
      learntop: learn the top prior's mean/log-scale with a zero-initialised conv.
      ycond: class-conditional top prior (and classifier head when weight_y > 0).
      n_y: number of classes.
      weight_y: weight of the classification loss (bits_y) in the training loss.
      gradient_checkpointing: memory-saving mode: recompute activations in backprop.
      seed: the initialisation seed, as the original's --seed: flow step i of level l draws its
        1x1 conv's orthogonal W and its shuffle permutation from numpy's
        ``RandomState([seed, l, i])``. The conv kernels' N(0, .05) draws follow TensorFlow's
        global seed, as every Keras initialiser (train.py sets it from --seed as well). A
        restored model keeps the values of its checkpoint whatever the seed.
    """
    image_size: int = 32
    n_channels: int = 3
    n_levels: int = 3
    depth: int = 32
    width: int = 512
    n_bits_x: int = 8
    flow_permutation: int = 2
    flow_coupling: int = 0
    learntop: bool = False
    ycond: bool = False
    n_y: int = 10
    weight_y: float = 0.0
    gradient_checkpointing: bool = False
    seed: int = 0

    def __post_init__(self):
        for name in ("image_size", "n_channels", "n_levels", "depth", "width", "n_bits_x", "n_y"):
            value = getattr(self, name)
            _expect(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                    name, "a positive int", value)
        _expect(isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0,
                "seed", "an int >= 0", self.seed)
        _expect(1 <= self.n_bits_x <= 8, "n_bits_x", "an int in 1..8", self.n_bits_x)
        _expect(self.image_size % (2 ** self.n_levels) == 0, "image_size",
                f"a multiple of 2**n_levels = {2 ** self.n_levels} (n_levels={self.n_levels})",
                self.image_size)
        _expect(self.flow_permutation in FLOW_PERMUTATIONS, "flow_permutation",
                f"one of {FLOW_PERMUTATIONS}", self.flow_permutation)
        _expect(self.flow_coupling in FLOW_COUPLINGS, "flow_coupling",
                f"one of {FLOW_COUPLINGS}", self.flow_coupling)
        for name in ("learntop", "ycond", "gradient_checkpointing"):
            _expect(isinstance(getattr(self, name), bool), name, "a bool", getattr(self, name))
        _expect(isinstance(self.weight_y, (int, float)) and math.isfinite(self.weight_y)
                and self.weight_y >= 0, "weight_y", "a finite float >= 0", self.weight_y)

    @property
    def n_bins(self) -> int:
        return 2 ** self.n_bits_x

    @property
    def image_shape(self):
        return (self.image_size, self.image_size, self.n_channels)

    @property
    def n_dims(self) -> int:
        """H * W * C: the number of sub-pixels of one image."""
        return self.image_size * self.image_size * self.n_channels

    @property
    def has_classifier(self) -> bool:
        """The original builds the classifier head only for ycond models with weight_y > 0."""
        return self.ycond and self.weight_y > 0

    def level_shapes(self):
        """[(H, W, C)] of the flow's input at every level (level 0 first)."""
        shapes = []
        size, channels = self.image_size // 2, self.n_channels * 4
        for level in range(self.n_levels):
            shapes.append((size, size, channels))
            size, channels = size // 2, channels * 2  # split halves, squeeze quadruples
        return shapes

    def eps_shapes(self):
        """[(H, W, C)] of every level's standardised latent, as the original's encoder."""
        shapes = [(h, w, c // 2) for h, w, c in self.level_shapes()[:-1]]
        return shapes + [self.level_shapes()[-1]]

    def replace(self, **changes) -> "GlowConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "GlowConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(f"GlowConfig: unknown fields {unknown}; expected a subset of {sorted(fields)}")
        return cls(**values)

    @classmethod
    def from_openai_hparams(cls, hparams) -> "GlowConfig":
        """Config from the original's `hps`: a dict, a JSON file, or its logs/train.txt.

        The original's train.txt starts with one line holding the hps as JSON.
        """
        if isinstance(hparams, (str, os.PathLike)):
            hparams = read_openai_hparams(hparams)
        if not isinstance(hparams, Mapping):
            raise ValueError(f"hparams: expected a dict or a path, got {type(hparams).__name__}")
        missing = [k for k in _OPENAI_MODEL_KEYS if k not in hparams and k != "weight_y"]
        if missing:
            raise ValueError(f"hparams: missing model keys {missing}; expected all of {list(_OPENAI_MODEL_KEYS)}")
        values = {k: hparams[k] for k in _OPENAI_MODEL_KEYS if k in hparams}
        for k in ("learntop", "ycond"):
            values[k] = bool(values[k])
        for k in ("image_size", "n_levels", "depth", "width", "n_bits_x", "flow_permutation",
                  "flow_coupling", "n_y"):
            values[k] = int(values[k])
        values["weight_y"] = float(values.get("weight_y", 0.0))
        values["gradient_checkpointing"] = bool(hparams.get("gradient_checkpointing", 0))
        values["seed"] = int(hparams.get("seed", 0))
        return cls(**values)


def read_openai_hparams(path) -> dict:
    """Reads the original's hps from a JSON file or from the first line of logs/train.txt."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"hparams: expected an existing JSON file or train.txt, got missing path {path!r}")
    with open(path) as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    first_line = text.splitlines()[0] if text else ""
    try:
        values = json.loads(first_line)
    except json.JSONDecodeError as e:
        raise ValueError(f"hparams: {path!r} is neither JSON nor a train.txt whose first line is "
                         f"the hps as JSON ({e})") from None
    if not isinstance(values, dict):
        raise ValueError(f"hparams: first line of {path!r} holds {type(values).__name__}, expected a JSON object")
    return values

"""GlowConfig: the model hyper-parameters, named and defaulted as the original's flags.

Only what shapes the model lives here (training flags live in ``train_config``). Defaults are the
original train.py's, except ``image_size`` whose original default ``-1`` means "the problem's
size" and is resolved by the data pipeline; here it is a concrete 32, and
``gradient_checkpointing``, False here and 1 in train.py as in the original. A new model
hyper-parameter is one field here: its help, its rule, whether train.py has a flag for it and
whether the original's hps hold it.
"""
import dataclasses
import json
import os
from typing import Any, Mapping

from glow_tf import fields
from glow_tf.layers.base import PRECISIONS

FLOW_PERMUTATIONS = {0: "reverse", 1: "shuffle", 2: "invertible 1x1 conv",
                     3: "invertible 1x1 conv, LU-decomposed"}
FLOW_COUPLINGS = {0: "additive", 1: "affine"}
# The original's per-example statistics (``Glow.loss_terms``), in the order of its logs.
LOSS_TERMS = ("loss", "bits_x", "bits_y", "pred_loss")


def _model_field(default, help_text, rule, flag=True, hps="required", **facts):
    """A GlowConfig field; ``hps``: whether the original's hps dict holds it ("required",
    "optional": default when absent, None: never read from it); ``facts``: ``fields.field``'s."""
    return fields.field(default, help_text, rule, flag=flag, metadata_hps=hps, **facts)


@dataclasses.dataclass(frozen=True)
class GlowConfig:
    """Hyper-parameters of a Glow model; each field's help says what it is (``fields.help_text``).

    The flag fields are train.py's flags of the same name (``train_config``); ``image_size``,
    ``n_channels`` and ``n_y`` come from the data there, and ``seed`` from ``--seed``. Bad values
    raise a ValueError (``fields.FieldError``) saying what was expected and what was seen.
    """
    image_size: int = _model_field(32, "Height = width of the images (square, as in the original); must be "
                                   "divisible by 2**n_levels.", fields.POSITIVE_INT, flag=False)
    n_channels: int = _model_field(3, "Image channels (the original always uses 3; MNIST is tiled to RGB).",
                                   fields.POSITIVE_INT, flag=False, hps=None)
    n_levels: int = _model_field(3, "Number of levels.", fields.POSITIVE_INT, original=30)
    depth: int = _model_field(32, "Flow steps per level.", fields.POSITIVE_INT, original=27)
    width: int = _model_field(512, "Width of the coupling networks' hidden layers.", fields.POSITIVE_INT, original=26)
    n_bits_x: int = _model_field(8, "Number of bits of x.", fields.int_in(1, 8), original=29)
    flow_permutation: int = _model_field(
        2, "Permutation: " + ", ".join(f"{k}={v}" for k, v in FLOW_PERMUTATIONS.items()) + " (plain W, as the "
        "original; 3 is the original's disabled LU variant).", fields.one_of(FLOW_PERMUTATIONS, FLOW_PERMUTATIONS),
        original=36)
    flow_coupling: int = _model_field(0, "Coupling: " + ", ".join(f"{k}={v}" for k, v in FLOW_COUPLINGS.items())
                                      + ".", fields.one_of(FLOW_COUPLINGS, FLOW_COUPLINGS), original=37)
    learntop: bool = _model_field(False, "Learn the spatial (top) prior.", fields.BOOL, original=33)
    ycond: bool = _model_field(False, "Class-conditional prior (and classifier with --weight_y > 0).", fields.BOOL,
                               original=34)
    n_y: int = _model_field(10, "Number of classes.", fields.POSITIVE_INT, flag=False)
    weight_y: float = _model_field(0.0, "Weight of the classification loss log p(y|x) (needs --ycond).",
                                   fields.float_at_least(0), hps="optional", original=28)
    gradient_checkpointing: bool = _model_field(
        False, "The memory-saving mode, under the original's flag name (its memory_saving_gradients): 1 "
        "recomputes each flow step's input in backprop by inverting the step instead of storing it "
        "(glow_tf/layers/reversible.py); 0: plain backprop. glow_tf's code and docs call it the memory-saving mode.",
        fields.BOOL, hps="optional", original=23, checkpoint_neutral=True, original_int_bool=True)
    precision: str = _model_field(
        "", "Precision of the coupling networks, a tf_keras dtype policy: float32 (the original's numbers) or "
        "mixed_bfloat16 (their convolutions in bfloat16, variables float32; everything that decides "
        "invertibility and the density stays float32: actnorm, the 1x1 conv, the coupling's scale and "
        "log-det, the priors, the objective, the optimizer). '': tf_keras's global policy when the model "
        "is built (float32 unless tf_keras.mixed_precision.set_global_policy set another).",
        fields.one_of(("",) + PRECISIONS), hps=None, checkpoint_neutral=True)
    seed: int = _model_field(
        0, "The initialisation seed, as the original's --seed: flow step i of level l draws its 1x1 conv's "
        "orthogonal W and its shuffle permutation from numpy's RandomState([seed, l, i]); the conv kernels' "
        "N(0, .05) draws follow TensorFlow's global seed (train.py sets it from --seed as well). A restored "
        "model keeps the values of its checkpoint whatever the seed.", fields.int_at_least(0), flag=False,
        hps="optional", checkpoint_neutral=True)

    def __post_init__(self):
        fields.check(self, "GlowConfig.")
        fields.expect(self.image_size % (2 ** self.n_levels) == 0, "GlowConfig.", "image_size",
                      f"a multiple of 2**n_levels = {2 ** self.n_levels} (n_levels={self.n_levels})", self.image_size)

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

        The original's train.txt starts with one line holding the hps as JSON. Each field's
        ``hps`` mark says whether the hps must hold it; values are cast to the field's type (the
        original wrote its booleans as 0/1).
        """
        if isinstance(hparams, (str, os.PathLike)):
            hparams = read_openai_hparams(hparams)
        if not isinstance(hparams, Mapping):
            raise ValueError(f"hparams: expected a dict or a path, got {type(hparams).__name__}")
        read = [f for f in dataclasses.fields(cls) if f.metadata["hps"] is not None]
        required = [f.name for f in read if f.metadata["hps"] == "required"]
        missing = [name for name in required if name not in hparams]
        if missing:
            raise ValueError(f"hparams: missing model keys {missing}; expected all of {required}")
        return cls(**{f.name: type(f.default)(hparams[f.name]) for f in read if f.name in hparams})


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


# GlowConfig fields that change nothing a checkpoint holds: the memory mode, the initialisation
# seed (a restored model keeps its checkpoint's values) and the coupling networks' precision (the
# variables are float32 in every precision).
CHECKPOINT_NEUTRAL = frozenset(f.name for f in dataclasses.fields(GlowConfig) if f.metadata["checkpoint_neutral"])

"""SavedModel export of a Glow: uint8 serving signatures, TFP-style functions and the config.

    export_saved_model(model, "out/saved_model")      # a Glow, or a training logdir / checkpoint
    glow-export --checkpoint LOGDIR --out DIR         # the same from the command line (glow_tf/cli/export.py)

The SavedModel needs only TensorFlow to load (``tf.saved_model.load``; no glow_tf). Its
signatures have these names (other programs depend on them) and a dynamic batch dimension N.
``y`` (int32 [N], labels in [0, n_y)) is an input only of class-conditional (ycond) models:

    encode(x uint8 [N, H, W, C], y)     -> eps_0 ... eps_{L-1}  float32 NHWC latents, level 0
                                           first (Glow.encode), bits_per_dim [N], and
                                           y_logits [N, n_y] only for models with a classifier
                                           (ycond and weight_y > 0, as the original builds it;
                                           other models have no classifier to export)
    decode(eps_0 ... eps_{L-1}, y)      -> image uint8 [N, H, W, C], x float32 [N, H, W, C]
                                           (continuous, before postprocess)
    sample(temperature float32 [N], y)  -> image uint8 [N, H, W, C]; each level's eps ~ N(0, t^2)
    bits_per_dim(x uint8 [N, H, W, C], y) -> bits_per_dim [N] (the original's bits_x)
    serving_default = sample

Noise. encode and bits_per_dim dequantise as the original does, also at test time:
floor(x / 2**(8 - n_bits_x)) / n_bins - .5 + U(0, 1/n_bins). That noise and sample's eps come from the
``tf.random.Generator`` ``noise_generator`` saved in the model, seeded with ``seed`` at
export, so every fresh load draws the same numbers in the same order. The first call after a
load (or after ``reseed(seed)``) draws, with g = ``tf.random.Generator.from_seed(seed)`` (seed
a Python int, 0 <= seed < 2**63):
``g.uniform([N, H, W, C], 0, 1/n_bins)`` in encode and bits_per_dim, and
``g.normal([N, h_i, w_i, c_i])`` for i = 0 .. L-1 in sample.

Checks when called. The image and latent inputs accept any shape of rank 4 (the signatures
declare [N, H, W, C] as (-1, -1, -1, -1); the sizes are in ``config_json``), so that a wrong
size meets a message naming the expected shape (InvalidArgumentError "assertion failed: [x:
expected shape [N, 32, 32, 3], got] [2 64 64 3]") rather than TensorFlow's refusal to bind the
input (which prints the whole input). Out-of-range labels and a label count that differs from the batch raise
InvalidArgumentError too. The dtype is TensorFlow's to check: a tf.Tensor of another dtype is
refused ("input #0(zero-based) was expected to be a uint8 tensor but is a float tensor"), and a
numpy array is converted to the input's dtype first (a float image is cast to uint8, wrapping
values past 255): pass uint8 images.

Gradients. The functions are traced with TensorFlow's own ops only (``layers.plain_ops``: plain
convolutions, each level's flow steps as a plain ``tf.while_loop``), so the SavedModel holds no
gradient overrides: it loads without warnings about unsaved custom gradients, and TensorFlow's
own gradients flow through a loaded function (``tf.GradientTape`` over its inputs).

Attributes of the loaded object (``tf.function``s):

    log_prob(x, [y])                 continuous x float32 [N, H, W, C] in [-.5, .5) -> [N] nats
    sample(n, [y], temperature=1.0)  n uint8 images (temperature: scalar or [n]), as Glow.sample
    reseed(seed)                     restarts noise_generator from int64 ``seed`` >= 0
    config_json                      tf.Variable(string), JSON: {"model": GlowConfig.to_dict(),
                                     "eps_shapes": [[h, w, c], ...], "has_classifier": bool,
                                     "precision": what the coupling networks compute in}
    model_variables                  the weights

    loaded = tf.saved_model.load(path)
    config = json.loads(loaded.config_json.numpy())["model"]
    images = loaded.signatures["sample"](temperature=tf.fill([16], 0.7))["image"]  # [16, H, W, C]
"""
import contextlib
import json
import os
import shutil
import tempfile

import tensorflow as tf

from glow_tf import checkpoints, files, latents
from glow_tf.errors import WriteError
from glow_tf.layers import check_precision, plain_ops, precision_as
from glow_tf.layers.base import Untracked
from glow_tf.model import Glow


class ServingModule(tf.Module):
    """What the SavedModel holds: ``model``'s weights, its noise generator, config and functions.

    Args:
      model: an initialised ``glow_tf.Glow``.
      seed: the seed of ``noise_generator`` (see the module docstring).
      precision: what its coupling networks compute in (``layers.PRECISIONS``), whatever the
        model's own precision: float32 by default, the original's numbers.

    ``signatures()`` gives the serving signatures, which take their inputs positionally in the
    order of their ``input_signature`` (whose spec names are the SavedModel's input names), ``y``
    last for class-conditional models. The module tracks the model's variables, not the tf_keras
    Model itself, so that saving it writes these functions and the weights only (a saved Keras
    model would also trace and serialise every layer's ``call``). The model code has no
    tensor-dependent Python control flow, so every function is traced without AutoGraph
    (AutoGraph conversion of every layer makes tracing several times slower), and every
    function calls one of two shared bodies, ``encode`` and ``decode``, each a tf.function traced
    once per input signature. Those two are kept out of tf.Module's tracking as well: as
    attributes they would be saved a second time beside the signatures that call them (a third
    more on disk).
    """

    def __init__(self, model: Glow, seed: int = 0, precision: str = "float32"):
        if not isinstance(model, Glow):
            raise ValueError(f"ServingModule: expected a glow_tf.Glow, got {type(model).__name__}")
        if not bool(model.initialized.numpy()):
            raise ValueError("ServingModule: expected an initialised model (model.initialize(x) or a restored "
                             "checkpoint), got one whose data-dependent init has not run")
        super().__init__(name="glow")
        config = model.config
        # Held outside tf.Module's tracking (see the class docstring); model_variables are saved.
        self._untracked = Untracked(
            model=model, config=config, precision=check_precision("precision", precision),
            encode=tf.function(self._encode_continuous, autograph=False),
            decode=tf.function(self._decode_eps, autograph=False))
        self.model_variables = list(model.variables)
        self.noise_generator = tf.random.Generator.from_seed(seed)
        self.config_json = tf.Variable(json.dumps({
            "model": config.to_dict(), "eps_shapes": [list(s) for s in config.eps_shapes()],
            "has_classifier": config.has_classifier, "precision": precision}), trainable=False, name="config_json")
        continuous_spec = tf.TensorSpec([None] * 4, tf.float32, name="x")  # checked when called
        # log_prob(x, y=...) with named parameters on the loaded object; y only for ycond models.
        self.log_prob = tf.function(self._log_prob, input_signature=[continuous_spec, *self._label_specs()],
                                    autograph=False)
        # Nothing else is traced here but the two forms of `sample` (its temperature has a default,
        # which an input_signature cannot express): tf.saved_model.save traces in its own context
        # and would trace anything traced before a second time.
        count_spec = tf.TensorSpec([], tf.int32, name="n")
        self.sample.get_concrete_function(count_spec, *self._label_specs())
        self.sample.get_concrete_function(count_spec, *self._label_specs(),
                                          temperature=tf.TensorSpec(None, tf.float32))

    @property
    def model(self) -> Glow:
        return self._untracked.model

    def _label_specs(self):
        return [tf.TensorSpec([None], tf.int32, name="y")] if self._untracked.config.ycond else []

    # ---------------------------------------------------------------- the shared bodies
    def _encode_continuous(self, x, y):
        """x continuous [N, H, W, C] -> {eps_i, log_prob [N], y_logits [N, n_y] (classifier models)}."""
        model = self.model
        with precision_as(self._untracked.precision), plain_ops():
            encoding = model.encode_with_log_det(x, model.check_labels(y, x, runtime_checks=True))
        outputs = {f"eps_{level}": eps for level, eps in enumerate(encoding.eps)}
        outputs["log_prob"] = encoding.log_prob  # [N]
        if model.config.has_classifier:
            outputs["y_logits"] = model.logits_from_top(encoding.z_top)  # [N, n_y]
        return outputs

    def _decode_eps(self, eps, y):
        """List of latents -> {image uint8 [N, H, W, C], x float32 [N, H, W, C] (continuous)}."""
        model = self.model
        with precision_as(self._untracked.precision), plain_ops():
            x = model.decode_with_log_det(eps, model.check_labels(y, eps[0], runtime_checks=True)).x
        return {"image": model.postprocess(x), "x": x}

    def _encode_uint8(self, x, y):
        """The original's dequantisation with the saved generator's noise, then ``encode``, bits_x."""
        model = self.model
        noise = self.noise_generator.uniform(tf.shape(x), 0.0, 1.0 / model.config.n_bins)  # [N, H, W, C]
        outputs = self._untracked.encode(model.preprocess(x, tf.ensure_shape(noise, x.shape)), y)
        outputs["bits_per_dim"] = model.bits_x(outputs.pop("log_prob"))  # [N]
        return outputs

    def _sample_eps(self, n, temperature):
        """Every level's eps ~ N(0, temperature**2) from the saved generator (temperature scalar or [n])."""
        return latents.draw(self._untracked.config.eps_shapes(), n, temperature,
                            lambda shape, level: self.noise_generator.normal(shape))

    # ------------------------------------------------------------ the loaded object's API
    def _log_prob(self, x, y=None):
        return self._untracked.encode(_checked_shape(x, self._untracked.config.image_shape, "x"), y)["log_prob"]

    @tf.function(autograph=False)
    def sample(self, n, y=None, temperature=1.0):
        """n uint8 images [n, H, W, C] (temperature scalar or [n]), as Glow.sample."""
        return self._untracked.decode(self._sample_eps(n, temperature), y)["image"]

    @tf.function(input_signature=[tf.TensorSpec([], tf.int64, name="seed")], autograph=False)
    def reseed(self, seed):
        """Restarts noise_generator as tf.random.Generator.from_seed(seed) would start it."""
        # The state from_seed(<Python int>) makes: [seed, 0, ...]. (A tensor seed would be laid
        # out differently, [..., 0, seed], and draw other numbers.)
        state_size = self.noise_generator.state.shape[0]
        self.noise_generator.reset(tf.pad(tf.reshape(seed, [1]), [[0, state_size - 1]]))
        return seed

    # ------------------------------------------------------------------- the signatures
    def _inputs_and_labels(self, inputs):
        """A signature's positional inputs -> (its own inputs, y or None): y comes last when ycond."""
        if self._untracked.config.ycond:
            return inputs[:-1], inputs[-1]
        return inputs, None

    def _encode_signature(self, *inputs):
        (x,), y = self._inputs_and_labels(inputs)
        return self._encode_uint8(_checked_shape(x, self._untracked.config.image_shape, "x"), y)

    def _decode_signature(self, *inputs):
        eps, y = self._inputs_and_labels(inputs)
        shapes = self._untracked.config.eps_shapes()
        return self._untracked.decode([_checked_shape(e, shape, f"eps_{level}")
                                       for level, (e, shape) in enumerate(zip(eps, shapes))], y)

    def _sample_signature(self, *inputs):
        (temperature,), y = self._inputs_and_labels(inputs)
        return {"image": self._untracked.decode(self._sample_eps(tf.shape(temperature)[0], temperature), y)["image"]}

    def _bits_per_dim_signature(self, *inputs):
        (x,), y = self._inputs_and_labels(inputs)
        x = _checked_shape(x, self._untracked.config.image_shape, "x")
        return {"bits_per_dim": self._encode_uint8(x, y)["bits_per_dim"]}

    def signatures(self):
        """{signature name: tf.function} for ``tf.saved_model.save(module, path, signatures=...)``."""
        config = self._untracked.config
        image_spec = tf.TensorSpec([None] * 4, tf.uint8, name="x")  # the shapes: checked when called
        eps_specs = [tf.TensorSpec([None] * 4, tf.float32, name=f"eps_{level}") for level in range(config.n_levels)]
        temperature_spec = tf.TensorSpec([None], tf.float32, name="temperature")
        signatures = {name: tf.function(body, input_signature=specs + self._label_specs(), autograph=False)
                      for name, body, specs in (("encode", self._encode_signature, [image_spec]),
                                                ("decode", self._decode_signature, eps_specs),
                                                ("sample", self._sample_signature, [temperature_spec]),
                                                ("bits_per_dim", self._bits_per_dim_signature, [image_spec]))}
        signatures["serving_default"] = signatures["sample"]
        return signatures


def _checked_shape(x, shape, name):
    """``x`` [N, *shape] with that static shape, after a check when called whose message names
    ``shape`` (see the module docstring)."""
    actual = tf.shape(x)
    same = tf.reduce_all(tf.equal(actual[1:], shape))
    expected = f"{name}: expected shape [N, {', '.join(map(str, shape))}], got"
    with tf.control_dependencies([tf.debugging.Assert(same, [expected, actual], summarize=4)]):
        return tf.ensure_shape(tf.identity(x), [None, *shape])


def check_target(path, overwrite):
    """A ValueError unless ``path`` is new or ``overwrite``: checked before a slow restore, and again at writing."""
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"export: expected a new output path, got existing {path!r} "
                         "(pass overwrite=True / --overwrite to replace it)")


@contextlib.contextmanager
def _atomic_directory(path, overwrite):
    """Yields a temp dir beside ``path`` that becomes ``path`` only if the block succeeds."""
    check_target(path, overwrite)
    parent = os.path.dirname(path) or "."
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        yield staging
        if os.path.exists(path):
            # Move the old export aside first: a directory cannot be renamed onto a non-empty one.
            trash = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=parent)
            os.rename(path, os.path.join(trash, "old"))
            os.rename(staging, path)
            shutil.rmtree(trash)
        else:
            os.rename(staging, path)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)


def directory_size(path) -> int:
    """Bytes of all files under ``path``."""
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


def export_saved_model(model, path, use_ema=True, overwrite=False, seed=0, precision="float32") -> str:
    """Writes ``model`` as a SavedModel at ``path`` (atomically: temp dir, then rename).

    Args:
      model: a ``glow_tf.Glow`` (exported with the weights it holds), or a glow_tf training
        ``--logdir``, checkpoint directory or checkpoint prefix (restored with
        ``glow_tf.checkpoints.restore_model``).
      path: the SavedModel directory to create.
      use_ema: when ``model`` is a checkpoint path: export the Polyak (EMA) weights if the
        checkpoint holds them. A Glow object is exported as it is (restore it with
        ``restore_model(..., use_ema=True)`` to get EMA weights into it).
      overwrite: replace an existing ``path``; otherwise an existing path is a ValueError.
      seed: seed of the saved noise generator (see the module docstring).
      precision: what the SavedModel's coupling networks compute in: float32 (the original's
        numbers, whatever precision the model trained in) or mixed_bfloat16 (faster on hardware
        with fast bfloat16; ``config_json`` records it).

    Returns:
      ``path``.

    Raises WriteError when the files cannot be written (a full disk): nothing is left of them,
    and an existing ``path`` is as it was.
    """
    if isinstance(model, (str, os.PathLike)):
        model = checkpoints.restore_model(model, use_ema=use_ema)
    module = ServingModule(model, seed=seed, precision=precision)
    path = os.path.abspath(os.fspath(path))
    try:
        with _atomic_directory(path, overwrite) as staging:
            tf.saved_model.save(module, staging, signatures=module.signatures())
    except (tf.errors.OpError, OSError) as e:
        raise WriteError(f"could not write the SavedModel {path} ({files.write_failure(e, path)})") from None
    return path

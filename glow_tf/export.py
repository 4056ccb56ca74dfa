"""SavedModel export of a Glow: uint8 serving signatures, TFP-style functions and the config.

    glow-export --checkpoint LOGDIR --out DIR                          # glow_tf run (or python -m glow_tf.export)
    glow-export --openai_checkpoint PREFIX --hparams FILE --out DIR   # the original's

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
``g.normal([N, h_i, w_i, c_i])`` for i = 0 .. L-1 in sample. Out-of-range labels and a label
count that differs from the batch raise InvalidArgumentError.

Attributes of the loaded object (``tf.function``s):

    log_prob(x, [y])                 continuous x float32 [N, H, W, C] in [-.5, .5) -> [N] nats
    sample(n, [y], temperature=1.0)  n uint8 images (temperature: scalar or [n]), as Glow.sample
    reseed(seed)                     restarts noise_generator from int64 ``seed`` >= 0
    config_json                      tf.Variable(string), JSON: {"model": GlowConfig.to_dict(),
                                     "eps_shapes": [[h, w, c], ...], "has_classifier": bool}
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
import time

import tensorflow as tf
from absl import flags
from tqdm import tqdm

from glow_tf import cli
from glow_tf.model import Glow, standard_normal_log_prob

def serving_module(model: Glow, seed: int = 0):
    """(tf.Module, {signature name: tf.function}) serving ``model``; see the module docstring.

    The signature functions take their inputs positionally, in the order of their
    ``input_signature`` (whose spec names are the SavedModel's input names).

    The module tracks the model's variables, not the tf_keras Model itself, so that saving it
    writes the functions below and the weights only (a saved Keras model would also trace and
    serialise every layer's ``call``).
    """
    if not isinstance(model, Glow):
        raise ValueError(f"serving_module: expected a glow_tf.Glow, got {type(model).__name__}")
    if not bool(model.initialized.numpy()):
        raise ValueError("serving_module: expected an initialised model (model.initialize(x) or a restored "
                         "checkpoint), got one whose data-dependent init has not run")
    config = model.config
    n_bins = float(config.n_bins)
    eps_shapes = config.eps_shapes()
    eps_names = [f"eps_{level}" for level in range(config.n_levels)]

    module = tf.Module(name="glow")
    module.model_variables = list(model.variables)
    module.noise_generator = tf.random.Generator.from_seed(seed)
    module.config_json = tf.Variable(json.dumps({
        "model": config.to_dict(), "eps_shapes": [list(s) for s in eps_shapes],
        "has_classifier": config.has_classifier}), trainable=False, name="config_json")

    def checked_labels(y, batch):
        """The run-time checks a loaded model keeps (Glow's Python checks are not exported)."""
        if not config.ycond:
            return None
        y = tf.convert_to_tensor(y, tf.int32)
        with tf.control_dependencies([
                tf.debugging.assert_equal(tf.shape(y)[0], tf.shape(batch)[0],
                                          message="y: expected one label per example"),
                tf.debugging.assert_non_negative(y, message=f"y: expected labels in [0, {config.n_y})"),
                tf.debugging.assert_less(y, config.n_y, message=f"y: expected labels in [0, {config.n_y})")]):
            return tf.identity(y)

    # The model code has no tensor-dependent Python control flow, so every function is traced
    # without AutoGraph (AutoGraph conversion of every layer makes tracing several times slower).
    # Every function below calls one of these two shared bodies, traced once per direction.
    @tf.function(autograph=False)
    def encode_continuous(x, y):
        eps, z_top, log_det = model._encode(x, checked_labels(y, x))
        log_prob = tf.add_n([standard_normal_log_prob(e) for e in eps]) + log_det  # [N]
        outputs = dict(zip(eps_names, eps), log_prob=log_prob)
        if config.has_classifier:
            outputs["y_logits"] = model._classify(z_top)  # [N, n_y]
        return outputs

    def encode_uint8(x, y):
        noise = module.noise_generator.uniform(tf.shape(x), 0.0, 1.0 / n_bins)  # [N, H, W, C]
        outputs = encode_continuous(model.preprocess(x, tf.ensure_shape(noise, x.shape)), y)
        outputs["bits_per_dim"] = model._bits_x(outputs.pop("log_prob"))
        return outputs

    @tf.function(autograph=False)
    def decode_eps(eps, y):
        x, _ = model._decode(eps, checked_labels(y, eps[0]))  # [N, H, W, C]
        return {"image": model.postprocess(x), "x": x}

    def sample_eps(n, temperature):
        temperature = tf.reshape(tf.cast(temperature, tf.float32), [-1, 1, 1, 1])
        return [module.noise_generator.normal(tf.concat([[n], shape], axis=0)) * temperature
                for shape in eps_shapes]

    # Signature bodies: inputs in signature order, y last (None for unconditional models).
    def encode_signature(x, y):
        return encode_uint8(x, y)

    def decode_signature(*eps, y):
        return decode_eps(list(eps), y)

    def sample_signature(temperature, y):
        return {"image": decode_eps(sample_eps(tf.shape(temperature)[0], temperature), y)["image"]}

    def bits_per_dim_signature(x, y):
        return {"bits_per_dim": encode_uint8(x, y)["bits_per_dim"]}

    def signature(body, input_specs):
        """tf.function of the signature's inputs (y last when ycond), positional, named by spec."""
        if config.ycond:
            return tf.function(lambda *inputs: body(*inputs[:-1], y=inputs[-1]), autograph=False,
                               input_signature=input_specs + [label_spec])
        return tf.function(lambda *inputs: body(*inputs, y=None), input_signature=input_specs, autograph=False)

    # Nothing is traced here but the two forms of `sample` (its temperature has a default, which
    # an input_signature cannot express): tf.saved_model.save traces in its own context and
    # would trace anything traced before a second time.
    image_spec = tf.TensorSpec([None, *config.image_shape], tf.uint8, name="x")
    label_spec = tf.TensorSpec([None], tf.int32, name="y")
    labels = [label_spec] if config.ycond else []
    eps_specs = [tf.TensorSpec([None, *shape], tf.float32, name=name) for shape, name in zip(eps_shapes, eps_names)]
    signatures = {
        "encode": signature(encode_signature, [image_spec]),
        "decode": signature(decode_signature, eps_specs),
        "sample": signature(sample_signature, [tf.TensorSpec([None], tf.float32, name="temperature")]),
        "bits_per_dim": signature(bits_per_dim_signature, [image_spec]),
    }
    signatures["serving_default"] = signatures["sample"]

    continuous_spec = tf.TensorSpec([None, *config.image_shape], tf.float32, name="x")
    if config.ycond:  # named parameters: log_prob(x, y=...) works on the loaded object
        log_prob = tf.function(lambda x, y: encode_continuous(x, y)["log_prob"],
                               input_signature=[continuous_spec, label_spec], autograph=False)
    else:
        log_prob = tf.function(lambda x: encode_continuous(x, None)["log_prob"],
                               input_signature=[continuous_spec], autograph=False)

    @tf.function(autograph=False)
    def sample(n, y=None, temperature=1.0):
        return decode_eps(sample_eps(n, temperature), y)["image"]

    @tf.function(input_signature=[tf.TensorSpec([], tf.int64, name="seed")], autograph=False)
    def reseed(seed):
        # The state tf.random.Generator.from_seed(<Python int>) makes: [seed, 0, ...]. (A tensor
        # seed would be laid out differently, [..., 0, seed], and draw other numbers.)
        state_size = module.noise_generator.state.shape[0]
        module.noise_generator.reset(tf.pad(tf.reshape(seed, [1]), [[0, state_size - 1]]))
        return seed

    count_spec = tf.TensorSpec([], tf.int32, name="n")
    sample.get_concrete_function(count_spec, *labels)
    sample.get_concrete_function(count_spec, *labels, temperature=tf.TensorSpec(None, tf.float32))
    module.log_prob, module.sample, module.reseed = log_prob, sample, reseed
    return module, signatures


def _check_target(path, overwrite):
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"export: expected a new output path, got existing {path!r} "
                         "(pass overwrite=True / --overwrite to replace it)")


@contextlib.contextmanager
def _atomic_directory(path, overwrite):
    """Yields a temp dir beside ``path`` that becomes ``path`` only if the block succeeds."""
    _check_target(path, overwrite)
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


def export_saved_model(model, path, use_ema=True, overwrite=False, seed=0) -> str:
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

    Returns:
      ``path``.
    """
    if isinstance(model, (str, os.PathLike)):
        from glow_tf import checkpoints  # the training side; only needed for checkpoint paths
        model = checkpoints.restore_model(model, use_ema=use_ema)
    module, signatures = serving_module(model, seed=seed)
    path = os.path.abspath(os.fspath(path))
    with _atomic_directory(path, overwrite) as staging:
        tf.saved_model.save(module, staging, signatures=signatures)
    return path


def _define_flags():
    flags.DEFINE_string("checkpoint", None, "glow_tf training --logdir, its checkpoints/ directory or a "
                        "checkpoint prefix to export (restored with glow_tf.checkpoints.restore_model).")
    flags.DEFINE_string("openai_checkpoint", None, "Prefix of an ORIGINAL OpenAI Glow checkpoint "
                        "(e.g. logs/model_best_loss.ckpt) to export instead; needs --hparams.")
    flags.DEFINE_string("hparams", None, "With --openai_checkpoint: the original's hps as JSON or its "
                        "logs/train.txt (first line = hps).")
    flags.DEFINE_string("out", None, "SavedModel directory to write (must not exist unless --overwrite).")
    flags.DEFINE_bool("overwrite", False, "Replace an existing --out directory.")
    flags.DEFINE_bool("use_ema", True, "Export the Polyak-averaged (EMA) weights when the checkpoint holds "
                      "them (the original's '.../ExponentialMovingAverage' shadows for --openai_checkpoint; "
                      "the original itself evaluates the raw weights).")
    flags.DEFINE_integer("seed", 0, "Seed of the SavedModel's noise generator (dequantisation noise, "
                         "sample's eps): a fresh load draws the same numbers in the same order.")
    flags.mark_flag_as_required("out")


def _restore():
    """The model the flags name (the slow first stage: reading the checkpoint)."""
    FLAGS = flags.FLAGS
    if FLAGS.checkpoint is not None:
        from glow_tf import checkpoints
        return checkpoints.restore_model(FLAGS.checkpoint, use_ema=FLAGS.use_ema)
    from glow_tf import openai
    return openai.load_checkpoint(FLAGS.openai_checkpoint, FLAGS.hparams, use_ema=FLAGS.use_ema)


def _export():
    FLAGS = flags.FLAGS
    if (FLAGS.checkpoint is None) == (FLAGS.openai_checkpoint is None):
        raise ValueError("expected exactly one of --checkpoint and --openai_checkpoint, got "
                         f"{'both' if FLAGS.checkpoint else 'neither'}")
    if FLAGS.openai_checkpoint is not None and FLAGS.hparams is None:
        raise ValueError("--hparams: expected the original's hps (JSON or train.txt) with --openai_checkpoint, got none")
    start = time.perf_counter()
    _check_target(FLAGS.out, FLAGS.overwrite)  # before the slow restore
    # Two stages, each one call that reports nothing while it runs: the bar names the stage and
    # the time so far (on a terminal only).
    with tqdm(total=2, initial=1, desc="restoring the checkpoint", bar_format="{desc} (stage {n}/{total}, {elapsed})",
              disable=None, leave=False) as stages:
        model = _restore()
        stages.set_description_str("tracing and writing the SavedModel")
        stages.update()
        path = export_saved_model(model, FLAGS.out, overwrite=FLAGS.overwrite, seed=FLAGS.seed)
    print(f"wrote SavedModel {path}: {directory_size(path) / 2**20:.1f} MiB on disk, "
          f"{time.perf_counter() - start:.1f} s (restore + trace + save)")


def main():
    """The glow-export console script and ``python -m glow_tf.export``."""
    _define_flags()
    cli.run(_export)


if __name__ == "__main__":
    main()

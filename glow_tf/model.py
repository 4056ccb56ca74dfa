"""Glow: the multi-scale flow of the original model.py, with its objective, encoder and decoder.

Data side to latent side (the original's ``encoder``), for L = n_levels:

    x [N, H, W, C] -> squeeze2d -> level 0 (depth flow steps) -> split 0 (eps_0) -> level 1 ...
                   -> level L-1 -> top prior (eps_{L-1})

A flow step is actnorm -> permutation -> coupling. Each split takes off half the channels as a
latent under a prior conditioned on the other half, which is squeezed and goes on. Every eps
is standardised: eps = (z - mean) / exp(logs) under that level's prior, so the model's density
of a continuous image x in [-.5, .5)^D is

    log p(x) = sum_levels log N(eps_i; 0, I) + log|det d(eps_0..eps_{L-1}) / dx|

and the original's per-example objective is ``log p(x) - log(n_bins) * D``.
"""
import math
from typing import List, NamedTuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from glow_tf import latents
from glow_tf.config import LOSS_TERMS, GlowConfig
from glow_tf.layers import (ActNorm, FlowChain, FlowScan, LinearZeros, Split, TopPrior, data_dependent_init,
                            make_coupling, make_permutation, squeeze2d, unsqueeze2d)
from glow_tf.fit import KerasTraining
from glow_tf.layers.base import FLOAT32, check_precision, resolve_precision

_LOG_2PI = math.log(2.0 * math.pi)


class FlowStep(FlowChain):
    """actnorm -> permutation (reverse / shuffle / 1x1 conv) -> coupling (additive / affine).

    ``seed`` (an int or a tuple of ints) seeds the permutation's numpy RandomState.
    """

    def __init__(self, n_channels, config: GlowConfig, seed=0, **kwargs):
        actnorm = ActNorm(n_channels, name="actnorm")
        permutation = make_permutation(config.flow_permutation, n_channels, seed=seed)
        coupling = make_coupling(config.flow_coupling, n_channels, config.width,
                                 resolve_precision(config.precision))
        super().__init__([actnorm, permutation, coupling], **kwargs)
        self.actnorm, self.permutation, self.coupling = actnorm, permutation, coupling


def standard_normal_log_prob(eps):
    """log N(eps; 0, I) summed over H, W, C: [N, H, W, C] -> [N]."""
    return -0.5 * tf.reduce_sum(_LOG_2PI + tf.square(eps), axis=[1, 2, 3])


class Encoding(NamedTuple):
    """``Glow.encode_with_log_det``: x -> latents, with what the objective and classifier need."""
    eps: List[tf.Tensor]  # n_levels standardised latents [N, h, w, c], level 0 first
    z_top: tf.Tensor      # [N, h, w, c] the top level's z before its prior: the classifier's input
    log_det: tf.Tensor    # [N] log|det d(eps_0 .. eps_{L-1}) / dx|

    @property
    def log_prob(self):
        """[N] nats: log p(x) = sum_levels log N(eps_i; 0, I) + log_det."""
        return tf.add_n([standard_normal_log_prob(e) for e in self.eps]) + self.log_det


class Decoding(NamedTuple):
    """``Glow.decode_with_log_det``: latents -> continuous x."""
    x: tf.Tensor        # [N, H, W, C] continuous, before postprocess
    log_det: tf.Tensor  # [N] log|det dx / d(eps_0 .. eps_{L-1})|


def check_labels(y, n_y, batch_size=None, runtime_checks=False):
    """int32 labels [N] in [0, n_y), or a ValueError saying what was expected and what was seen.

    The dtype, the rank and (when both are known) the count against ``batch_size`` are checked
    from the static shape; the values when running eagerly. ``runtime_checks`` adds graph
    assertions of the count and values, for functions that outlive Python (the SavedModel's
    signatures): they raise InvalidArgumentError when called.
    """
    y = tf.convert_to_tensor(y)
    if not y.dtype.is_integer:
        raise ValueError(f"y: expected integer labels, got dtype {y.dtype.name}")
    if y.shape.rank != 1:
        raise ValueError(f"y: expected shape [N], got {y.shape}")
    static_size = batch_size if isinstance(batch_size, (int, type(None))) else tf.get_static_value(batch_size)
    if static_size is not None and y.shape[0] is not None and y.shape[0] != static_size:
        raise ValueError(f"y: expected {static_size} labels (one per image), got {y.shape[0]}")
    if tf.executing_eagerly() and y.shape[0]:
        low, high = int(tf.reduce_min(y)), int(tf.reduce_max(y))
        if low < 0 or high >= n_y:
            raise ValueError(f"y: expected labels in [0, {n_y}), got values in [{low}, {high}]")
    y = tf.cast(y, tf.int32)
    if not runtime_checks:
        return y
    in_range = f"y: expected labels in [0, {n_y})"
    with tf.control_dependencies([
            tf.debugging.assert_equal(tf.shape(y)[0], batch_size, message="y: expected one label per example"),
            tf.debugging.assert_non_negative(y, message=in_range),
            tf.debugging.assert_less(y, n_y, message=in_range)]):
        return tf.identity(y)


def reduce_bits(x_uint8, n_bits_x: int):
    """The original's bit reduction: floor(x / 2**(8 - n_bits_x)), values in [0, 2**n_bits_x).

    The pipelines yield full 8-bit images; the model reduces them in ``preprocess``.
    """
    if not 1 <= n_bits_x <= 8:
        raise ValueError(f"n_bits_x: expected an int in 1..8, got {n_bits_x!r}")
    return tf.bitwise.right_shift(tf.convert_to_tensor(x_uint8, tf.uint8), tf.constant(8 - n_bits_x, tf.uint8))


class Glow(KerasTraining, keras.Model):
    """The Glow model: the multi-scale flow, its objective, encoding, decoding and sampling (module docstring).

    Args:
      config: a ``GlowConfig``. Its ``precision`` '' takes tf_keras's global dtype policy.
      dtype: a tf_keras dtype policy (or its name) for the coupling networks, overriding
        ``config.precision``, as a Keras layer's ``dtype`` argument; the rest of the model
        computes in float32 whatever the policy (``layers.FlowLayer``).

    ``precision``: what the coupling networks compute in (the resolved policy name).
    """

    def __init__(self, config: GlowConfig, dtype=None, **kwargs):
        if not isinstance(config, GlowConfig):
            raise ValueError(f"Glow: expected a GlowConfig, got {type(config).__name__}")
        precision = (check_precision("Glow.dtype", getattr(dtype, "name", dtype)) if dtype
                     else resolve_precision(config.precision))
        super().__init__(name=kwargs.pop("name", "glow"), dtype=FLOAT32, **kwargs)
        self.config = config
        self.precision = precision
        level_shapes = config.level_shapes()
        self.levels = []
        for level, (_, _, channels) in enumerate(level_shapes):
            def make_step(step, level=level, channels=channels):
                return FlowStep(channels, config.replace(precision=precision), seed=(config.seed, level, step),
                                name="step")
            self.levels.append(FlowScan(make_step, config.depth, memory_saving=config.gradient_checkpointing,
                                        name=f"level_{level}"))
        self.splits = [Split(channels, name=f"pool{level}")
                       for level, (_, _, channels) in enumerate(level_shapes[:-1])]
        self.top_prior = TopPrior(level_shapes[-1], config.learntop, config.ycond, config.n_y, name="prior")
        self.classifier = (LinearZeros(level_shapes[-1][2], config.n_y, name="classifier")
                           if config.has_classifier else None)
        self.initialized = tf.Variable(False, trainable=False, name="initialized")
        self.ema_weights = False  # whether it holds Polyak averages (checkpoints.restore_model sets it)

    # ---------------------------------------------------------------- validation at the edge
    def _check_images(self, x, what, dtype):
        x = tf.convert_to_tensor(x)
        expected = (None,) + self.config.image_shape
        if x.shape.rank != 4 or tuple(x.shape[1:]) != self.config.image_shape:
            raise ValueError(f"{what}: expected shape [N, {', '.join(map(str, expected[1:]))}], got {x.shape}")
        if dtype == tf.uint8 and x.dtype != tf.uint8:
            raise ValueError(f"{what}: expected uint8 images in [0, 255], got dtype {x.dtype.name}")
        if dtype == tf.float32 and not x.dtype.is_floating:
            raise ValueError(f"{what}: expected float32 continuous images in [-.5, .5) "
                             f"(use model.preprocess on uint8 images), got dtype {x.dtype.name}")
        return tf.cast(x, dtype)

    def check_labels(self, y, batch_like, runtime_checks=False):
        """int32 labels [N] for ycond models (``check_labels``), None otherwise (the label is unused).

        ``batch_like``: a tensor whose first dimension is the batch the labels go with.
        """
        if not self.config.ycond:
            return None
        if y is None:
            raise ValueError(f"y: this model is class-conditional (ycond, n_y={self.config.n_y}); "
                             "expected int labels [N], got None")
        batch_size = batch_like.shape[0] if not runtime_checks else tf.shape(batch_like)[0]
        return check_labels(y, self.config.n_y, batch_size, runtime_checks)

    def _check_eps(self, eps):
        shapes = self.config.eps_shapes()
        if not isinstance(eps, (list, tuple)) or len(eps) != len(shapes):
            raise ValueError(f"eps: expected a list of {len(shapes)} latents (one per level), got "
                             f"{type(eps).__name__} of length {len(eps) if isinstance(eps, (list, tuple)) else '-'}")
        checked = []
        for level, (e, shape) in enumerate(zip(eps, shapes)):
            e = tf.convert_to_tensor(e, tf.float32)
            if e.shape.rank != 4 or tuple(e.shape[1:]) != shape:
                raise ValueError(f"eps[{level}]: expected shape [N, {', '.join(map(str, shape))}], got {e.shape}")
            checked.append(e)
        return checked

    # ------------------------------------------------------------------------- the flow
    def _flow_to_top(self, x):
        """x [N, H, W, C] -> (split eps list, top z, log|det d(eps, z_top)/dx| [N])."""
        z = squeeze2d(x)  # [N, H/2, W/2, 4C]
        log_det = tf.zeros(tf.shape(x)[:1], x.dtype)
        eps = []
        for level, flow in enumerate(self.levels):
            z, level_log_det = flow.forward(z)
            log_det += level_log_det
            if level < len(self.splits):
                z, level_eps, split_log_det = self.splits[level].forward(z)
                eps.append(level_eps)
                log_det += split_log_det
        return eps, z, log_det

    def _encode(self, x, y) -> Encoding:
        """The flow and the top prior on checked inputs (x float32, y int32 or None)."""
        eps, z_top, log_det = self._flow_to_top(x)
        top_eps, top_log_det = self.top_prior.forward(z_top, y)
        return Encoding(eps + [top_eps], z_top, log_det + top_log_det)

    def _decode(self, eps, y) -> Decoding:
        """The inverse of ``_encode`` on checked inputs."""
        z, log_det = self.top_prior.inverse(eps[-1], y)
        for level in reversed(range(len(self.levels))):
            if level < len(self.splits):
                z, split_log_det = self.splits[level].inverse(z, eps[level])
                log_det += split_log_det
            z, level_log_det = self.levels[level].inverse(z)
            log_det += level_log_det
        return Decoding(unsqueeze2d(z), log_det)  # x [N, H, W, C]

    # ------------------------------------------------------------------ public contract
    def preprocess(self, x, noise=None):
        """uint8 [N, H, W, C] -> continuous x = floor(x / 2**(8-n_bits)) / n_bins - .5 + noise.

        noise ~ U(0, 1/n_bins) of x's shape, sampled when None (as the original, also at test time).
        """
        x = self._check_images(x, "x", tf.uint8)
        n_bins = float(self.config.n_bins)
        x = tf.cast(reduce_bits(x, self.config.n_bits_x), tf.float32) / n_bins - 0.5
        if noise is None:
            noise = tf.random.uniform(tf.shape(x), 0.0, 1.0 / n_bins)
        else:
            noise = tf.convert_to_tensor(noise, tf.float32)
            if noise.shape.rank is not None and noise.shape[1:] != x.shape[1:]:
                raise ValueError(f"noise: expected the shape of x {x.shape}, got {noise.shape}")
        return x + noise

    def postprocess(self, x):
        """Continuous x -> uint8 image, as the original: clip(floor((x + .5) * n_bins) * 256 / n_bins)."""
        n_bins = float(self.config.n_bins)
        x = tf.convert_to_tensor(x, tf.float32)
        return tf.cast(tf.clip_by_value(tf.floor((x + 0.5) * n_bins) * (256.0 / n_bins), 0, 255), tf.uint8)

    def log_prob(self, x, y=None):
        """[N] nats: density of the continuous x [N, H, W, C] in [-.5, .5)."""
        return self.encode_with_log_det(x, y).log_prob

    def bits_per_dim(self, x, y=None, noise=None):
        """[N]: the original's bits_x of uint8 images x: -objective / (log(2) * H * W * C)."""
        continuous = self.preprocess(x, noise)
        return self.bits_x(self.log_prob(continuous, y))

    def bits_x(self, log_prob):
        """[N] the original's bits_x from log p(x) [N]: -(log_prob - log(n_bins) * D) / (log(2) * D)."""
        n_dims = self.config.n_dims
        objective = log_prob - math.log(self.config.n_bins) * n_dims
        return -objective / (math.log(2.0) * n_dims)

    def encode_with_log_det(self, x, y=None) -> Encoding:
        """Continuous x [N, H, W, C] -> ``Encoding(eps, z_top, log_det)``, with log p(x) as ``.log_prob``."""
        x = self._check_images(x, "x", tf.float32)
        return self._encode(x, self.check_labels(y, x))

    def decode_with_log_det(self, eps, y=None) -> Decoding:
        """List of latents (level 0 first) -> ``Decoding(x, log_det)``, x continuous."""
        eps = self._check_eps(eps)
        return self._decode(eps, self.check_labels(y, eps[0]))

    def encode(self, x, y=None):
        """Continuous x -> list of n_levels standardised latents (level 0 first), NHWC."""
        return self.encode_with_log_det(x, y).eps

    def decode(self, eps, y=None):
        """Inverse of ``encode``: list of latents -> continuous x (before postprocess)."""
        return self.decode_with_log_det(eps, y).x

    def y_logits(self, x):
        """[N, n_y] classifier logits from the mean over H, W of the top z (ycond, weight_y > 0)."""
        if self.classifier is None:
            raise ValueError("y_logits: this model has no classifier; expected ycond=True and weight_y > 0, "
                             f"got ycond={self.config.ycond}, weight_y={self.config.weight_y}")
        x = self._check_images(x, "x", tf.float32)
        return self.logits_from_top(self._flow_to_top(x)[1])

    def logits_from_top(self, z_top):
        """[N, n_y] classifier logits from the top z [N, h, w, c] (``Encoding.z_top``): its mean over h, w."""
        return self.classifier(tf.reduce_mean(z_top, axis=[1, 2]))

    def loss_terms(self, x, y=None, noise=None):
        """The original's per-example training statistics of uint8 images x.

        Returns a dict of [N] tensors: ``loss`` = bits_x + weight_y * bits_y, ``bits_x``,
        ``bits_y`` (classification cross-entropy in bits; 0 without classifier) and
        ``pred_loss`` (classification error; 1 without classifier, as the original).
        """
        continuous = self.preprocess(x, noise)
        labels = self.check_labels(y, continuous)
        encoding = self._encode(continuous, labels)
        bits_x = self.bits_x(encoding.log_prob)
        if self.classifier is not None:
            logits = self.logits_from_top(encoding.z_top)
            bits_y = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits) / math.log(2.0)
            predicted = tf.argmax(logits, axis=1, output_type=tf.int32)
            pred_loss = 1.0 - tf.cast(tf.equal(predicted, labels), tf.float32)
        else:
            bits_y, pred_loss = tf.zeros_like(bits_x), tf.ones_like(bits_x)
        loss = bits_x + self.config.weight_y * bits_y
        return dict(zip(LOSS_TERMS, (loss, bits_x, bits_y, pred_loss)))

    def sample_eps(self, n, temperature=1.0, seed=None):
        """Standard normal latents for n images, scaled by temperature (scalar or [n]).

        ``seed``: None (stateful random draws) or a stateless seed pair [a, b] (``latents.normal``).
        """
        return latents.draw(self.config.eps_shapes(), n, temperature, latents.normal(seed))

    def sample(self, n, y=None, temperature=1.0, seed=None):
        """n uint8 images; every level's eps ~ N(0, temperature**2) (temperature scalar or [n]).

        ``seed``: None, or a stateless seed pair [a, b] that makes the draw reproducible (``sample_eps``).
        """
        if isinstance(n, (int, np.integer)) and n < 1:
            raise ValueError(f"sample: expected n >= 1, got {n}")
        temperature = tf.convert_to_tensor(temperature, tf.float32)
        if temperature.shape.rank not in (0, 1):
            raise ValueError(f"temperature: expected a scalar or shape [n], got shape {temperature.shape}")
        eps = self.sample_eps(n, temperature, seed)
        return self.postprocess(self.decode(eps, y))

    def initialize(self, x, y=None, noise=None):
        """Data-dependent init of every ActNorm from one batch of uint8 images (once).

        As the original: one forward pass in which each ActNorm sets b = -mean and
        logs = log(1 / (std + 1e-6)) from its input, given the already-initialised layers below.
        """
        if bool(self.initialized.numpy()):
            raise RuntimeError("Glow.initialize: the model is already initialised (data-dependent init runs "
                               "once; to start again build a new Glow)")
        continuous = self.preprocess(x, noise)
        labels = self.check_labels(y, continuous)
        with data_dependent_init():
            self._encode(continuous, labels)
        self.initialized.assign(True)

    def call(self, x, y=None):
        """Keras entry point: the per-example log-density of continuous x."""
        return self.log_prob(x, y)

    @property
    def bijector(self):
        """tfb.Bijector: forward = flattened standardised latent [N, D] -> continuous x [N, H, W, C]."""
        from glow_tf.bijectors import GlowBijector  # a fresh adapter: no model -> bijector -> model cycle
        return GlowBijector(self)

    def distribution(self, y=None):
        """TransformedDistribution(standard Normal [D], bijector), event shape [H, W, C]."""
        from glow_tf.bijectors import glow_distribution
        return glow_distribution(self, y)

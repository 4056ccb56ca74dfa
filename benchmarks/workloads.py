"""The shared benchmark workload: the same Glow built with glow_tf and with tfp.bijectors.Glow.

Both models: 32x32x3 images, 3 levels (TFP: num_glow_blocks=3), depth 8 flow steps per level
(num_steps_per_block=8), coupling network width 128, affine coupling, invertible 1x1 conv.

glow_tf: ``GlowConfig(image_size=32, n_levels=3, depth=8, width=128, flow_permutation=2,
flow_coupling=1)`` (plain-W 1x1 conv, split priors and top prior as the original).

TFP: ``tfb.Glow(output_shape=(32, 32, 3), num_glow_blocks=3, num_steps_per_block=8,
coupling_bijector_fn=lambda shape: tfb.GlowDefaultNetwork(shape, num_hidden=128),
exit_bijector_fn=tfb.GlowDefaultExitNetwork, grab_after_block=(0.5, 0.5, 0.0),
use_actnorm=True)``: per step actnorm -> LU-parameterised 1x1 conv -> affine coupling whose
network is conv3x3(128) -> relu -> conv1x1(128) -> relu -> conv3x3 (zeros), and at each exit
a one-conv3x3 affine coupling of the leaving half on the staying half (the split prior's
counterpart). Its density is ``TransformedDistribution(Sample(Normal(0, 1), [3072]), glow)``.

Both see the same continuous images ``x / 256 - .5 + U(0, 1/256)`` and train on the mean
bits/dim with the same optimiser (glow_tf.optim's Adamax + Polyak average), so they do the same work per image up to small per-layer
differences (TFP's 1x1 conv is LU-parameterised, glow_tf's is a plain W as the original).
"""
import functools
import math

import glow_tf.cli  # noqa: F401  first: the programs' environment (glow_tf/cli/console.py)
import glow_tf
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from glow_tf import optim

tfb, tfd = tfp.bijectors, tfp.distributions

IMAGE_SHAPE = (32, 32, 3)
N_LEVELS, DEPTH, WIDTH = 3, 8, 128
N_DIMS = int(np.prod(IMAGE_SHAPE))
BITS_PER_NAT = 1.0 / (math.log(2.0) * N_DIMS)
LEARNING_RATE = 1e-3
POLYAK_DECAY = 0.999  # the original's beta2 = 1 - 1 / (train_its * polyak_epochs), for 1000 its
PRECISIONS = ("float32", "mixed_bfloat16")  # glow_tf's (TFP's layers take no Keras policy)
ENGINES = {"XLA": True, "graph": False}  # name -> jit_compile; "graph": TensorFlow's own kernels (oneDNN on CPU)


def glow_tf_config(depth=DEPTH, gradient_checkpointing=False, precision=None):
    """``precision`` None: the config's default (bench_scale also builds glow_tf from before it had one)."""
    return glow_tf.GlowConfig(image_size=IMAGE_SHAPE[0], n_channels=IMAGE_SHAPE[2], n_levels=N_LEVELS,
                              depth=depth, width=WIDTH, flow_permutation=2, flow_coupling=1,
                              gradient_checkpointing=gradient_checkpointing,
                              **({} if precision is None else {"precision": precision}))


def images(batch, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (batch,) + IMAGE_SHAPE).astype(np.uint8)


def preprocess(x_uint8):
    """The original's 8-bit preprocessing with dequantisation noise, for the TFP side."""
    x = tf.cast(x_uint8, tf.float32) / 256.0 - 0.5
    return x + tf.random.uniform(tf.shape(x), 0.0, 1.0 / 256.0)


# --------------------------------------------------------------------------- the models
def make_glow_tf(batch, depth=DEPTH, gradient_checkpointing=False, precision=None):
    """An initialised glow_tf Glow (data-dependent init on one batch)."""
    model = glow_tf.Glow(glow_tf_config(depth, gradient_checkpointing, precision))
    model.initialize(images(batch, seed=1))
    return model


def make_tfp_glow(batch, depth=DEPTH):
    """tfb.Glow as described in the module docstring, its density, actnorm initialised."""
    glow = tfb.Glow(output_shape=IMAGE_SHAPE, num_glow_blocks=N_LEVELS, num_steps_per_block=depth,
                    coupling_bijector_fn=functools.partial(tfb.GlowDefaultNetwork, num_hidden=WIDTH),
                    exit_bijector_fn=tfb.GlowDefaultExitNetwork, grab_after_block=(0.5, 0.5, 0.0),
                    use_actnorm=True, seed=0)
    base = tfd.Sample(tfd.Normal(0.0, 1.0), sample_shape=[N_DIMS])
    dist = tfd.TransformedDistribution(base, glow)
    dist.log_prob(preprocess(images(batch, seed=1)))  # TFP's actnorm initialises on first use
    return glow, dist


def glow_tf_loss(model):
    return lambda x: tf.reduce_mean(model.loss_terms(x)["loss"])


def tfp_loss(dist):
    # bits/dim of the discrete image = -(log p(x) - log(256) * D) / (log(2) * D)
    return lambda x: -tf.reduce_mean(dist.log_prob(preprocess(x)) - math.log(256.0) * N_DIMS) * BITS_PER_NAT


# ----------------------------------------------------------------------- training step
def make_train_step(loss_fn, variables, jit_compile=True):
    """One training step as the original's: loss, gradients of every trainable variable,
    glow_tf.optim's Adamax update and the Polyak average (the same for both sides), compiled
    whole by XLA (``jit_compile``) or run as a TensorFlow graph (oneDNN's kernels on CPU)."""
    variables = [v for v in variables if v.trainable]
    optimizer = optim.Adamax(variables, beta2=POLYAK_DECAY)
    average = optim.PolyakAverage(variables, decay=POLYAK_DECAY)

    @tf.function(jit_compile=jit_compile)
    def step(x):
        with tf.GradientTape() as tape:
            loss = loss_fn(x)
        optimizer.apply(variables, tape.gradient(loss, variables), LEARNING_RATE)
        average.update(variables)
        return loss

    return step


def glow_tf_train_step(batch, depth=DEPTH, gradient_checkpointing=False, precision=None, jit_compile=True):
    model = make_glow_tf(batch, depth, gradient_checkpointing, precision)
    return make_train_step(glow_tf_loss(model), model.trainable_variables, jit_compile)


def tfp_train_step(batch, depth=DEPTH, jit_compile=True):
    glow, dist = make_tfp_glow(batch, depth)
    return make_train_step(tfp_loss(dist), glow.trainable_variables, jit_compile)



# ------------------------------------------------------------------------ FLOP count
def conv_flops_per_image(depth=DEPTH):
    """Multiply-adds x 2 of every convolution and 1x1 conv in one forward pass of one image.

    Per flow step at a level of shape (H, W, C): the 1x1 conv (C x C per pixel) and the
    coupling network conv3x3 C/2 -> width, conv1x1 width -> width, conv3x3 width -> C (affine:
    shift and scale); per split, its prior's conv3x3 C/2 -> C (TFP's exit coupling has the
    same shape). The edge-bias border channel and element-wise work are not counted. The same
    count is used for both implementations: they run the same convolutions.
    """
    total = 0
    shapes = glow_tf_config(depth).level_shapes()
    for level, (height, width, channels) in enumerate(shapes):
        pixels = height * width
        step = channels * channels + 9 * (channels // 2) * WIDTH + WIDTH * WIDTH + 9 * WIDTH * channels
        total += depth * step * pixels
        if level < len(shapes) - 1:
            total += 9 * (channels // 2) * channels * pixels
    return 2 * total


# Training: forward + backward counted as 3 x forward (the backward pass computes the gradients
# of both the inputs and the weights of every convolution, each as costly as the forward).
TRAIN_FLOPS_FACTOR = 3

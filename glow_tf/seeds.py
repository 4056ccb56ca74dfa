"""Every seed of a training run (and of inference mode), derived from ``--seed``.

    Python, numpy and TensorFlow's global seed   = seed   (``seed_everything``: the conv kernels'
                                                            N(0, .05) initial values, data order)
    flow step i of level l's permutation         = numpy RandomState([seed, l, i])  (GlowConfig.seed)
    data-dependent init's dequantisation noise   = stateless seed (seed, INIT_SALT)
    test batch i's dequantisation noise          = stateless seed (seed, EVAL_SALT + i)
    training step k's dequantisation noise       = the checkpointed tf.random.Generator(seed)'s k-th seeds
    sample grid batch b of draw d                = stateless seed (seed, d * n_batches + b)

Stateless seeds make the test passes, the init and the sample grids draw the same numbers in
every run and after every resume; the noise is drawn outside XLA, whose random bits differ.
"""
import tensorflow as tf
import tf_keras

INIT_SALT, EVAL_SALT = 1, 2 ** 20


def seed_everything(seed, deterministic=False):
    """Seeds Python, numpy and TensorFlow (initialisers) as the original; ``deterministic``: op determinism."""
    tf_keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def stateless_noise(shape, seed, n_bins):
    """U(0, 1/n_bins) dequantisation noise from a stateless seed pair."""
    return tf.random.stateless_uniform(shape, seed, 0.0, 1.0 / n_bins)


def init_noise_seed(seed):
    """The stateless seed of data-dependent init's noise."""
    return [seed, INIT_SALT]


def eval_noise_seed(seed, batch_index):
    """The stateless seed of test batch ``batch_index``'s noise: the same in every test pass."""
    return tf.constant([seed, EVAL_SALT + batch_index], tf.int64)


def sample_seed(seed, index):
    """The stateless seed of the ``index``-th sample batch drawn (``Trainer.sample_grids``)."""
    return tf.constant([seed, index], tf.int64)

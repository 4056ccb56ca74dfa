"""The original's inference mode (train.py --inference): encode the test set with a trained model.

    glow-train --inference --restore_path logs/mnist --problem mnist --data_dir DIR --logdir out

writes ``LOGDIR/latents.npz`` (``infer``): ``z`` [N, D] float32 (every level's eps flattened and
joined, level 0 first: ``latents.flatten``, the original's flatten_eps), ``y`` [N] int32 and ``x``
[N, H, W, C] uint8, the images decoded from z (the original's x.npy). The dequantisation noise of
test batch i is seeded as in the test passes of training (``seeds.eval_noise_seed``).
"""
import os

import numpy as np
import tensorflow as tf

from glow_tf import checkpoints, files, latents, openai, progress, seeds
from glow_tf.model import Glow
from glow_tf.plan import make_data
from glow_tf.train_config import TrainConfig


def load_for_inference(config: TrainConfig, info) -> Glow:
    """The --restore_path model: a glow_tf run (its own config) or an original checkpoint (the flags' model
    for the data ``info``)."""
    _, prefix = checkpoints.resolve(config.restore_path)
    if checkpoints.is_glow_tf_checkpoint(prefix):
        return checkpoints.restore_model(config.restore_path, use_ema=config.use_ema_for_eval)
    return openai.load_checkpoint(prefix, config.model_for(info).to_dict(),
                                  use_ema=config.use_ema_for_eval and openai.has_ema(prefix))


def infer(config: TrainConfig) -> str:
    """Encodes the test set of ``config`` with the --restore_path model; returns latents.npz's path."""
    if not config.inference:
        raise ValueError("--inference: expected True for inference.infer (train_lib.train_and_evaluate trains)")
    seeds.seed_everything(config.seed, config.deterministic)
    datasets, plan = make_data(config)
    info = datasets.info
    model = load_for_inference(config, info)
    if model.config.image_size != info.image_size:
        raise ValueError(f"--inference: the model is for {model.config.image_size}x{model.config.image_size} "
                         f"images, the data ({config.data.problem}) are {info.image_size}x{info.image_size}; "
                         "pass --image_size")

    @tf.function(jit_compile=config.xla)
    def encode_decode(x, y, noise):
        y = y if model.config.ycond else None
        eps = model.encode(model.preprocess(x, noise), y)
        return latents.flatten(eps), model.postprocess(model.decode(eps, y))  # [N, D], [N, H, W, C]

    zs, xs, ys = [], [], []
    n_batches = -(-info.n_test // plan.local_batch_test)
    with datasets.reading():
        for index, (x, y) in enumerate(progress.bar(datasets.test, desc="encoding the test set", total=n_batches)):
            noise = seeds.stateless_noise(tf.shape(x), seeds.eval_noise_seed(config.seed, index), model.config.n_bins)
            z, x_decoded = encode_decode(x, y, noise)
            zs.append(z.numpy())
            xs.append(x_decoded.numpy())
            ys.append(y.numpy())
    path = os.path.join(os.path.abspath(config.logdir), "latents.npz")
    files.write_atomic(path, lambda f: np.savez(f, z=np.concatenate(zs), y=np.concatenate(ys).astype(np.int32),
                                                x=np.concatenate(xs)))
    return path

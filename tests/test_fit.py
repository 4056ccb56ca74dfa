"""Keras training: Glow.compile / Glow.fit train the original objective (train_step, test_step)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import glow_tf
from conftest import REPO_ROOT
from glow_tf import data, optim

CONFIG = glow_tf.GlowConfig(image_size=16, n_levels=2, depth=2, width=16, n_bits_x=5, flow_coupling=1,
                            ycond=True, learntop=True, weight_y=0.1)


def _digits():
    return data.make_datasets(data.DataConfig(problem="digits", global_batch_train=32, global_batch_test=100,
                                              init_batch=64))


@pytest.mark.parametrize("make_optimizer", [
    lambda: optim.KerasAdamax(2e-3, beta2=0.99, use_ema=True, ema_momentum=0.99),
    lambda: keras.optimizers.Adam(1e-3),
], ids=["original_adamax_polyak", "stock_adam"])
def test_fit_trains_the_original_objective_with_keras_callbacks(tmp_path, make_optimizer):
    datasets = _digits()
    model = glow_tf.Glow(CONFIG)
    model.compile(optimizer=make_optimizer())
    callbacks = [keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt"), save_weights_only=True),
                 keras.callbacks.TensorBoard(str(tmp_path / "tb"))]
    history = model.fit(datasets.train, epochs=3, steps_per_epoch=12, validation_data=datasets.test,
                        callbacks=callbacks, verbose=0).history
    assert bool(model.initialized.numpy())  # data-dependent init ran on the first batch
    assert set(history) >= {"loss", "bits_x", "bits_y", "pred_loss", "val_loss", "val_bits_x"}
    assert history["loss"][-1] < history["loss"][0] - 0.2, history["loss"]  # falls on real digits
    assert history["val_bits_x"][-1] < history["val_bits_x"][0], history["val_bits_x"]
    # loss = bits_x + weight_y * bits_y, as loss_terms (epoch means of each)
    np.testing.assert_allclose(history["loss"], np.add(history["bits_x"], 0.1 * np.asarray(history["bits_y"])),
                               rtol=1e-5)
    assert os.path.exists(str(tmp_path / "ckpt.index")) and os.listdir(str(tmp_path / "tb"))
    # The metrics' counters are not model weights (checkpoint import and export zip them).
    assert len(model.variables) == len(glow_tf.Glow(CONFIG).variables)
    x, y = next(iter(datasets.test))
    evaluated = model.evaluate(x, y, verbose=0, return_dict=True)
    np.testing.assert_allclose(evaluated["bits_x"], float(tf.reduce_mean(model.loss_terms(x, y)["bits_x"])),
                               atol=0.02)  # fresh dequantisation noise


def test_keras_adamax_equals_the_originals_update():
    rng = np.random.RandomState(0)
    values = [rng.standard_normal([3, 4]).astype(np.float32), rng.standard_normal([5]).astype(np.float32)]
    grads = [[rng.standard_normal(v.shape).astype(np.float32) for v in values] for _ in range(3)]
    ours = [tf.Variable(v) for v in values]
    theirs = [tf.Variable(v) for v in values]
    reference = optim.Adamax(ours, beta2=0.9, beta1=0.8, weight_decay=0.999)
    keras_adamax = optim.KerasAdamax(0.01, beta1=0.8, beta2=0.9, multiplicative_decay=0.999)
    for step_grads in grads:
        reference.apply(ours, step_grads, 0.01)
        keras_adamax.apply_gradients(zip(step_grads, theirs))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, atol=1e-7)
    assert not np.allclose(ours[0].numpy(), values[0])


_MIRRORED = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import glow_tf
from glow_tf import data, optim
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
datasets = data.make_datasets(data.DataConfig(problem="digits", global_batch_train=32, global_batch_test=100, init_batch=64))
with strategy.scope():
    model = glow_tf.Glow(glow_tf.GlowConfig(image_size=16, n_levels=2, depth=2, width=16, n_bits_x=5, flow_coupling=1))
    model.compile(optimizer=optim.KerasAdamax(2e-3, beta2=0.99))
history = model.fit(datasets.train, epochs=2, steps_per_epoch=10, verbose=0).history
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "loss": history["loss"],
                  "mirrored": type(model.trainable_variables[0]).__name__}))
"""


def test_fit_under_mirrored_strategy_with_two_cpu_replicas():
    out = subprocess.run([sys.executable, "-c", _MIRRORED], capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2 and result["mirrored"] == "MirroredVariable"
    assert all(np.isfinite(result["loss"])) and result["loss"][-1] < result["loss"][0]

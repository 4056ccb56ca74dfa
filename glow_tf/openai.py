"""Import of checkpoints written by the original OpenAI Glow code (TF1 ``tf.train.Saver``).

The original names its variables by variable scope, for example::

    model/0/0/actnorm_center/b          level 0, step 0, actnorm bias
    model/0/0/invconv/W                 1x1 conv weight (shuffle/indices for flow_permutation 1)
    model/0/0/f1/l_1/W                  coupling network, first conv
    model/pool0/conv/W                  split prior of level 0
    model/prior/p/W, model/prior/y_emb/W  learned / class-conditional top prior
    model/classifier/W                  ycond classifier head

``openai_variable_names`` gives that name for every glow_tf variable; ``load_checkpoint``
builds a Glow from the checkpoint's hps and assigns every model variable, failing with the
full list of missing, unmapped or mis-shaped variables. Optimiser slots (``Variable_*``) are
ignored; the Polyak averages (``<name>/ExponentialMovingAverage``) load with ``use_ema=True``.
"""
import os
from typing import NamedTuple, Optional

import numpy as np
import tensorflow as tf

from glow_tf import files
from glow_tf.config import GlowConfig, read_openai_hparams
from glow_tf.layers import (ActNorm, ConvActNorm, Coupling, InvertibleConv1x1, InvertibleConv1x1LU, LinearZeros,
                            Reverse, Shuffle, ZeroConv2D)
from glow_tf.model import Glow

EMA_SUFFIX = "/ExponentialMovingAverage"


class Target(NamedTuple):
    """Where an original variable lives in glow_tf: ``variable`` itself, or its row ``step``.

    A flow step's variables live in its level's stacks (``layers.FlowScan``), one row per step.
    """
    variable: tf.Variable
    step: Optional[int] = None

    @property
    def shape(self):
        return self.variable.shape if self.step is None else self.variable.shape[1:]

    @property
    def trainable(self):
        return self.variable.trainable

    def value(self):
        """The current value, as numpy (of a stack, only its row ``step`` is read)."""
        return (self.variable if self.step is None else tf.gather(self.variable, self.step)).numpy()


def _layer_names(layer, prefix):
    """{original name: variable} for one glow_tf layer under the original scope ``prefix``."""
    if isinstance(layer, ActNorm):
        return {f"{prefix}_center/b": layer.bias, f"{prefix}_scale/logs": layer.scaled_logs}
    if isinstance(layer, ConvActNorm):
        return {f"{prefix}/W": layer.kernel, **_layer_names(layer.actnorm, f"{prefix}/actnorm")}
    if isinstance(layer, (ZeroConv2D, LinearZeros)):
        return {f"{prefix}/W": layer.kernel, f"{prefix}/b": layer.bias, f"{prefix}/logs": layer.scaled_logs}
    if isinstance(layer, InvertibleConv1x1):
        return {f"{prefix}/W": layer.kernel}
    if isinstance(layer, InvertibleConv1x1LU):
        return {f"{prefix}/{name}": getattr(layer, attr) for name, attr in
                [("P", "p"), ("L", "lower"), ("sign_S", "sign_s"), ("log_S", "log_s"), ("U", "upper")]}
    if isinstance(layer, Shuffle):
        return {f"{prefix}/indices": layer.indices, f"{prefix}/indices_inverse": layer.indices_inverse}
    if isinstance(layer, Reverse):
        return {}
    if isinstance(layer, Coupling):
        net = layer.f1
        return {name: v for sub, sub_name in [(net.l_1, "l_1"), (net.l_2, "l_2"), (net.l_last, "l_last")]
                for name, v in _layer_names(sub, f"{prefix}/f1/{sub_name}").items()}
    raise TypeError(f"no original name for layer {type(layer).__name__}")


def openai_variable_names(model: Glow) -> dict:
    """{original checkpoint name: ``Target``} for every variable of the model."""
    names = {}
    for level, scan in enumerate(model.levels):
        template = scan.template
        step_names = {**_layer_names(template.actnorm, "actnorm"),
                      **_layer_names(template.permutation, _permutation_scope(template.permutation)),
                      **_layer_names(template.coupling, "")}
        for step in range(scan.depth):
            names.update({f"model/{level}/{step}/{name.lstrip('/')}": Target(scan.stack_of(v), step)
                          for name, v in step_names.items()})
    others = {}
    for level, split in enumerate(model.splits):
        others.update(_layer_names(split.conv, f"model/pool{level}/conv"))
    if model.top_prior.learntop:
        others.update(_layer_names(model.top_prior.p, "model/prior/p"))
    if model.top_prior.ycond:
        others.update(_layer_names(model.top_prior.y_emb, "model/prior/y_emb"))
    if model.classifier is not None:
        others.update(_layer_names(model.classifier, "model/classifier"))
    names.update({name: Target(v) for name, v in others.items()})
    return names


def _permutation_scope(layer):
    return {Reverse: "reverse", Shuffle: "shuffle"}.get(type(layer), "invconv")


def load_checkpoint(ckpt_prefix, hparams, use_ema=False) -> Glow:
    """A Glow with the weights of an original OpenAI Glow checkpoint.

    Args:
      ckpt_prefix: the checkpoint prefix (e.g. ``logs/model_best_loss.ckpt``) or its directory.
      hparams: the original's hps: a dict, a JSON file, or its ``logs/train.txt``.
      use_ema: load the Polyak averages (``.../ExponentialMovingAverage``) instead of the raw
        weights of the trainable variables (the original's ``model.save`` writes both;
        non-trainable variables have no average and load raw).
    """
    if isinstance(hparams, (str, os.PathLike)):
        hparams = read_openai_hparams(hparams)
    config = GlowConfig.from_openai_hparams(hparams)
    prefix = files.checkpoint_prefix(ckpt_prefix)
    reader = tf.train.load_checkpoint(prefix)
    stored_shapes = reader.get_variable_to_shape_map()
    model = Glow(config)
    wanted = openai_variable_names(model)

    # The original averages only trainable variables (optim.polyak over tf.trainable_variables()):
    # non-trainable ones (shuffle indices, LU's P and sign_S) have no shadow and load raw.
    def stored_key(name):
        return name + EMA_SUFFIX if use_ema and wanted[name].trainable else name

    stored_model_names = {name[:-len(EMA_SUFFIX)] if name.endswith(EMA_SUFFIX) else name
                          for name in stored_shapes if name.startswith("model/")
                          and (use_ema or not name.endswith(EMA_SUFFIX))}
    problems = []
    missing = sorted(name for name in wanted if stored_key(name) not in stored_shapes)
    if missing:
        problems.append(f"missing from the checkpoint: {[stored_key(name) for name in missing]}")
    unmapped = sorted(stored_model_names - set(wanted))
    if unmapped:
        problems.append(f"in the checkpoint but not in a model with these hparams: {unmapped}")
    for name in sorted(set(wanted) - set(missing)):
        stored, expected = list(stored_shapes[stored_key(name)]), wanted[name].shape.as_list()
        if stored != expected:
            problems.append(f"shape mismatch for {name}: checkpoint {stored}, model {expected}")
    if problems:
        raise ValueError(f"load_checkpoint({prefix!r}) with config {config}:\n  " + "\n  ".join(problems))

    values = {}  # variable ref -> its new value; a stack is filled row by row, then assigned once
    for name, (variable, step) in wanted.items():
        stored = np.asarray(reader.get_tensor(stored_key(name))).astype(variable.dtype.as_numpy_dtype)
        if step is None:
            values[variable.ref()] = stored
        else:
            values.setdefault(variable.ref(), np.zeros(variable.shape, stored.dtype))[step] = stored
    for ref, value in values.items():
        ref.deref().assign(value)
    model.initialized.assign(True)
    return model

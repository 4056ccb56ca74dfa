"""Import of checkpoints written by the original OpenAI Glow code (TF1 ``tf.train.Saver``).

The original names its variables by variable scope, for example::

    model/0/0/actnorm_center/b          level 0, step 0, actnorm bias
    model/0/0/invconv/W                 1x1 conv weight (shuffle/indices for flow_permutation 1)
    model/0/0/f1/l_1/W                  coupling network, first conv
    model/pool0/conv/W                  split prior of level 0
    model/prior/p/W, model/prior/y_emb/W  learned / class-conditional top prior
    model/classifier/W                  ycond classifier head

and saves beside them its optimiser state and Polyak averages::

    Variable, Variable_1, ...           Adam(ax)'s step counter t, then per weight m2 and m1
    <name>/ExponentialMovingAverage     the Polyak average of weight <name>

``openai_variable_names`` gives the original name of every glow_tf variable; ``load_checkpoint``
builds a Glow from the checkpoint's hps and assigns every model variable (or their averages),
failing with the full list of missing, unmapped or mis-shaped variables;
``restore_training_state`` puts a whole original training state (weights, optimiser slots and
t, averages) into a glow_tf model, optimiser and ``PolyakAverage``, so that training continues
as the original's ``--restore_path`` continued it.
"""
import itertools
import os
import re
from typing import NamedTuple, Optional

import numpy as np
import tensorflow as tf

from glow_tf import checkpoints, files
from glow_tf.config import GlowConfig, read_openai_hparams
from glow_tf.layers import (ActNorm, ConvActNorm, Coupling, InvertibleConv1x1, InvertibleConv1x1LU, LinearZeros,
                            Reverse, Shuffle, ZeroConv2D)
from glow_tf.model import Glow

EMA_SUFFIX = "/ExponentialMovingAverage"
# TF1's name for an unnamed tf.Variable; later ones are made unique as Variable_1, Variable_2, ...
UNNAMED_VARIABLE = "Variable"
_UNNAMED_VARIABLE_NAME = re.compile(rf"^{UNNAMED_VARIABLE}(_\d+)?$")


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

    def same_place_in(self, variable):
        """The Target at the same place (row) of ``variable``, a slot or average shaped as this variable."""
        return Target(variable, self.step)


def _layer_names(layer, prefix):
    """{original name: variable} for one glow_tf layer under the original scope ``prefix``, in
    the order the original creates them."""
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
    """{original checkpoint name: ``Target``} for every variable of the model.

    In the order the original's graph creates them (model.py's ``_f_loss``): level by level, its
    flow steps, then its split prior ``pool<level>``; then the top prior and the classifier. So
    the trainable ones come in the original's ``tf.trainable_variables()`` order
    (``trainable_names``).
    """
    names = {}
    for level, scan in enumerate(model.levels):
        template = scan.template
        step_names = {**_layer_names(template.actnorm, "actnorm"),
                      **_layer_names(template.permutation, _permutation_scope(template.permutation)),
                      **_layer_names(template.coupling, "")}
        for step in range(scan.depth):
            names.update({f"model/{level}/{step}/{name.lstrip('/')}": Target(scan.stack_of(v), step)
                          for name, v in step_names.items()})
        if level < len(model.splits):
            names.update({name: Target(v) for name, v in
                          _layer_names(model.splits[level].conv, f"model/pool{level}/conv").items()})
    others = {}
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


def trainable_names(model: Glow) -> list:
    """The original names of the model's weights in the original's ``tf.trainable_variables()``
    order: the ``params`` its optimiser and Polyak average get, in the order they name their slots."""
    return [name for name, target in openai_variable_names(model).items() if target.trainable]


def per_weight_targets(model: Glow, per_variable) -> dict:
    """{original name of each trainable weight: the Target of its own entry of ``per_variable``}.

    Args:
      per_variable: one variable or tensor per ``model.trainable_variables``, shaped as it (the
        weights themselves, an optimiser's slots, the Polyak averages, gradients).
    """
    position = {v.ref(): i for i, v in enumerate(model.trainable_variables)}
    return {name: target.same_place_in(per_variable[position[target.variable.ref()]])
            for name, target in openai_variable_names(model).items() if target.trainable}


def optimizer_slot_names(param_names, beta1):
    """(t's name, {weight name: (m1's name or None, m2's name)}) in an original checkpoint.

    The original's optimisers (optim.py's adamax, adam and adam2 alike) create
    ``t = tf.Variable(1., 'adam_t')``, then for each weight of ``params`` in order
    ``mom2 = tf.Variable(zeros, w.name + '_adam_m2')`` and, only when beta1 > 0, ``mom1`` the
    same way. tf.Variable's second positional argument is ``trainable``, not the name, so TF1
    names them ``Variable``, ``Variable_1``, ... in creation order, and only that order links a
    slot to its weight. Nothing in the checkpoint says which of the three optimisers wrote it
    (adam's m2 holds squares where adamax's holds a max-norm), as in the original.

    Args:
      param_names: the weights in the original's ``params`` order (``trainable_names``).
      beta1: the run's beta1 (0: no m1 slots).
    """
    names = (f"{UNNAMED_VARIABLE}_{i}" if i else UNNAMED_VARIABLE for i in itertools.count())
    t_name = next(names)
    slots = {}
    for name in param_names:
        m2_name = next(names)
        slots[name] = (next(names) if beta1 > 0 else None, m2_name)
    return t_name, slots


def _check_model_names(prefix, stored_shapes, wanted, stored_key, config):
    """A ValueError listing every model variable missing, unmapped or mis-shaped in the checkpoint.

    Args:
      stored_shapes: the checkpoint's {name: shape}.
      wanted: ``openai_variable_names`` of the model.
      stored_key: original name -> the checkpoint name read for it (its average's with use_ema).
    """
    stored_model_names = {name[:-len(EMA_SUFFIX)] if name.endswith(EMA_SUFFIX) else name
                          for name in stored_shapes if name.startswith("model/")}
    problems = []
    missing = sorted(name for name in wanted if stored_key(name) not in stored_shapes)
    if missing:
        problems.append(f"missing from the checkpoint: {[stored_key(name) for name in missing]}")
    unmapped = sorted(stored_model_names - set(wanted))
    if unmapped:
        problems.append(f"in the checkpoint but not in a model with these hparams: {unmapped}")
    problems += _shape_problems(stored_shapes, {stored_key(name): target for name, target in wanted.items()
                                                if name not in missing})
    if problems:
        raise ValueError(f"load_checkpoint({prefix!r}) with config {config}:\n  " + "\n  ".join(problems))


def _shape_problems(stored_shapes, targets):
    """['shape mismatch for NAME: ...'] for every {checkpoint name: Target} whose shapes differ."""
    return [f"shape mismatch for {name}: checkpoint {list(stored_shapes[name])}, model {target.shape.as_list()}"
            for name, target in sorted(targets.items()) if list(stored_shapes[name]) != target.shape.as_list()]


def _assign(reader, pairs):
    """Assigns every (checkpoint name, Target) pair; a stack is filled row by row, then assigned once."""
    values = {}  # variable ref -> its new value
    for name, (variable, step) in pairs:
        stored = np.asarray(reader.get_tensor(name)).astype(variable.dtype.as_numpy_dtype)
        if step is None:
            values[variable.ref()] = stored
        else:
            values.setdefault(variable.ref(), variable.numpy())[step] = stored
    for ref, value in values.items():
        ref.deref().assign(value)


def _model_targets(prefix, reader, model, use_ema):
    """{checkpoint name: Target} of every model variable (checked), its average's with ``use_ema``.

    The original averages only trainable variables (optim.polyak over tf.trainable_variables()):
    non-trainable ones (shuffle indices, LU's P and sign_S) have no average and load raw.
    """
    wanted = openai_variable_names(model)

    def stored_key(name):
        return name + EMA_SUFFIX if use_ema and wanted[name].trainable else name

    _check_model_names(prefix, reader.get_variable_to_shape_map(), wanted, stored_key, model.config)
    return {stored_key(name): target for name, target in wanted.items()}


def has_ema(prefix):
    """Whether an original checkpoint holds the Polyak averages (``.../ExponentialMovingAverage``)."""
    return any(name.endswith(EMA_SUFFIX) for name in checkpoints.variable_names(prefix))


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
    prefix = files.checkpoint_prefix(ckpt_prefix)
    reader = tf.train.load_checkpoint(prefix)
    model = Glow(GlowConfig.from_openai_hparams(hparams))
    _assign(reader, _model_targets(prefix, reader, model, use_ema).items())
    model.initialized.assign(True)
    return model


def restore_training_state(prefix, model: Glow, optimizer, average) -> str:
    """Everything an original checkpoint holds, into glow_tf's training state; returns what it held.

    The original's ``--restore_path`` restores every variable of its graph: the weights, the
    optimiser's t and slots (``optimizer_slot_names``) and the Polyak averages, so that training
    goes on from the state that run saved. Here they go into ``model``, ``optimizer`` and
    ``average``. A checkpoint without averages starts them at its weights (as a new run starts
    them after its initialisation); one without optimiser state leaves the optimiser as it is.

    Args:
      prefix: the checkpoint prefix.
      model: a Glow with the checkpoint's model hps (else a ValueError lists the differences).
      optimizer: an ``optim.AdamFamily`` over ``model.trainable_variables`` (its slots in that order).
      average: an ``optim.PolyakAverage`` over ``model.trainable_variables``.
    """
    reader = tf.train.load_checkpoint(prefix)
    stored_shapes = reader.get_variable_to_shape_map()
    targets = _model_targets(prefix, reader, model, use_ema=False)
    params = trainable_names(model)
    state, restored = {}, ["weights"]
    has_averages = any(name.endswith(EMA_SUFFIX) for name in stored_shapes)
    if has_averages:
        shadows = per_weight_targets(model, average.shadows)
        state.update({name + EMA_SUFFIX: shadows[name] for name in params})
        restored.append("Polyak average")
    found = sorted(name for name in stored_shapes if _UNNAMED_VARIABLE_NAME.match(name))
    if found:
        t_name, slots = optimizer_slot_names(params, optimizer.beta1)
        _check_slot_layout(prefix, found, t_name, slots, optimizer.beta1)
        state[t_name] = Target(optimizer.t)
        m1 = per_weight_targets(model, optimizer.m1) if optimizer.m1 else {}
        m2 = per_weight_targets(model, optimizer.m2)
        for name, (m1_name, m2_name) in slots.items():
            state[m2_name] = m2[name]
            if m1_name is not None:
                state[m1_name] = m1[name]
        restored.append(f"optimizer state (t = {float(reader.get_tensor(t_name)):g}, moments)")
    missing = sorted(name for name in state if name not in stored_shapes)
    problems = ([f"missing from the checkpoint: {missing}"] if missing else []) + _shape_problems(
        stored_shapes, {name: target for name, target in state.items() if name not in missing})
    if problems:
        raise ValueError(f"restore_training_state({prefix!r}):\n  " + "\n  ".join(problems))
    started_averages = [] if has_averages else list(per_weight_targets(model, average.shadows).items())
    _assign(reader, list(targets.items()) + list(state.items()) + started_averages)
    model.initialized.assign(True)
    return ", ".join(restored)


def _check_slot_layout(prefix, found, t_name, slots, beta1):
    """A ValueError unless the checkpoint's unnamed variables are exactly t and the slots of ``slots``."""
    expected = {t_name} | {name for pair in slots.values() for name in pair if name is not None}
    if set(found) == expected:
        return
    per_weight = {1 + len(slots): " (t and one slot per weight: written with --beta1 0)",
                  1 + 2 * len(slots): " (t and two slots per weight: written with --beta1 > 0)"}
    raise ValueError(
        f"{prefix}: expected the original optimiser state of a run with --beta1 {beta1} for these {len(slots)} "
        f"weights: t and {2 if beta1 > 0 else 1} slot(s) per weight, {len(expected)} variables named "
        f"{UNNAMED_VARIABLE}, {UNNAMED_VARIABLE}_1, ...; found {len(found)}{per_weight.get(len(found), '')}. "
        "Restore with the --beta1 (zero or not) of the run that wrote it.")

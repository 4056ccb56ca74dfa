"""The one interface every flow layer implements, a chain of flow layers, and the context
flow layers read.

A flow layer is an invertible map between the data side ``x`` and the latent side ``z`` with
no hidden state between calls:

    forward(x, cond)  -> (z, log|det dz/dx|)   the original's reverse=False direction
    inverse(z, cond)  -> (x, log|det dx/dz|)   the original's reverse=True direction

Log-determinants have shape [N] (one per example). ``cond`` is an optional per-example
conditioning tensor that conditional layers may use; the Glow layers here ignore it.

Besides its inputs and variables a flow layer reads one thing, the layer context, which
only the two context managers here set, for the thread that enters them:

- ``parameters_as(variables, values)``: tensors standing in for variables, returned by
  ``read(variable)``; this is how a level's flow steps run as one loop (``FlowScan``);
- ``data_dependent_init()``: ``initializing()`` is True, and every ActNorm initialises
  itself from its input (the original's ``arg_scope([actnorm], init=True)``);
- ``precision_as(precision)``: every coupling network computes in ``precision`` instead of its
  own (``network_precision``): a model trained in one precision runs in another, with the
  same variables (an export in float32 of a model trained in mixed_bfloat16);
- ``plain_ops()``: layers build TensorFlow's own ops only, differentiated by TensorFlow's own
  gradients: no ``tf.custom_gradient`` (the convolutions' hand-written gradients, the
  written-out backward loop of ``FlowScan``). A SavedModel traced so holds no gradient
  overrides: it loads without warnings, and TensorFlow differentiates through it.
"""
import contextlib
import threading
import types

import tf_keras as keras
import tensorflow as tf


class _LayerContext(threading.local):
    """The layer context of one thread (a tf.function traces in the thread that calls it)."""

    def __init__(self):
        self.stand_ins = {}  # variable.ref() -> the tensor read in its place
        self.initializing = False
        self.precision = None  # every coupling network's precision, when set
        self.plain_ops = False


_context = _LayerContext()


@contextlib.contextmanager
def _context_set(name, value):
    """Within the context, the layer context's ``name`` is ``value``; leaving restores the enclosing one."""
    enclosing = getattr(_context, name)
    setattr(_context, name, value)
    try:
        yield
    finally:
        setattr(_context, name, enclosing)


def batch_constant(value, like):
    """Broadcasts a scalar log-det term to shape [N], N = the batch size of ``like``."""
    return tf.broadcast_to(tf.cast(value, like.dtype), tf.shape(like)[:1])


def read(variable):
    """A layer's variable, or the tensor standing in for it inside ``parameters_as``.

    Flow layers read their variables through this, so that one layer object can run with the
    parameters of another of the same structure: a level runs its flow steps in one
    ``tf.while_loop`` with step 0 as the template and step i's parameters gathered from stacks.
    """
    return _context.stand_ins.get(variable.ref(), variable)


def sum_log_dets(log_dets):
    """The sum of per-example log-determinants, each [N] -> [N], in their order.

    One reduce_sum over their stack, not a chain of adds: outside XLA, Grappler's arithmetic
    optimizer turns three or more chained adds into one AddN, and its memory optimizer may
    rewrite such an AddN into a TemporaryVariable accumulation, which fails inside a
    ``tf.while_loop`` body with AlreadyExistsError (tensorflow/tensorflow#23780). It did so in
    the flow-step loop of mixed_bfloat16 training at 32x32, 3 levels x depth 8, batch 64.
    """
    return tf.reduce_sum(tf.stack(log_dets), axis=0)  # [N]


def parameters_as(variables, values):
    """Within the context, every ``read(variables[k])`` returns ``values[k]`` (at trace time).

    Contexts nest; leaving one restores the stand-ins of the enclosing one.
    """
    variables, values = list(variables), list(values)
    if len(variables) != len(values):
        raise ValueError(f"parameters_as: expected one value per variable, got {len(values)} values "
                         f"for {len(variables)} variables")
    return _context_set("stand_ins", {**_context.stand_ins, **{v.ref(): t for v, t in zip(variables, values)}})


def data_dependent_init():
    """Within this context every ActNorm's forward initialises its parameters from its input.

    This is the original's ``arg_scope([actnorm], init=True)``: one forward pass through the
    model initialises each ActNorm from the already-initialised layers before it.
    """
    return _context_set("initializing", True)


def initializing():
    """True inside ``data_dependent_init()``, where every ActNorm initialises from its input."""
    return _context.initializing


class DataDependentInit:
    """A layer whose forward, inside ``data_dependent_init()``, sets some of its variables from its input."""

    def data_dependent_variables(self):
        """The variables that data-dependent init sets."""
        raise NotImplementedError


def data_dependent_variables(layer):
    """The variables data-dependent init sets in ``layer`` and its sub-layers, as each declares them."""
    return [v for module in [layer, *layer.submodules] if isinstance(module, DataDependentInit)
            for v in module.data_dependent_variables()]


def precision_as(precision):
    """Within the context (at trace time) every coupling network computes in ``precision``."""
    return _context_set("precision", check_precision("precision_as", precision))


def network_precision(own):
    """The precision a coupling network whose own is ``own`` computes in (``precision_as``)."""
    return _context.precision or own


def plain_ops():
    """Within the context (at trace time) layers build only TensorFlow's own ops, with its own gradients."""
    return _context_set("plain_ops", True)


def only_plain_ops() -> bool:
    """True inside ``plain_ops()``: no hand-written gradients."""
    return _context.plain_ops


FLOAT32 = "float32"
# The tf_keras dtype policies a coupling network may compute in (``layers.coupling``).
PRECISIONS = (FLOAT32, "mixed_bfloat16")


def check_precision(where, precision):
    """``precision`` if it is one of ``PRECISIONS``, else a ValueError saying what was expected."""
    if precision not in PRECISIONS:
        raise ValueError(f"{where}: expected a precision (a tf_keras dtype policy) in {list(PRECISIONS)}, "
                         f"got {precision!r}")
    return precision


def resolve_precision(precision):
    """``precision``, or when it is '' tf_keras's global dtype policy (float32 unless set otherwise)."""
    if precision:
        return check_precision("precision", precision)
    return check_precision("tf_keras.mixed_precision.global_policy()", keras.mixed_precision.global_policy().name)


class Untracked(types.SimpleNamespace):
    """Attributes kept out of TensorFlow's object tracking: held as ``owner.x = Untracked(a=...)``,
    ``a`` and its variables are not the owner's (tf.Module's and tf_keras's tracking do not look
    inside a plain namespace), so they are not trained, checkpointed or exported with it."""


class FlowLayer(keras.layers.Layer):
    """Base class of flow layers. The contract every flow layer keeps:

    - ``forward`` and ``inverse`` (the module docstring) are each other's inverse, with
      log-dets of shape [N] and ``forward``'s log-det = -``inverse``'s at the same point;
    - its variables are made in ``__init__`` (not in ``build``), so two layers of the same
      structure have the same variables in the same order before any call;
    - **the parameter-read rule**: ``forward``, ``inverse``, ``forward_saving``,
      ``forward_from_saved`` and everything they call, sub-layers included, read a variable
      only as ``read(variable)``, never the variable itself. A ``FlowScan`` runs step i by
      running one template step with step i's parameters standing in for the template's; a
      variable read around ``read`` gives the template's value there, silently. (The only
      writes, ActNorm's in data-dependent init, go to the variable itself.)
    - no state between calls; besides inputs and variables it reads only the layer context
      (``read``, ``initializing``, ``network_precision``, ``only_plain_ops``).

    - it computes in float32 whatever tf_keras's global dtype policy: what decides invertibility
      and the density stays float32 (only a coupling's network may compute in bfloat16, by its
      own ``precision``).

    tests/test_layers.py holds every layer to this (``test_layer_runs_with_stand_in_parameters``).
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", FLOAT32)
        super().__init__(**kwargs)

    def forward(self, x, cond=None):
        raise NotImplementedError

    def inverse(self, z, cond=None):
        raise NotImplementedError

    def saved_dtypes(self):
        """The dtypes of the tensors ``forward_saving`` saves, in order (none by default)."""
        return []

    def forward_saving(self, x, cond=None):
        """(z, log_det, saved): ``forward(x)`` and the costly intermediates its gradient reads
        (a list of tensors of ``saved_dtypes()``; see ``forward_from_saved``)."""
        return (*self.forward(x, cond), [])

    def forward_from_saved(self, x, saved, cond=None):
        """``forward(x)`` with the intermediates ``saved`` (``forward_saving(x)``'s) read, not
        recomputed: the same values and gradients, and a gradient that needs no forward pass.

        The normal mode's backward loop (``layers.reversible``) differentiates this at each
        step's stored input; a layer with nothing costly to save keeps this default.
        """
        del saved
        return self.forward(x, cond)

    def as_sequence(self):
        """The flow layers whose forwards, applied in order, are this layer's: [self] unless it is a chain."""
        return [self]

    def call(self, x, cond=None):
        return self.forward(x, cond)


class FlowChain(FlowLayer):
    """Flow layers applied in order in ``forward`` and in reverse order in ``inverse``."""

    def __init__(self, flow_layers, **kwargs):
        super().__init__(**kwargs)
        self.flow_layers = list(flow_layers)

    def as_sequence(self):
        return list(self.flow_layers)

    def forward(self, x, cond=None):
        log_dets = []
        for layer in self.flow_layers:
            x, layer_log_det = layer.forward(x, cond)
            log_dets.append(layer_log_det)
        return x, sum_log_dets(log_dets)

    def inverse(self, z, cond=None):
        log_dets = []
        for layer in reversed(self.flow_layers):
            z, layer_log_det = layer.inverse(z, cond)
            log_dets.append(layer_log_det)
        return z, sum_log_dets(log_dets)

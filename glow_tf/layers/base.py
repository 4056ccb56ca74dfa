"""The one interface every flow layer implements, and a chain of flow layers.

A flow layer is an invertible map between the data side ``x`` and the latent side ``z`` with
no hidden state between calls:

    forward(x, cond)  -> (z, log|det dz/dx|)   the original's reverse=False direction
    inverse(z, cond)  -> (x, log|det dx/dz|)   the original's reverse=True direction

Log-determinants have shape [N] (one per example). ``cond`` is an optional per-example
conditioning tensor that conditional layers may use; the Glow layers here ignore it.
"""
import contextlib

import tf_keras as keras
import tensorflow as tf

# variable.ref() -> the tensor read in its place; see ``parameters_as``.
_stand_ins = {}


def batch_constant(value, like):
    """Broadcasts a scalar log-det term to shape [N], N = the batch size of ``like``."""
    return tf.broadcast_to(tf.cast(value, like.dtype), tf.shape(like)[:1])


def read(variable):
    """A layer's variable, or the tensor standing in for it inside ``parameters_as``.

    Flow layers read their variables through this, so that one layer object can run with the
    parameters of another of the same structure: a level runs its flow steps in one
    ``tf.while_loop`` with step 0 as the template and step i's parameters gathered from stacks.
    """
    return _stand_ins.get(variable.ref(), variable)


@contextlib.contextmanager
def parameters_as(variables, values):
    """Within the context, every ``read(variables[k])`` returns ``values[k]`` (at trace time)."""
    stand_ins = {v.ref(): t for v, t in zip(variables, values)}
    _stand_ins.update(stand_ins)
    try:
        yield
    finally:
        for ref in stand_ins:
            _stand_ins.pop(ref, None)


class FlowLayer(keras.layers.Layer):
    """Base class: an invertible layer with log-determinants; variables made in __init__."""

    def forward(self, x, cond=None):
        raise NotImplementedError

    def inverse(self, z, cond=None):
        raise NotImplementedError

    # The number of tensors ``forward_saving`` saves.
    n_saved = 0

    def forward_saving(self, x, cond=None):
        """(z, log_det, saved): ``forward(x)`` and the costly intermediates its gradient reads
        (a list of ``n_saved`` tensors; see ``forward_from_saved``)."""
        return (*self.forward(x, cond), [])

    def forward_from_saved(self, x, saved, cond=None):
        """``forward(x)`` with the intermediates ``saved`` (``forward_saving(x)``'s) read, not
        recomputed: the same values and gradients, and a gradient that needs no forward pass.

        The normal mode's backward loop (``glow_tf.reversible``) differentiates this at each
        step's stored input; a layer with nothing costly to save keeps this default.
        """
        del saved
        return self.forward(x, cond)

    def call(self, x, cond=None):
        return self.forward(x, cond)


class FlowChain(FlowLayer):
    """Flow layers applied in order in ``forward`` and in reverse order in ``inverse``."""

    def __init__(self, flow_layers, **kwargs):
        super().__init__(**kwargs)
        self.flow_layers = list(flow_layers)

    def forward(self, x, cond=None):
        log_det = tf.zeros(tf.shape(x)[:1], x.dtype)
        for layer in self.flow_layers:
            x, layer_log_det = layer.forward(x, cond)
            log_det += layer_log_det
        return x, log_det

    def inverse(self, z, cond=None):
        log_det = tf.zeros(tf.shape(z)[:1], z.dtype)
        for layer in reversed(self.flow_layers):
            z, layer_log_det = layer.inverse(z, cond)
            log_det += layer_log_det
        return z, log_det

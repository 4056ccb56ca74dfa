"""FlowScan: ``depth`` flow steps of one structure run as one loop over stacked parameters.

A Glow level is ``depth`` flow steps that differ only in their parameters. Unrolled, the
traced and compiled program holds ``depth`` copies of the step, so trace time, XLA compile
time and host memory grow with depth (the CelebA-HQ model, 6 levels x 32 steps at 256 px,
did not finish compiling in 14 minutes). Here every parameter of the step is one variable
stacked along a leading axis, ``theta[k]`` of shape [depth, *shape], and

    forward:  z_{i+1} = step(z_i; theta[.][i])      for i = 0 .. depth-1
    inverse:  z_i = step^-1(z_{i+1}; theta[.][i])   for i = depth-1 .. 0
    log-det:  the sum of the steps' log-dets, [N]

runs in one ``tf.while_loop`` whose body is one step: a *template* step whose variables are
replaced, at trace time, by step i's slices (``base.parameters_as``). The program holds one
step per level, forward, inverse and backward alike: the TensorFlow counterpart of Flax's
``nn.scan`` over layers.

The template is a plain flow layer (``make_step(0)``), used only for its structure: its own
variables are not tracked, trained or saved. The stacks start at the initial values of
``make_step(i)`` for every i, so seeded initialisers (the 1x1 conv's orthogonal W, the
shuffle's permutation) differ from step to step exactly as separate layers would.

Data-dependent init runs step by step, as the original: the template runs with step i's
parameters, the layers that initialise from their inputs (``base.DataDependentInit``: the
actnorms) do so, and what they set is written into row i of the stacks.

The backward pass is one loop too, written out in ``layers.reversible``: with
``memory_saving`` it recomputes each step's input by inversion (nothing stored), otherwise it
reads the inputs the forward loop stored. Inside ``base.plain_ops()`` the forward is the plain
``loop``, which TensorFlow differentiates itself.
"""
import numpy as np
import tensorflow as tf

from glow_tf.layers import reversible
from glow_tf.layers.base import (FlowLayer, Untracked, data_dependent_variables, initializing, only_plain_ops,
                                 parameters_as, read)


def variable_paths(layer):
    """[attribute path] of ``layer.variables``, e.g. 'coupling.f1.l_1.kernel', in the same order."""
    paths = {}

    def walk(obj, prefix):
        for name, child in tf.train.TrackableView(obj).children(obj).items():
            path = f"{prefix}.{name}" if prefix else name
            if isinstance(child, tf.Variable):
                paths[child.ref()] = path  # the last name wins: Keras lists a weight's name, then its attribute
            else:
                walk(child, path)

    walk(layer, "")
    return [paths[v.ref()] for v in layer.variables]


class FlowScan(FlowLayer):
    """``depth`` flow steps made by ``make_step(i)``, run as one loop (see the module docstring).

    Args:
      make_step: i -> a flow layer with variables (the i-th step); every step must have the
        same structure (variables of the same shapes and dtypes, in the same order).
      depth: the number of steps.
      memory_saving: reversible gradients (activations recomputed, not stored).
    """

    def __init__(self, make_step, depth, memory_saving=False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"FlowScan: expected depth a positive int, got {depth!r}")
        self.depth = depth
        self.memory_saving = bool(memory_saving)
        template = make_step(0)
        self._template = Untracked(layer=template)  # its own variables are not the model's
        shapes = [(v.shape, v.dtype) for v in template.variables]
        initial = [[v.numpy()] for v in template.variables]
        for i in range(1, depth):  # one step at a time: only the stacks' values stay alive
            step_variables = make_step(i).variables
            seen = [(v.shape, v.dtype) for v in step_variables]
            if seen != shapes:
                raise ValueError(f"FlowScan: step {i} has variables {seen}, step 0 has {shapes}; "
                                 "expected every step to have the same structure")
            for values, v in zip(initial, step_variables):
                values.append(v.numpy())
        self.stacks = [
            self.add_weight(path, shape=[depth] + v.shape.as_list(), dtype=v.dtype, trainable=v.trainable,
                            initializer=_constant(np.stack(values)))
            for path, v, values in zip(variable_paths(template), template.variables, initial)]

    @property
    def template(self):
        """The step layer whose structure every step shares (its own variables are unused)."""
        return self._template.layer

    def stack_of(self, template_variable):
        """The [depth, ...] variable that holds ``template_variable`` for every step."""
        for v, stack in zip(self.template.variables, self.stacks):
            if v is template_variable:
                return stack
        raise ValueError(f"FlowScan.stack_of: {template_variable.name} is not a variable of the template step")

    def forward(self, x, cond=None):
        if initializing():
            return self._initialize(x, cond)
        if only_plain_ops():
            return self.loop(x, cond)
        return reversible.scan_forward(self, x, cond, memory_saving=self.memory_saving)

    def inverse(self, z, cond=None):
        return self.loop(z, cond, inverse=True)

    def step_slices(self):
        """i -> step i's parameters (in the order of ``template.variables``), read from the stacks.

        Read from a ``tf.TensorArray``, so that TensorFlow's gradient of the reads is written per
        step (the gradient of a gather, summed over a loop, costs O(depth * |theta|) per step
        without XLA).
        """
        arrays = [tf.TensorArray(s.dtype, size=self.depth, element_shape=s.shape[1:], clear_after_read=False)
                  .unstack(read(s)) for s in self.stacks]
        return lambda i: [a.read(i) for a in arrays]

    def loop(self, x, cond=None, inverse=False, slices=None):
        """Every step's forward (or, with ``inverse``, every step's inverse in reverse order).

        ``slices``: i -> step i's parameters (default ``step_slices()``).
        """
        slices = self.step_slices() if slices is None else slices
        method = self.template.inverse if inverse else self.template.forward

        def body(i, z, log_det):
            with parameters_as(self.template.variables, slices(self.depth - 1 - i if inverse else i)):
                z, step_log_det = method(z, cond)
            return i + 1, z, log_det + step_log_det

        _, z, log_det = tf.while_loop(lambda i, *_: i < self.depth, body,
                                      (tf.constant(0), x, tf.zeros(tf.shape(x)[:1], x.dtype)),
                                      maximum_iterations=self.depth)
        return z, log_det

    def _initialize(self, x, cond):
        """Data-dependent init, step by step (eagerly, or unrolled when traced; it runs once).

        Step i runs with its own parameters standing in for the template's, except those that
        data-dependent init sets (``base.data_dependent_variables``): the template's own
        variables take them, and only those rows are written back into the stacks, in place (a
        scatter: no second copy of the level's parameters, which at CelebA-HQ size are 0.63 GiB).
        """
        template = self.template
        set_by_init = {v.ref() for v in data_dependent_variables(template)}
        initialized = [(v, s) for v, s in zip(template.variables, self.stacks) if v.ref() in set_by_init]
        given = [(v, s) for v, s in zip(template.variables, self.stacks) if v.ref() not in set_by_init]
        log_det = tf.zeros(tf.shape(x)[:1], x.dtype)
        for i in range(self.depth):
            with parameters_as([v for v, _ in given], [s[i] for _, s in given]):
                x, step_log_det = template.forward(x, cond)  # initialises the template's actnorms
            log_det += step_log_det
            for v, stack in initialized:
                stack.scatter_update(tf.IndexedSlices(v.read_value()[None], tf.constant([i])))
        return x, log_det


def _constant(value):
    return lambda shape, dtype=None, **kwargs: tf.constant(value, dtype)

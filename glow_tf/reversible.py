"""Reversible backpropagation: gradients of a flow without storing its activations.

Backprop normally keeps every intermediate activation of the forward pass, so memory grows
linearly with depth. A flow layer is invertible, so its input can be recomputed from its
output during the backward pass instead. This is the memory-saving mode (the original's
``--gradient_checkpointing``, which recomputed from stored checkpoints instead):

- forward: the level's flow steps run in one ``tf.while_loop`` that keeps nothing but the
  running z and log-det; step i's parameters are gathered from stacks of every step's
  variables and stand in for step 0's (``layers.base.parameters_as``), so step 0's layers are
  the template of every step;
- backward: a second loop walks the steps from last to first and, within a step, the layers
  from last to first: ``x = layer.inverse(z)``, then ``layer.forward(x)`` is re-run under a
  tape to get the gradients of x and of the step's parameters.

Only one step's activations are alive at a time, so memory does not grow with depth, and the
compiled program does not either (one loop body per level). Re-running layer by layer lets XLA
share the coupling network's output between the inverse and the re-run forward (both apply it
to the same unchanged half), so a step's backward costs one extra network evaluation, not two.
Without the loops XLA would also merge the recomputation with the forward pass, keeping every
activation alive again.

The saving holds inside ``tf.function`` (graph mode), where the training step runs: eager
custom gradients still keep the inner ops alive on the tape.
"""
import tensorflow as tf

from glow_tf.layers.actnorm import initializing
from glow_tf.layers.base import parameters_as, read


def forward(chain, x, memory_saving=False):
    """``chain.forward(x)`` (a chain of flow steps of one structure) -> (z, log_det [N]).

    With ``memory_saving`` the gradients are computed reversibly (see the module docstring);
    data-dependent init always runs the steps one by one, as it sets each step's variables.
    """
    if not memory_saving or initializing():
        return chain.forward(x)
    return _reversible_forward(chain.flow_layers, x)


def _reversible_forward(steps, x):
    template = steps[0]
    variables = template.variables  # the same structure, in the same order, in every step
    depth = len(steps)
    stacks = [tf.stack([read(v) for v in same]) for same in zip(*(step.variables for step in steps))]
    trainable = [v.dtype.is_floating for v in variables]

    def run_step(i, z):
        with parameters_as(variables, [stack[i] for stack in stacks]):
            return template.forward(z)

    @tf.custom_gradient
    def run(x, *stacks):
        def step(i, z, log_det):
            z, step_log_det = run_step(i, z)
            return i + 1, z, log_det + step_log_det

        _, z, log_det = tf.while_loop(lambda i, z, log_det: i < depth, step,
                                      (tf.constant(0), x, tf.zeros(tf.shape(x)[:1], x.dtype)),
                                      maximum_iterations=depth)

        def grad(grad_z, grad_log_det):
            def back_step(i, z, grad_z, grad_stacks):
                params = [stack[i] for stack in stacks]
                params_grad = [tf.zeros_like(p) for p in params]
                with parameters_as(variables, params):
                    for layer in reversed(template.flow_layers):
                        layer_input = tf.stop_gradient(layer.inverse(z)[0])
                        watched = [layer_input] + [p for p, t in zip(params, trainable) if t]
                        with tf.GradientTape() as tape:
                            tape.watch(watched)
                            layer_output, layer_log_det = layer.forward(layer_input)
                        grads = tape.gradient([layer_output, layer_log_det], watched,
                                              output_gradients=[grad_z, grad_log_det],
                                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
                        grad_z, z = grads[0], layer_input
                        layer_grads = iter(grads[1:])  # zero for the other layers' parameters
                        params_grad = [g + next(layer_grads) if t else g for g, t in zip(params_grad, trainable)]
                grad_stacks = [s.write(i, g) for s, g in zip(grad_stacks, params_grad)]
                return i - 1, z, grad_z, grad_stacks

            grad_stacks = [tf.TensorArray(s.dtype, size=depth, element_shape=s.shape[1:]) for s in stacks]
            _, _, grad_x, grad_stacks = tf.while_loop(lambda i, *_: i >= 0, back_step,
                                                      (tf.constant(depth - 1), z, grad_z, grad_stacks),
                                                      maximum_iterations=depth)
            return [grad_x] + [s.stack() if t else None for s, t in zip(grad_stacks, trainable)]

        return (z, log_det), grad

    return run(x, *stacks)

"""Reversible backpropagation: gradients of a flow without storing its activations.

Backprop normally keeps every intermediate activation of the forward pass, so memory grows
linearly with depth. A flow layer is invertible, so its input can be recomputed from its
output during the backward pass instead. This is the memory-saving mode (the original's
``--gradient_checkpointing``, which recomputed from stored checkpoints instead), for the
steps of a ``layers.FlowScan``:

- forward: the steps run in one ``tf.while_loop`` that keeps nothing but the running z and
  log-det (``FlowScan.loop``, not differentiated by TensorFlow);
- backward: a second loop walks the steps from last to first and, within a step, the layers
  from last to first: ``x = layer.inverse(z)``, then ``layer.forward(x)`` is re-run under a
  tape to get the gradients of x and of the step's parameters, which are written into
  per-step slots of the stacks' gradients.

Only one step's activations are alive at a time, so memory does not grow with depth, and the
compiled program does not either (one loop body per level). Re-running layer by layer lets XLA
share the coupling network's output between the inverse and the re-run forward (both apply it
to the same unchanged half), so a step's backward costs one extra network evaluation, not two.

The saving holds inside ``tf.function`` (graph mode), where the training step runs: eager
custom gradients still keep the inner ops alive on the tape.
"""
import tensorflow as tf

from glow_tf.layers.base import parameters_as, read


def scan_forward(scan, x, cond=None):
    """``scan.loop(x, cond)`` (a ``layers.FlowScan``) with reversible gradients -> (z, log_det [N])."""
    depth, template = scan.depth, scan.template
    layers = list(getattr(template, "flow_layers", [template]))  # layer by layer where it is a chain
    trainable = [s.dtype.is_floating for s in scan.stacks]

    @tf.custom_gradient
    def run(x, *stack_values):
        z, log_det = scan.loop(x, cond, stack_values=stack_values)
        slices = scan.step_slices(stack_values)

        def grad(grad_z, grad_log_det):
            def back_step(i, z, grad_z, grad_stacks):
                params = slices(i)
                with parameters_as(template.variables, params):
                    params_grad = [tf.zeros_like(p) for p in params]
                    for layer in reversed(layers):
                        layer_input = tf.stop_gradient(layer.inverse(z, cond)[0])
                        watched = [layer_input] + [p for p, t in zip(params, trainable) if t]
                        with tf.GradientTape() as tape:
                            tape.watch(watched)
                            layer_output, layer_log_det = layer.forward(layer_input, cond)
                        grads = tape.gradient([layer_output, layer_log_det], watched,
                                              output_gradients=[grad_z, grad_log_det],
                                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
                        grad_z, z = grads[0], layer_input
                        layer_grads = iter(grads[1:])  # zero for the other layers' parameters
                        params_grad = [g + next(layer_grads) if t else g for g, t in zip(params_grad, trainable)]
                grad_stacks = [s.write(i, g) if t else s for s, g, t in zip(grad_stacks, params_grad, trainable)]
                return i - 1, z, grad_z, grad_stacks

            grad_stacks = [tf.TensorArray(s.dtype, size=depth, element_shape=s.shape[1:]) for s in stack_values]
            _, _, grad_x, grad_stacks = tf.while_loop(lambda i, *_: i >= 0, back_step,
                                                      (tf.constant(depth - 1), z, grad_z, grad_stacks),
                                                      maximum_iterations=depth)
            return [grad_x] + [s.stack() if t else None for s, t in zip(grad_stacks, trainable)]

        return (z, log_det), grad

    return run(x, *[read(s) for s in scan.stacks])

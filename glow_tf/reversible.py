"""Gradients of a ``layers.FlowScan``'s steps, written out: one backward loop over the steps.

TensorFlow can differentiate the forward ``tf.while_loop`` itself, but it then pushes every
intermediate of every step onto accumulators; under XLA on CPU that training step grows
faster than linearly with depth (measured at width 128, batch 64: 0.48 s at depth 8, 3.6 s
at depth 32, against 1.8 s for the unrolled steps). Here the forward loop is not
differentiated by TensorFlow; a second loop walks the steps from last to first and, within a
step, the layers from last to first: it gets each layer's input x, re-runs
``layer.forward(x)`` under a tape and writes the gradients of x and of the step's parameters
into per-step slots of the stacks' gradients. Two ways to get x:

- ``invert=True``, the memory-saving mode (the original's ``--gradient_checkpointing``, which
  recomputed from stored checkpoints instead): ``x = layer.inverse(z)``, since a flow layer is
  invertible. Nothing but the running z and log-det is kept, so memory does not grow with
  depth. Re-running layer by layer lets XLA share the coupling network's output between the
  inverse and the re-run forward (both apply it to the same unchanged half), so a step's
  backward costs one extra network evaluation, not two.
- ``invert=False``, the normal mode: the forward loop stores every layer's input (three
  tensors of z's size per step, not the coupling network's width-sized intermediates) and the
  backward loop reads them: exact inputs, memory linear in depth.

The compiled program holds one step per level either way. The saving holds inside
``tf.function`` (graph mode), where the training step runs: eager custom gradients keep the
inner ops alive on the tape.
"""
import tensorflow as tf

from glow_tf.layers.base import parameters_as, read


def scan_forward(scan, x, cond=None, invert=True):
    """``scan.loop(x, cond)`` with the gradients of the module docstring -> (z, log_det [N])."""
    depth, template = scan.depth, scan.template
    layers = list(getattr(template, "flow_layers", [template]))  # layer by layer where it is a chain
    trainable = [s.dtype.is_floating for s in scan.stacks]

    @tf.custom_gradient
    def run(x, *stack_values):
        # Gathered, not read from a TensorArray: these reads are never differentiated by
        # TensorFlow, and a gather vectorises (tf.vectorized_map, batch Jacobians).
        def slices(i):
            return [tf.gather(s, i) for s in stack_values]

        if invert:
            z, log_det = scan.loop(x, cond, slices=slices)
        else:
            z, log_det, inputs = _forward_storing_inputs(scan, layers, slices, x, cond)

        def grad(grad_z, grad_log_det):
            def back_step(i, z, grad_z, grad_stacks):
                params = slices(i)
                with parameters_as(template.variables, params):
                    params_grad = [tf.zeros_like(p) for p in params]
                    for k in reversed(range(len(layers))):
                        layer = layers[k]
                        layer_input = (tf.stop_gradient(layer.inverse(z, cond)[0]) if invert
                                       else tf.gather(inputs[k], i))
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


def _forward_storing_inputs(scan, layers, slices, x, cond):
    """The forward loop, layer by layer -> (z, log_det, [every layer's inputs, [depth, *x.shape]])."""
    def step(i, z, log_det, inputs):
        with parameters_as(scan.template.variables, slices(i)):
            for k, layer in enumerate(layers):
                inputs[k] = inputs[k].write(i, z)
                z, layer_log_det = layer.forward(z, cond)
                log_det += layer_log_det
        return i + 1, z, log_det, inputs

    inputs = [tf.TensorArray(x.dtype, size=scan.depth, element_shape=x.shape) for _ in layers]
    _, z, log_det, inputs = tf.while_loop(lambda i, *_: i < scan.depth, step,
                                          (tf.constant(0), x, tf.zeros(tf.shape(x)[:1], x.dtype), inputs),
                                          maximum_iterations=scan.depth)
    return z, log_det, [a.stack() for a in inputs]

"""Gradients of a ``layers.FlowScan``'s steps, written out: one backward loop over the steps.

TensorFlow can differentiate the forward ``tf.while_loop`` itself, but it then pushes every
intermediate of every step onto accumulators; under XLA on CPU that training step grows
faster than linearly with depth (benchmarks/RESULTS.md). Here the forward loop is not
differentiated by TensorFlow; a second loop walks the steps from last to first and, within a
step, the layers from last to first: it gets each layer's input x, differentiates the
layer's forward at x under a tape and writes the gradients of x and of the step's
parameters into per-step slots of the stacks' gradients. Two ways to get x:

- ``memory_saving=True``, the memory-saving mode (the original's ``--gradient_checkpointing``, which
  recomputed from stored checkpoints instead): ``x = layer.inverse(z)``, since a flow layer is
  invertible, and the tape re-runs ``layer.forward(x)``. Nothing but the running z and log-det
  is kept, so memory does not grow with depth. Re-running layer by layer lets XLA share the
  coupling network's output between the inverse and the re-run forward (both apply it to the
  same unchanged half), so a step's backward costs one extra network evaluation, not two.
- ``memory_saving=False``, the normal mode: the forward loop stores every layer's input and what the
  layer's ``forward_saving`` saves (a coupling's network activations), and the tape runs
  ``layer.forward_from_saved``, whose gradient needs no forward pass: a step's backward costs
  what backprop through the unrolled step costs; memory is linear in depth.

The compiled program holds one step per level either way. The saving holds inside
``tf.function`` (graph mode), where the training step runs: eager custom gradients keep the
inner ops alive on the tape.
"""
import tensorflow as tf

from glow_tf.layers.base import parameters_as, read, sum_log_dets


def scan_forward(scan, x, cond, memory_saving):
    """``scan.loop(x, cond)`` with the gradients of the module docstring -> (z, log_det [N]).

    ``scan``: a ``FlowScan`` (duck-typed here: it builds on this module).
    """
    depth, template = scan.depth, scan.template
    layers = template.as_sequence()  # layer by layer where the step is a chain
    # The stacks that get gradients (not the shuffle's integer indices), by layer.
    differentiable = [j for j, s in enumerate(scan.stacks) if s.dtype.is_floating]
    owned = [{v.ref() for v in layer.variables} for layer in layers]
    layer_params = [[j for j in differentiable if template.variables[j].ref() in refs] for refs in owned]

    @tf.custom_gradient
    def run(x, *stack_values):
        # Gathered, not read from a TensorArray: these reads are never differentiated by
        # TensorFlow, and a gather vectorises (tf.vectorized_map, batch Jacobians).
        def slices(i):
            return [tf.gather(s, i) for s in stack_values]

        if memory_saving:
            z, log_det = scan.loop(x, cond, slices=slices)
        else:
            z, log_det, stored = _forward_storing(scan, layers, slices, x, cond)

        def grad(grad_z, grad_log_det):
            def back_step(i, z, grad_z, grad_stacks):
                params = slices(i)
                params_grad = {}
                with parameters_as(template.variables, params):
                    for k in reversed(range(len(layers))):
                        layer = layers[k]
                        if memory_saving:
                            layer_input = tf.stop_gradient(layer.inverse(z, cond)[0])
                        else:
                            layer_input, *saved = [tf.gather(s, i) for s in stored[k]]
                        watched = [layer_input] + [params[j] for j in layer_params[k]]
                        with tf.GradientTape() as tape:
                            tape.watch(watched)
                            layer_output, layer_log_det = (layer.forward(layer_input, cond) if memory_saving else
                                                           layer.forward_from_saved(layer_input, saved, cond))
                        grads = tape.gradient([layer_output, layer_log_det], watched,
                                              output_gradients=[grad_z, grad_log_det],
                                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
                        grad_z, z = grads[0], layer_input
                        params_grad.update(zip(layer_params[k], grads[1:]))
                grad_stacks = [s.write(i, params_grad[j]) for s, j in zip(grad_stacks, differentiable)]
                return i - 1, z, grad_z, grad_stacks

            grad_stacks = [tf.TensorArray(stack_values[j].dtype, size=depth, element_shape=stack_values[j].shape[1:])
                           for j in differentiable]
            _, _, grad_x, grad_stacks = tf.while_loop(lambda i, *_: i >= 0, back_step,
                                                      (tf.constant(depth - 1), z, grad_z, grad_stacks),
                                                      maximum_iterations=depth)
            stacked = dict(zip(differentiable, (s.stack() for s in grad_stacks)))
            return [grad_x] + [stacked.get(j) for j in range(len(stack_values))]

        return (z, log_det), grad

    return run(x, *[read(s) for s in scan.stacks])


def _forward_storing(scan, layers, slices, x, cond):
    """The forward loop, layer by layer -> (z, log_det, stored): ``stored[k]`` holds layer k's
    input and then the tensors its ``forward_saving`` saved (of ``layer.saved_dtypes()``), each [depth, ...]
    (stacked: ``tf.vectorized_map`` cannot read a TensorArray, and batch Jacobians need it)."""
    def step(i, z, log_det, stores):
        stores = [list(store) for store in stores]
        log_dets = []
        with parameters_as(scan.template.variables, slices(i)):
            for k, layer in enumerate(layers):
                next_z, layer_log_det, saved = layer.forward_saving(z, cond)
                if [t.dtype for t in saved] != layer.saved_dtypes():
                    raise ValueError(f"{type(layer).__name__}.forward_saving: expected saved tensors of dtypes "
                                     f"{layer.saved_dtypes()} (its saved_dtypes()), got {[t.dtype for t in saved]}")
                stores[k] = [store.write(i, t) for store, t in zip(stores[k], [z] + saved)]
                z = next_z
                log_dets.append(layer_log_det)
        return i + 1, z, log_det + sum_log_dets(log_dets), stores

    # The saved tensors' shapes are known once traced: their stores take them from the writes.
    stores = [[tf.TensorArray(x.dtype, size=scan.depth, element_shape=x.shape)]
              + [tf.TensorArray(dtype, size=scan.depth) for dtype in layer.saved_dtypes()] for layer in layers]
    _, z, log_det, stores = tf.while_loop(lambda i, *_: i < scan.depth, step,
                                          (tf.constant(0), x, tf.zeros(tf.shape(x)[:1], x.dtype), stores),
                                          maximum_iterations=scan.depth)
    return z, log_det, [[store.stack() for store in layer_stores] for layer_stores in stores]

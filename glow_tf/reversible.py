"""Reversible backpropagation: gradients of a flow without storing its activations.

Backprop normally keeps every intermediate activation of the forward pass, so memory grows
linearly with depth. A flow step is invertible, so its input can be recomputed from its output
during the backward pass instead: walking the steps from last to first, each step's input is
``x = step.inverse(z)``; that one step is then re-run forward under a tape to get the gradients
of its input and its variables. Only the chain's final output and one step's activations are
alive at a time, so peak memory no longer grows with depth (at the cost of one inverse and one
extra forward per step). This is the memory-saving mode (the original's
``--gradient_checkpointing``, which recomputed from stored checkpoints instead).

The saving holds inside ``tf.function`` (graph mode), where the training step runs: eager
custom gradients still keep the inner ops alive on the tape.
"""
import tensorflow as tf


def forward(chain, x, memory_saving=False):
    """``chain.forward(x)`` with reversible gradients when ``memory_saving``; (z, log_det [N])."""
    if not memory_saving:
        return chain.forward(x)
    return _reversible_forward(chain, x)


def _reversible_forward(chain, x):
    @tf.custom_gradient
    def run(x):
        z, log_det = chain.forward(x)

        def grad(grad_z, grad_log_det, variables=None):
            variable_grads = {}
            output = z
            for step in reversed(chain.flow_layers):
                step_input = tf.stop_gradient(step.inverse(output)[0])
                step_variables = step.trainable_variables
                with tf.GradientTape() as tape:
                    tape.watch(step_input)
                    step_output, step_log_det = step.forward(step_input)
                grads = tape.gradient([step_output, step_log_det], [step_input] + step_variables,
                                      output_gradients=[grad_z, grad_log_det])
                grad_z = grads[0]
                for variable, variable_grad in zip(step_variables, grads[1:]):
                    if variable_grad is not None:
                        variable_grads[variable.ref()] = variable_grad
                output = step_input
            return grad_z, [variable_grads.get(v.ref(), tf.zeros_like(v)) for v in (variables or [])]

        return (z, log_det), grad

    return run(x)

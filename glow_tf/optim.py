"""The original's optimisers (optim.py): Adamax, Adam, adam2, and the Polyak average.

All three share one update, for every weight w with (all-reduced) gradient g at step t = 1, 2, ...:

    m1 <- beta1 * m1 + (1 - beta1) * g                 (m1 = g when beta1 == 0)
    m2 <- max(beta2 * m2, |g|)                         adamax
    m2 <- beta2 * m2 + (1 - beta2) * g**2              adam
    m2 <- beta2 * m2 + (1 - beta2) * mean_r(g_r**2)    adam2 (mean over replicas of the squares)
    alpha_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)
    w <- weight_decay * w - alpha_t * m1 / (f(m2) + eps),  f = identity (adamax) or sqrt (adam)

with ``beta2 = 1 - 1 / (train_its * polyak_epochs)`` (``polyak_decay``) and multiplicative
weight decay (1.0, the default, is none). The bias correction uses sqrt(1 - beta2**t) for
Adamax too, as the original does.

``PolyakAverage`` keeps an exponential moving average (decay beta2) of the weights, as the
original's ``tf.train.ExponentialMovingAverage(decay=beta2, zero_debias=True)``. TF1 ignores
``zero_debias`` for Variables and starts each shadow at the variable's initial value, i.e.
before data-dependent init; here the shadows start at the weights they are created from
(create them after ``Glow.initialize``), and after every step

    shadow <- shadow - (shadow - w) * rate,   rate = float32(1) - float32(decay)

with the weights after the step's update. The rate is the original's: TF's
ExponentialMovingAverage converts decay to a float32 tensor before it takes 1 - decay, so for
beta2 = 0.99992 the rate is 7.998943e-05, not float32(1 - beta2) = 8e-05 (1.3e-4 apart,
relatively). The original computes the average but never swaps it in; glow_tf uses it for
evaluation (``--use_ema_for_eval``) and export.

Every update takes an ``ok`` flag: when False (non-finite loss or gradients) nothing changes,
not the weights, the moments, the step count t nor the average. The updates run in
cross-replica context (``tf.distribute``'s ``extended.update``, one call per variable), so they
work under every strategy, with the default one as a plain assignment.
"""
import numpy as np
import tensorflow as tf
import tf_keras as keras

OPTIMIZERS = ("adamax", "adam", "adam2")


def polyak_decay(train_its, polyak_epochs):
    """The original's beta2 = 1 - 1 / (train_its * polyak_epochs), also the EMA's decay."""
    if train_its * polyak_epochs <= 1:
        raise ValueError(f"beta2 = 1 - 1 / (train_its * polyak_epochs): expected train_its * "
                         f"polyak_epochs > 1, got {train_its} * {polyak_epochs}")
    return 1.0 - 1.0 / (train_its * polyak_epochs)


def bias_correction(t, beta1, beta2):
    """sqrt(1 - beta2**t) / (1 - beta1**t) at step t = 1, 2, ... (the original's, Adamax's too)."""
    return tf.sqrt(1.0 - tf.pow(beta2, t)) / (1.0 - tf.pow(beta1, t))


def adamax_second_moment(m2, g, beta2):
    """Adamax's m2 <- max(beta2 * m2, |g|)."""
    return tf.maximum(beta2 * m2, tf.abs(g))


def new_moments(m1, m2, g, beta1, second_moment):
    """The moments' update (the module docstring's) -> new (m1, m2); m1 unused when beta1 == 0.

    Args:
      second_moment: (m2, g) -> the new m2.
    """
    return (beta1 * m1 + (1.0 - beta1) * g if beta1 > 0 else g), second_moment(m2, g)


def weight_step(w, m1, m2, alpha, epsilon, weight_decay, denominator):
    """w <- weight_decay * w - alpha * m1 / (f(m2) + eps), from the new moments.

    Args:
      alpha: lr * bias_correction(t).
      denominator: m2 -> f(m2).
    """
    return weight_decay * w - alpha * (m1 / (denominator(m2) + epsilon))


def _if_ok(ok, new, old):
    """``new`` where the step is ok, else ``old``; no op at all when ``ok`` is Python's True."""
    return new if ok is True else tf.where(ok, new, old)


def _update(variable, fn, *args):
    """fn(variable, *args) on every copy of ``variable`` (cross-replica context)."""
    return tf.distribute.get_strategy().extended.update(variable, fn, args=args, group=False)


class AdamFamily(tf.Module):
    """Shared state and update of Adamax / Adam / adam2; subclasses set the second moment.

    Args:
      variables: the weights to train (their order names the slots in checkpoints).
      beta2: the second-moment decay (``polyak_decay``).
      beta1: first-moment decay; 0 keeps no first moment (m1 = g), as the original.
      weight_decay: multiplicative decay of the weights; 1.0 is none.
      epsilon: added to the denominator.
    """
    # adam2 needs the replicas' mean of g**2 besides the mean of g.
    needs_grad_squares = False

    def __init__(self, variables, beta2, beta1=0.9, weight_decay=1.0, epsilon=1e-8, name=None):
        super().__init__(name=name)
        if not 0.0 <= beta1 < 1.0:
            raise ValueError(f"beta1: expected a float in [0, 1), got {beta1}")
        if not 0.0 < beta2 < 1.0:
            raise ValueError(f"beta2: expected a float in (0, 1), got {beta2}")
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.weight_decay, self.epsilon = float(weight_decay), float(epsilon)
        self.n_variables = len(variables)
        # Slots as the original's `<w>_adam_m1` / `<w>_adam_m2`; t starts at 1 as its `adam_t`.
        self.m1 = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="adam_m1")
                   for v in variables] if beta1 > 0 else []
        self.m2 = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="adam_m2")
                   for v in variables]
        self.t = tf.Variable(1.0, trainable=False, name="adam_t")

    def second_moment(self, m2, g, g_squared):
        """The new m2 from the old one, the gradient and (adam2) the replicas' mean of g**2."""
        raise NotImplementedError

    def denominator(self, m2):
        """f(m2) in m1 / (f(m2) + eps)."""
        raise NotImplementedError

    def apply(self, variables, grads, lr, ok=True, grad_squares=None):
        """One update of ``variables`` (cross-replica context); nothing changes unless ``ok``.

        Args:
          variables: the same variables, in the same order, as at construction.
          grads: their all-reduced (mean over replicas) gradients.
          lr: the learning rate of this step (the original's alpha).
          ok: scalar bool; False skips the step entirely.
          grad_squares: the replicas' mean of g**2 (adam2 only).

        lr, ok and the gradients may be per-replica values (as ``merge_call`` passes them).
        """
        if len(variables) != self.n_variables or len(grads) != self.n_variables:
            raise ValueError(f"{type(self).__name__}.apply: expected {self.n_variables} variables and "
                             f"gradients, got {len(variables)} and {len(grads)}")
        if self.needs_grad_squares and grad_squares is None:
            raise ValueError(f"{type(self).__name__}.apply: expected grad_squares (the replicas' mean of g**2)")
        # The bias correction depends on t only, the same on every replica: computed once, not
        # once per variable (a model has ~40 variables per flow step; the graph and the host
        # memory XLA keeps for it grow with its op count).
        correction = bias_correction(self.t.read_value(), self.beta1, self.beta2)
        for i, (w, g) in enumerate(zip(variables, grads)):
            g_squared = grad_squares[i] if grad_squares is not None else None
            _update(w, self._update_one, g, g_squared, lr, correction, ok, i)
        _update(self.t, lambda t, ok: t.assign_add(_if_ok(ok, 1.0, 0.0)), ok)

    def _update_one(self, w, g, g_squared, lr, correction, ok, i):
        # On one copy of w (one device): the slots read as that device's copies.
        alpha = tf.cast(lr, tf.float32) * correction
        m1, m2 = (self.m1[i] if self.beta1 > 0 else None), self.m2[i]
        m1_new, m2_new = new_moments(m1, m2, g, self.beta1, lambda m2, g: self.second_moment(m2, g, g_squared))
        if m1 is not None:
            m1.assign(_if_ok(ok, m1_new, m1))
            m1_new = m1.read_value()
        m2.assign(_if_ok(ok, m2_new, m2))
        # w from the slots as written (equal to the new moments where ok; w is kept where not):
        # computed from the old slots, XLA keeps a copy of each old slot, 2 x the weights' size.
        w_new = weight_step(w, m1_new, m2.read_value(), alpha, self.epsilon, self.weight_decay, self.denominator)
        w.assign(_if_ok(ok, w_new, w))


class Adamax(AdamFamily):
    """The original's default: m2 = max(beta2 * m2, |g|), step m1 / (m2 + eps)."""

    def second_moment(self, m2, g, g_squared):
        return adamax_second_moment(m2, g, self.beta2)

    def denominator(self, m2):
        return m2


class Adam(AdamFamily):
    """m2 = beta2 * m2 + (1 - beta2) * g**2, step m1 / (sqrt(m2) + eps)."""

    def second_moment(self, m2, g, g_squared):
        return self.beta2 * m2 + (1.0 - self.beta2) * tf.square(g)

    def denominator(self, m2):
        return tf.sqrt(m2)


class Adam2(Adam):
    """The original's adam2: Adam with the replicas' mean of g**2 in m2 instead of (mean g)**2."""
    needs_grad_squares = True

    def second_moment(self, m2, g, g_squared):
        return self.beta2 * m2 + (1.0 - self.beta2) * g_squared


def make_optimizer(name, variables, beta2, beta1=0.9, weight_decay=1.0):
    """The optimizer ``name`` (the original's --optimizer: adamax, adam, adam2)."""
    classes = {"adamax": Adamax, "adam": Adam, "adam2": Adam2}
    if name not in classes:
        raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {name!r}")
    return classes[name](variables, beta2=beta2, beta1=beta1, weight_decay=weight_decay, name=name)


class PolyakAverage(tf.Module):
    """Exponential moving average of weights (see the module docstring).

    Args:
      variables: the weights; each shadow starts at its current value.
      decay: the EMA decay (the original's beta2).
    """

    def __init__(self, variables, decay, name="polyak"):
        super().__init__(name=name)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"PolyakAverage.decay: expected a float in [0, 1), got {decay}")
        self.decay = float(decay)
        self.rate = np.float32(1.0) - np.float32(decay)  # the module docstring's float32 rate
        self.shadows = [tf.Variable(v.read_value(), trainable=False, name="ExponentialMovingAverage")
                        for v in variables]

    @staticmethod
    def checkpoint_view(variables):
        """A stand-in with PolyakAverage's checkpoint layout whose shadows are ``variables``.

        Restoring a checkpoint into it reads each saved average straight into its variable,
        without building a second set of shadows.
        """
        view = tf.Module(name="polyak_view")
        view.shadows = list(variables)
        return view

    def _check(self, variables):
        if len(variables) != len(self.shadows):
            raise ValueError(f"PolyakAverage: expected {len(self.shadows)} variables, got {len(variables)}")

    def update(self, variables, ok=True):
        """shadow -= (shadow - w) * rate for every weight (cross-replica context)."""
        self._check(variables)

        def update_one(shadow, w, ok):
            shadow.assign(_if_ok(ok, shadow - (shadow - w) * self.rate, shadow))

        for shadow, w in zip(self.shadows, variables):
            _update(shadow, update_one, w, ok)

    def swap(self, variables):
        """Exchanges weights and averages (the original's polyak_swap); calling it twice undoes it."""
        self._check(variables)
        for shadow, w in zip(self.shadows, variables):
            value = tf.identity(w.read_value())
            w.assign(shadow)
            shadow.assign(value)


class KerasAdamax(keras.optimizers.Optimizer):
    """The original's Adamax as a tf_keras optimizer, for ``Glow.compile`` / ``Glow.fit``.

    The same update as ``Adamax`` (``new_moments``, ``weight_step``; see the module docstring), with t = iterations + 1:
    ``m1 <- beta1 m1 + (1 - beta1) g``, ``m2 <- max(beta2 m2, |g|)``,
    ``w <- decay * w - lr * sqrt(1 - beta2**t) / (1 - beta1**t) * m1 / (m2 + eps)``.
    The Polyak average is Keras's own: ``use_ema=True, ema_momentum=beta2`` (an EMA of the
    weights from their values when the optimizer is built, as ``PolyakAverage``), swapped in
    by ``finalize_variable_values`` at the end of ``fit``.

    Args:
      learning_rate: a float or a Keras learning-rate schedule.
      beta1: first-moment decay (0: m1 = g).
      beta2: second-moment decay (the original's 1 - 1 / (train_its * polyak_epochs)).
      epsilon: added to the denominator.
      multiplicative_decay: the original's weight_decay, w <- decay * w - step (1.0: none).
      **kwargs: tf_keras optimizer arguments (use_ema, ema_momentum, clipnorm, ...).
    """

    def __init__(self, learning_rate=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8, multiplicative_decay=1.0,
                 name="OriginalAdamax", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0.0 <= beta1 < 1.0:
            raise ValueError(f"beta1: expected a float in [0, 1), got {beta1}")
        if not 0.0 < beta2 < 1.0:
            raise ValueError(f"beta2: expected a float in (0, 1), got {beta2}")
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.beta1, self.beta2, self.epsilon = float(beta1), float(beta2), float(epsilon)
        self.multiplicative_decay = float(multiplicative_decay)

    def build(self, var_list):
        super().build(var_list)
        if getattr(self, "_built", False):
            return
        self._built = True
        self._m1 = [self.add_variable_from_reference(v, "m1") for v in var_list]
        self._m2 = [self.add_variable_from_reference(v, "m2") for v in var_list]

    def update_step(self, gradient, variable):
        index = self._index_dict[self._var_key(variable)]
        m1, m2 = self._m1[index], self._m2[index]
        t = tf.cast(self.iterations + 1, variable.dtype)
        alpha = tf.cast(self.learning_rate, variable.dtype) * bias_correction(t, self.beta1, self.beta2)
        m1_new, m2_new = new_moments(m1, m2, gradient, self.beta1,
                                     lambda m2, g: adamax_second_moment(m2, g, self.beta2))
        m1.assign(m1_new)
        m2.assign(m2_new)
        variable.assign(weight_step(variable, m1.read_value(), m2.read_value(), alpha, self.epsilon,
                                    self.multiplicative_decay, lambda m2: m2))

    def get_config(self):
        return {**super().get_config(), "learning_rate": self._serialize_hyperparameter(self._learning_rate),
                "beta1": self.beta1, "beta2": self.beta2, "epsilon": self.epsilon,
                "multiplicative_decay": self.multiplicative_decay}

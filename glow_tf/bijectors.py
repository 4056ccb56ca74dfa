"""TFP adapters: any glow_tf flow layer, and the whole Glow, as a ``tfb.Bijector``.

TFP's forward is the generative direction (latent -> data), the flow layers' ``inverse``:

    bijector.forward(z)  = layer.inverse(z)[0],   forward_log_det_jacobian(z) = layer.inverse(z)[1]
    bijector.inverse(x)  = layer.forward(x)[0],   inverse_log_det_jacobian(x) = layer.forward(x)[1]

``GlowBijector`` maps the flattened, joined standardised latents eps [..., D] (the order of
``Glow.encode``: level 0 first, each level's NHWC latent flattened) to continuous images
[..., H, W, C]; the split and top priors live inside it, so with a standard Normal base it is
the model's density: ``glow_distribution(model, y).log_prob(x) == model.log_prob(x, y)``.
A class-conditional model takes its labels as the bijector kwarg ``labels``
(``bijector.forward(eps, labels=y)``, ``dist.log_prob(x, bijector_kwargs={"labels": y})``) or
binds them at construction (``GlowBijector(model, y=y)``, ``model.distribution(y)``). The kwarg
cannot be called ``y``: TFP's ``Bijector.inverse(y, ...)`` already uses that name.
"""
import tensorflow as tf
import tensorflow_probability as tfp

from glow_tf import latents

tfb = tfp.bijectors
tfd = tfp.distributions


class FlowLayerBijector(tfb.Bijector):
    """A glow_tf flow layer on [..., H, W, C] events as a TFP bijector (forward = layer.inverse).

    Conditioning tensors pass as the bijector kwarg ``cond``. The layer's variables are the
    bijector's ``trainable_variables``.
    """

    def __init__(self, layer, validate_args=False, name=None):
        parameters = dict(locals())
        self._layer = layer
        super().__init__(forward_min_event_ndims=3, inverse_min_event_ndims=3, validate_args=validate_args,
                         parameters=parameters, name=name or f"flow_{layer.name}")

    @classmethod
    def _parameter_properties(cls, dtype):
        return {}

    @property
    def layer(self):
        return self._layer

    @staticmethod
    def _as_batch(t):
        """[..., H, W, C] -> [N, H, W, C] and the leading shape to restore."""
        leading = tf.shape(t)[:-3]
        return tf.reshape(t, tf.concat([[-1], tf.shape(t)[-3:]], axis=0)), leading

    def _apply(self, method, t, cond):
        batch, leading = self._as_batch(t)
        out, log_det = method(batch, cond)
        return (tf.reshape(out, tf.concat([leading, tf.shape(out)[1:]], axis=0)),
                tf.reshape(log_det, leading))

    def _forward(self, z, cond=None):
        return self._apply(self._layer.inverse, z, cond)[0]

    def _inverse(self, x, cond=None):
        return self._apply(self._layer.forward, x, cond)[0]

    def _forward_log_det_jacobian(self, z, cond=None):
        return self._apply(self._layer.inverse, z, cond)[1]

    def _inverse_log_det_jacobian(self, x, cond=None):
        return self._apply(self._layer.forward, x, cond)[1]


class GlowBijector(tfb.Bijector):
    """The whole Glow: flattened standardised latent eps [..., D] -> continuous x [..., H, W, C].

    Args:
      model: a ``glow_tf.Glow``.
      y: default int labels [N] for class-conditional models (overridden by the kwarg ``labels``).
    """

    def __init__(self, model, y=None, validate_args=False, name="glow"):
        parameters = dict(locals())
        self._model = model
        self._y = y
        config = model.config
        self._image_shape = list(config.image_shape)
        self._eps_shapes = config.eps_shapes()
        self._n_dims = latents.size(self._eps_shapes)
        super().__init__(forward_min_event_ndims=1, inverse_min_event_ndims=3, validate_args=validate_args,
                         parameters=parameters, name=name)

    @classmethod
    def _parameter_properties(cls, dtype):
        return {}

    @property
    def model(self):
        return self._model

    def _decode(self, eps_flat, labels):
        leading = tf.shape(eps_flat)[:-1]
        flat = tf.reshape(eps_flat, [-1, self._n_dims])  # [N, D]
        x, log_det = self._model.decode_with_log_det(latents.unflatten(flat, self._eps_shapes),
                                                     self._y if labels is None else labels)
        return tf.reshape(x, tf.concat([leading, self._image_shape], axis=0)), tf.reshape(log_det, leading)

    def _encode(self, x, labels):
        leading = tf.shape(x)[:-3]
        batch = tf.reshape(x, [-1] + self._image_shape)  # [N, H, W, C]
        encoding = self._model.encode_with_log_det(batch, self._y if labels is None else labels)
        flat = latents.flatten(encoding.eps)  # [N, D]
        return (tf.reshape(flat, tf.concat([leading, [self._n_dims]], axis=0)),
                tf.reshape(encoding.log_det, leading))

    def _forward(self, eps, labels=None):
        return self._decode(eps, labels)[0]

    def _inverse(self, x, labels=None):
        return self._encode(x, labels)[0]

    def _forward_log_det_jacobian(self, eps, labels=None):
        return self._decode(eps, labels)[1]

    def _inverse_log_det_jacobian(self, x, labels=None):
        return self._encode(x, labels)[1]

    def _forward_event_shape(self, input_shape):
        return tf.TensorShape(self._image_shape)

    def _forward_event_shape_tensor(self, input_shape):
        return tf.constant(self._image_shape, tf.int32)

    def _inverse_event_shape(self, output_shape):
        return tf.TensorShape([self._n_dims])

    def _inverse_event_shape_tensor(self, output_shape):
        return tf.constant([self._n_dims], tf.int32)


def glow_distribution(model, y=None):
    """TransformedDistribution(standard Normal [D], GlowBijector(model, y)); event shape [H, W, C]."""
    n_dims = model.config.n_dims
    base = tfd.Sample(tfd.Normal(tf.zeros([], tf.float32), 1.0), sample_shape=[n_dims])
    return tfd.TransformedDistribution(base, GlowBijector(model, y=y), name="glow")

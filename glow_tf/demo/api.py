"""The demo's API (the table in ``glow_tf/demo/__init__.py``): each request checked (``inputs``),
then answered by ``glow_tf.sampling`` on the served model, one request at a time."""
import threading

import numpy as np

from glow_tf import latents, sampling
from glow_tf.demo import inputs, uploads
from glow_tf.demo.attributes import ALPHA_RANGE, Attributes
from glow_tf.demo.inputs import BAD_REQUEST, RequestError

TEMPERATURE_RANGE = (0.0, 1.0)
DEFAULT_TEMPERATURE = 0.7  # the original demo's random(eps_std=0.7)
MIX_RANGE = (0.0, 1.0)  # the original's mix alpha: 0 is the first image, 1 the second
DEFAULT_SAMPLES, MAX_SAMPLES = 10, 64  # per /api/random; 10: the original's sample grids' columns
MAX_SEED = 2 ** 63 - 1  # the model's noise generator takes seeds in [0, 2**63)
# Encoding reseeds the dequantisation noise with this seed, so that an image has one latent:
# encoding it again (the page does when the class changes) gives the same z.
ENCODE_SEED = 0


class DemoApi:
    """The API over ``served`` (a ``sampling.ServedGlow``).

    Args:
      attributes: the manipulation directions (``attributes.Attributes``).
      examples, example_labels: held-out images uint8 [N, H, W, C] the page offers, and their labels
        (int [N]); None: none.
      max_upload_bytes: the largest image file /api/encode reads.
      name: what the page calls the model (its path).
    """

    def __init__(self, served, attributes: Attributes, examples, example_labels, max_upload_bytes, name):
        self.latent_size = latents.size(served.eps_shapes)
        if isinstance(max_upload_bytes, bool) or not isinstance(max_upload_bytes, int) or max_upload_bytes < 1:
            raise ValueError(f"max_upload_bytes: expected an int >= 1, got {max_upload_bytes!r}")
        if attributes.directions.shape[1:] != (self.latent_size,):
            raise ValueError(f"attributes: expected directions [K, {self.latent_size}] (this model's flattened "
                             f"latent), got {list(attributes.directions.shape)}")
        examples = np.zeros((0,) + served.image_shape, np.uint8) if examples is None else np.asarray(examples)
        if examples.dtype != np.uint8 or examples.shape[1:] != served.image_shape:
            raise ValueError(f"examples: expected uint8 [N, {', '.join(map(str, served.image_shape))}], got "
                             f"{examples.dtype} {list(examples.shape)}")
        if example_labels is not None and np.shape(example_labels) != (len(examples),):
            raise ValueError(f"example_labels: expected one label per example ([{len(examples)}]) or None, got "
                             f"{list(np.shape(example_labels))}")
        self.served, self.attributes, self.max_upload_bytes = served, attributes, max_upload_bytes
        self.examples, self.example_labels, self.name = examples, example_labels, name
        # TensorFlow could run two requests at once, but a request that reseeds the noise
        # generator and then draws from it must not interleave with another.
        self._lock = threading.Lock()

    def routes(self):
        """{path: method(body dict) -> answer dict} of the POST endpoints."""
        return {"/api/random": self.random, "/api/encode": self.encode, "/api/mix": self.mix,
                "/api/manipulate": self.manipulate}

    # ------------------------------------------------------------------------- GET
    def info(self):
        config = self.served.config
        labels = self.example_labels
        return {
            "model": {"name": self.name, "image_size": config["image_size"], "n_channels": config["n_channels"],
                      "n_levels": config["n_levels"], "depth": config["depth"], "ycond": self.served.ycond,
                      "n_y": config["n_y"], "latent_size": self.latent_size},
            "temperature": {"min": TEMPERATURE_RANGE[0], "max": TEMPERATURE_RANGE[1], "default": DEFAULT_TEMPERATURE},
            "samples": DEFAULT_SAMPLES,
            "mix": {"min": MIX_RANGE[0], "max": MIX_RANGE[1]},
            "alpha": {"min": ALPHA_RANGE[0], "max": ALPHA_RANGE[1]},
            "attributes": {"names": list(self.attributes.names), "source": self.attributes.source},
            "examples": [{"image": uploads.png_data_url(image), "label": None if labels is None else int(labels[i])}
                         for i, image in enumerate(self.examples)],
            "max_upload_bytes": self.max_upload_bytes,
        }

    # ------------------------------------------------------------------------ POST
    def random(self, body):
        """n samples at one temperature from ``seed`` (``sampling.sample_grid``): one seed at two
        temperatures is one latent draw at both; y absent: class i % n_y for image i."""
        temperature = inputs.number(body, "temperature", *TEMPERATURE_RANGE)
        n = inputs.integer(body, "n", 1, MAX_SAMPLES, DEFAULT_SAMPLES)
        seed = inputs.integer(body, "seed", 0, MAX_SEED, 0)
        y = self._label(body, required=False)
        with self._lock:
            images = sampling.sample_grid(self.served, n, [temperature], y, seed)[0]
        return {"images": [uploads.png_data_url(image) for image in images]}

    def encode(self, body):
        """An upload or a held-out image as the model sees it, its latent z and its reconstruction."""
        image, note = self._image(body)
        y = self._label(body, required=True)
        labels = self.served.labels(y, 1)
        with self._lock:
            self.served.reseed(ENCODE_SEED)
            eps = self.served.encode(image[np.newaxis], labels)
            reconstruction = self.served.decode(eps, labels)[0]
        return {"image": uploads.png_data_url(image), "reconstruction": uploads.png_data_url(reconstruction),
                "z": inputs.encode_latent(self.served.flatten(eps)[0]), "note": note}

    def mix(self, body):
        """The decoded z1 + alpha * (z2 - z1) (``sampling.interpolate_latents`` at t = alpha)."""
        z1, z2 = (inputs.latent(body, name, self.latent_size) for name in ("z1", "z2"))
        alpha = inputs.number(body, "alpha", *MIX_RANGE)
        y = self._label(body, required=True)
        ends = self.served.unflatten(np.stack([z1, z2]))  # per level [2, h, w, c]
        with self._lock:
            image = sampling.interpolate_latents(self.served, ends, [alpha], y)[0]
        return {"image": uploads.png_data_url(image)}

    def manipulate(self, body):
        """The decoded z + sum_k alphas[k] * direction_k (``sampling.manipulate_latent``)."""
        if not self.attributes.names:
            raise RequestError(BAD_REQUEST, f"manipulate: this demo has no attribute directions ({self.attributes.source})")
        z = inputs.latent(body, "z", self.latent_size)
        alphas = inputs.numbers(body, "alphas", len(self.attributes.names), *ALPHA_RANGE)
        y = self._label(body, required=True)
        with self._lock:
            image = sampling.manipulate_latent(self.served, z, self.attributes.shift(alphas), [1.0], y)[0]
        return {"image": uploads.png_data_url(image)}

    # --------------------------------------------------------------------- helpers
    def _label(self, body, required):
        return inputs.class_label(body, self.served.config["n_y"], self.served.ycond, required)

    def _image(self, body):
        """(uint8 [H, W, C], note) of the request's upload ('image') or held-out image ('example')."""
        given = [name for name in ("image", "example") if body.get(name) is not None]
        if len(given) != 1:
            raise RequestError(BAD_REQUEST, "expected one of image (a data URL of an image file) and example (the "
                                            f"index of a held-out image), got {' and '.join(given) or 'neither'}")
        if given == ["image"]:
            return uploads.read_upload(body["image"], self.served.image_shape, self.max_upload_bytes)
        if not len(self.examples):
            raise RequestError(BAD_REQUEST, "example: expected no example (this demo has no held-out images: upload "
                                            f"one), got {body['example']!r}")
        return self.examples[inputs.integer(body, "example", 0, len(self.examples) - 1)], ""

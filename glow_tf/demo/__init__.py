"""The interactive demo: a web page over a trained Glow, as the original's ``demo/`` had it.

``glow-demo --model PATH`` (``glow_tf/cli/demo.py``) serves the page and a JSON API on
127.0.0.1. Everything ships in this package (``web/``: the page, its script and style; no CDN),
and the server is the standard library's ``http.server``. The page has four views, each a
call of ``glow_tf.sampling`` (the code behind glow-sample):

* random samples (``sample_grid``): a temperature slider, new draws, a class for
  class-conditional models;
* encode: an upload or a held-out image, centre-cropped and resized as glow-sample reads
  images (``image_array``), encoded to its latent z and decoded back (``ServedGlow.encode`` and
  ``decode``, as ``reconstruct``, keeping z for the other views);
* mix (``interpolate_latents``): the latents of two images mixed by a slider, the original's
  ``mix``: z1 + alpha * (z2 - z1), alpha in [0, 1];
* manipulate (``manipulate_latent``): a slider per attribute direction, the original's
  ``manipulate_all``: z + sum_k alpha_k * direction_k, alpha_k in [-0.99, 0.99] (its page's
  range), directions in the original's ``z_manipulate.npy`` form (``attributes.py``).

The API (``api.py``), every POST body and every answer JSON; an error answers 4xx with
``{"error": message}`` (what was expected, what was seen), and the server goes on:

    GET  /api/info        the model, the attribute names, the held-out images, the slider ranges
    POST /api/random      {temperature, n?, y?, seed?}          -> {images: [PNG data URL]}
    POST /api/encode      {image: data URL | example: i, y?}    -> {image, reconstruction, z, note}
    POST /api/mix         {z1, z2, alpha, y?}                   -> {image}
    POST /api/manipulate  {z, alphas: [one per attribute], y?}  -> {image}

A latent z travels as base64 of its float32 values (little-endian, the flattened latent of
``glow_tf.latents``), as the original's server sent its latents to the page and back.
"""

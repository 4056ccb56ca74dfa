"""glow_tf.latents: the flattened latent, level 0 first (the original's flatten_eps / unflatten_eps)."""
import numpy as np

from glow_tf import latents

EPS_SHAPES = [(2, 2, 6), (1, 1, 24)]


def test_flatten_joins_the_levels_in_order_and_unflatten_inverts_it():
    rng = np.random.RandomState(0)
    eps = [rng.standard_normal((3,) + shape).astype(np.float32) for shape in EPS_SHAPES]
    flat = latents.flatten(eps).numpy()
    assert flat.shape == (3, latents.size(EPS_SHAPES)) == (3, 48)
    np.testing.assert_array_equal(flat[:, :24], eps[0].reshape(3, -1))  # level 0 first, NHWC order
    np.testing.assert_array_equal(flat[:, 24:], eps[1].reshape(3, -1))
    for back, e in zip(latents.unflatten(flat, EPS_SHAPES), eps):
        np.testing.assert_array_equal(back.numpy(), e)

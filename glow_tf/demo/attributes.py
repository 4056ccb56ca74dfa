"""The manipulation sliders' attribute directions, in the original's ``z_manipulate.npy`` form.

The original's ``get_manipulators.py`` saved, per CelebA attribute k, 1.6 * (mean latent of the
images with it - mean latent of the images without it) as row k of ``z_manipulate.npy``
(float32 [40, D], D the flattened latent); its page moved a latent z to
z + sum_k alpha_k * row_k with alpha_k in [-0.99, 0.99]. glow_tf takes such a file as it is
(``load_directions``), or makes one from a labelled data set (``from_class_means``): class k is an
attribute, its direction ``sampling.attribute_direction`` (glow-sample's) times the same 1.6.
The original's page also negated two rows (No_Beard, Young) to label them 'Beard' and 'Age';
here a slider is named by its row, and moving it right moves towards that attribute.
"""
import dataclasses
import os

import numpy as np

from glow_tf import sampling

MANIPULATION_SCALE = 1.6  # get_manipulators.py: z_manipulate = 1.6 * directions
ALPHA_RANGE = (-0.99, 0.99)  # the original page's attribute sliders (glowDemo.js FaceSlider: min, max)
# The 40 CelebA attributes in the order of the original's z_manipulate.npy (demo/model.py _TAGS).
CELEBA_ATTRIBUTES = tuple((
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair Blond_Hair "
    "Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones "
    "Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline "
    "Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young").split())


@dataclasses.dataclass(frozen=True)
class Attributes:
    """names: one per direction; directions: float32 [K, D] (z_manipulate.npy); source: where they came from."""
    names: tuple
    directions: np.ndarray
    source: str

    def shift(self, alphas) -> np.ndarray:
        """[D]: sum_k alphas[k] * directions[k] (the original's ``manipulate_all``)."""
        return np.asarray(alphas, np.float32) @ self.directions


def no_attributes(latent_size, reason) -> Attributes:
    """No sliders; ``reason`` tells the page why."""
    return Attributes((), np.zeros([0, latent_size], np.float32), reason)


def load_directions(path, latent_size, names=()) -> Attributes:
    """The original's z_manipulate.npy format at ``path``: float32 [K, D], already scaled by 1.6.

    names: K attribute names; none: CELEBA_ATTRIBUTES for K = 40 (the original's file), else
    'direction k'. A ValueError says what is wrong with the file.
    """
    path = os.fspath(path)
    try:
        directions = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"directions: expected a .npy file of float32 [K, {latent_size}] (the original's "
                         f"z_manipulate.npy), got {path!r}, which cannot be read ({e})") from None
    if directions.ndim != 2 or directions.shape[1] != latent_size or not np.issubdtype(directions.dtype, np.floating):
        raise ValueError(f"directions: expected float32 [K, {latent_size}] (K directions in this model's flattened "
                         f"latent), got {directions.dtype} {list(directions.shape)} in {path!r}")
    if not np.isfinite(directions).all():
        raise ValueError(f"directions: expected finite values, got NaN or infinity in {path!r}")
    count = len(directions)
    if not names:
        names = CELEBA_ATTRIBUTES if count == len(CELEBA_ATTRIBUTES) else [f"direction {k}" for k in range(count)]
    if len(names) != count:
        raise ValueError(f"attribute_names: expected {count} names (one per row of {path!r}), got {len(names)}")
    return Attributes(tuple(names), directions.astype(np.float32), f"{os.path.basename(path)}: {count} directions")


def from_class_means(means, counts, description) -> Attributes:
    """A direction per class with images of it and of other classes (``sampling.attribute_direction``,
    times MANIPULATION_SCALE); ``description``: the images the means are of."""
    usable = [k for k in range(len(counts)) if counts[k] and counts.sum() > counts[k]]
    directions = [MANIPULATION_SCALE * sampling.attribute_direction(means, counts, k) for k in usable]
    source = (f"mean latent of a class - mean latent of the other classes over {description}, "
              f"x{MANIPULATION_SCALE:g} as the original's z_manipulate.npy")
    directions = np.asarray(directions, np.float32).reshape(len(usable), means.shape[1])
    return Attributes(tuple(f"class {k}" for k in usable), directions, source)

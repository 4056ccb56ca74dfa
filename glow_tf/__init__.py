"""glow_tf: Glow (Kingma & Dhariwal, 2018) in TensorFlow 2, faithful to the original OpenAI code."""
import os

# TFP and tf.keras must see Keras 2 (tf_keras); set before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from glow_tf.config import GlowConfig  # noqa: E402
from glow_tf.model import Glow  # noqa: E402

__all__ = ["Glow", "GlowConfig"]
__version__ = "0.1.0"

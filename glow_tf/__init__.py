"""glow_tf: Glow (Kingma & Dhariwal, 2018) in TensorFlow 2, faithful to the original OpenAI code."""
from glow_tf import _env  # noqa: F401  first: the environment TensorFlow reads when it is imported
from glow_tf.config import GlowConfig
from glow_tf.model import Glow

__all__ = ["Glow", "GlowConfig"]
__version__ = "0.1.0"

"""glow_tf: Glow (Kingma & Dhariwal, 2018) in TensorFlow 2, faithful to the original OpenAI code.

``Glow`` and ``GlowConfig`` load on first use (``glow_tf.Glow``, ``from glow_tf import Glow``): a
bare ``import glow_tf`` loads nothing else and changes nothing in the process (the programs'
environment is ``glow_tf/cli/console.py``'s).
"""
__all__ = ["Glow", "GlowConfig"]
__version__ = "0.1.0"


def __getattr__(name):
    if name == "Glow":
        from glow_tf.model import Glow
        return Glow
    if name == "GlowConfig":
        from glow_tf.config import GlowConfig
        return GlowConfig
    raise AttributeError(f"module 'glow_tf' has no attribute {name!r}")

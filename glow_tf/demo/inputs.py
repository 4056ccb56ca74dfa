"""The fields of the API's requests, each checked: a RequestError says what was expected and what was seen.

A request body is a JSON object; JSON's true and false are not numbers here (Python counts them
as ints), and a number must be finite.
"""
import base64
import binascii
import math

import numpy as np

# HTTP statuses of bad requests: malformed or out of range, too large, an image of a kind the model cannot take.
BAD_REQUEST, TOO_LARGE, UNSUPPORTED = 400, 413, 415


class RequestError(ValueError):
    """A request the API refuses: ``status`` (4xx) and a message for the page."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _given(body, name):
    if name not in body or body[name] is None:
        raise RequestError(BAD_REQUEST, f"{name}: expected a value, got none")
    return body[name]


def number(body, name, low, high) -> float:
    """``body[name]``, a number in [low, high]."""
    value = _given(body, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise RequestError(BAD_REQUEST, f"{name}: expected a number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def integer(body, name, low, high, default=None) -> int:
    """``body[name]``, an int in [low, high]; ``default`` when it is absent or null (None: required)."""
    if body.get(name) is None and default is not None:
        return default
    value = _given(body, name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(BAD_REQUEST, f"{name}: expected an integer in [{low}, {high}], got {value!r}")
    return value


def numbers(body, name, count, low, high) -> np.ndarray:
    """float32 [count] of ``body[name]``, a list of ``count`` numbers in [low, high]."""
    values = _given(body, name)
    if (not isinstance(values, list) or len(values) != count
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high for v in values)):
        shown = f"a list of {len(values)}" if isinstance(values, list) and len(values) > 8 else repr(values)
        raise RequestError(BAD_REQUEST, f"{name}: expected a list of {count} numbers in [{low:g}, {high:g}] (one "
                                        f"per attribute), got {shown}")
    return np.asarray(values, np.float32)


def class_label(body, n_y, ycond, required):
    """``body['y']``: a class in [0, n_y) for class-conditional models, where ``required`` (else None
    when absent); nothing for the others."""
    if not ycond:
        if body.get("y") is not None:
            raise RequestError(BAD_REQUEST, f"y: this model is not class-conditional; expected no class, got "
                                            f"{body['y']!r}")
        return None
    if body.get("y") is None and not required:
        return None
    return integer(body, "y", 0, n_y - 1)


def latent(body, name, size) -> np.ndarray:
    """float32 [size]: ``body[name]``, base64 of ``size`` little-endian float32s (``encode_latent``)."""
    text = _given(body, name)
    expected = f"{name}: expected a latent (base64 of {size} float32 values, as /api/encode answers)"
    try:
        raw = base64.b64decode(text, validate=True) if isinstance(text, str) else None
    except binascii.Error:
        raw = None
    if raw is None:
        raise RequestError(BAD_REQUEST, f"{expected}, got {_abbreviated(text)}")
    if len(raw) != 4 * size:
        raise RequestError(BAD_REQUEST, f"{expected}, got {len(raw) / 4:g} values")
    z = np.frombuffer(raw, "<f4").astype(np.float32)
    if not np.isfinite(z).all():
        raise RequestError(BAD_REQUEST, f"{expected}, got {np.count_nonzero(~np.isfinite(z))} values that are not "
                                        "finite")
    return z


def encode_latent(z) -> str:
    """The wire form of a flattened latent [D] (what ``latent`` reads)."""
    return base64.b64encode(np.asarray(z, "<f4").tobytes()).decode("ascii")


def latent_text_size(size) -> int:
    """Characters of ``encode_latent`` of a latent of ``size`` values."""
    return 4 * math.ceil(4 * size / 3)


def _abbreviated(value, limit=40):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"

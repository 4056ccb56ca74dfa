"""Images in and out of the API: an upload read into the model's images, an image as a PNG data URL.

An upload arrives as a data URL (``data:<type>;base64,<file>``: what the page's FileReader
gives, and what the original's /api/align_encode took). Its file is read in memory, never
written, and refused with a RequestError when it is larger than ``max_bytes`` or has more than
``max_pixels`` pixels (413: a small PNG can hold a huge image), when PIL cannot read it (400) or
when it has more than 8 bits per channel (415). The rest is glow-sample's reading rule
(``sampling.image_array``): converted to the model's channels, centre-cropped and resized.
"""
import base64
import binascii
import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from glow_tf import sampling
from glow_tf.data.errors import DataError
from glow_tf.demo.inputs import BAD_REQUEST, TOO_LARGE, UNSUPPORTED, RequestError

# Pixels of the largest upload read: a 25-megapixel photo (about 75 MB decoded as RGB).
MAX_PIXELS = 25_000_000
_EXPECTED = "an image file PIL can read (PNG, JPEG, GIF, BMP, WebP, TIFF)"


def read_upload(data_url, image_shape, max_bytes, max_pixels=MAX_PIXELS):
    """(uint8 [H, W, C] as the model sees the upload, a note on how it was fitted or '')."""
    data = _file_of(data_url, max_bytes)
    try:
        opened = Image.open(io.BytesIO(data))  # reads the header only
    except UnidentifiedImageError:
        raise RequestError(BAD_REQUEST, f"image: expected {_EXPECTED}, got a file of no image format it knows "
                                        f"(starting {data[:16]!r})") from None
    except Image.DecompressionBombError as e:  # PIL's own limit, above ours
        raise RequestError(TOO_LARGE, f"image: expected at most {max_pixels:,} pixels, got more ({e})") from None
    with opened as image:
        width, height = image.size
        if width * height > max_pixels:
            raise RequestError(TOO_LARGE, f"image: expected at most {max_pixels:,} pixels, got {width}x{height}")
        try:
            array = sampling.image_array(image, image_shape, "the uploaded image")
        except DataError as e:  # more than 8 bits per channel
            raise RequestError(UNSUPPORTED, str(e)) from None
        except (OSError, SyntaxError) as e:  # PIL's errors for damaged data, met while decoding
            raise RequestError(BAD_REQUEST, f"image: expected {_EXPECTED}, got a file it cannot read ({e})") from None
    fitted = (height, width) != image_shape[:2]
    note = f"centre-cropped and resized from {width}x{height} to {image_shape[1]}x{image_shape[0]}" if fitted else ""
    return array, note


def _file_of(data_url, max_bytes) -> bytes:
    """The bytes of a base64 data URL, at most ``max_bytes`` of them (the server caps the request's
    size, so the data URL is decoded before it is measured)."""
    head, comma, payload = data_url.partition(",") if isinstance(data_url, str) else ("", "", "")
    if not (comma and head.startswith("data:") and head.endswith(";base64")):
        shown = repr(data_url[:40]) + "..." if isinstance(data_url, str) else type(data_url).__name__
        raise RequestError(BAD_REQUEST, f"image: expected a base64 data URL (data:<type>;base64,<file>), got {shown}")
    try:
        data = base64.b64decode(payload, validate=True)
    except binascii.Error as e:
        raise RequestError(BAD_REQUEST, f"image: expected a base64 data URL, got one whose data is not base64 ({e})") \
            from None
    if len(data) > max_bytes:
        raise RequestError(TOO_LARGE, f"image: expected a file of at most {max_bytes:,} bytes, got {len(data):,}")
    if not data:
        raise RequestError(BAD_REQUEST, f"image: expected {_EXPECTED}, got an empty file")
    return data


def png_data_url(image) -> str:
    """A PNG data URL of uint8 [H, W, C] (C = 1 or 3), as the original's ``serialise_img``."""
    image = np.asarray(image)
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")

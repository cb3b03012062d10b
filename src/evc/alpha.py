"""The alpha plane of an image with transparency, coded losslessly apart from its colours.

evc's networks code the colours; the alpha plane (0 transparent .. 255 opaque, straight, not
premultiplied) is coded exactly by libwebp's lossless coder (WebP's VP8L, through Pillow), a gray image
whose green channel is the alpha, as WebP codes its own alpha planes. On real icons and web graphics it
gave 15-85% fewer bytes than zlib or PNG of the same plane (benchmarks/alpha_cost.py). The block is a
complete WebP file of one VP8L chunk (format version 4, flag 0x20, docs/format.md); WebP limits its sides to 16383 pixels,
so an image with transparency beyond that is refused.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, features

from evc.errors import FormatError, ImageError
from evc.image import _PILLOW_LIMIT  # Pillow's decompression-bomb limit is process-wide: one lock for it

MAX_SIDE = 16383  # WebP's largest width or height
# libwebp's effort (method 0-6, quality 0-100 for lossless): method 6 saves 1-2% for 10-100x the time.
_WEBP_OPTIONS = {"lossless": True, "quality": 100, "method": 4, "exact": True}


def _check_webp(action: str) -> None:
    if not features.check("webp"):
        raise (ImageError if action == "code" else FormatError)(
            f"this Pillow has no WebP support, which evc needs to {action} an alpha plane; install a Pillow built with libwebp"
        )


def encode_alpha(alpha: np.ndarray) -> bytes:
    """The lossless block of an (H, W) uint8 alpha plane (a WebP lossless file).

    Raises ImageError for a plane WebP cannot hold (a side over 16383 pixels) or when Pillow lacks WebP.
    """
    if alpha.ndim != 2 or alpha.dtype != np.uint8:
        raise ValueError(f"an alpha plane is an (H, W) uint8 array, got {alpha.shape} {alpha.dtype}")
    height, width = alpha.shape
    if max(width, height) > MAX_SIDE:
        raise ImageError(
            f"evc codes transparency only in images of at most {MAX_SIDE} pixels a side (WebP's limit), "
            f"not {width}x{height}; flatten the image or crop it"
        )
    _check_webp("code")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(alpha), "L").convert("RGB").save(buffer, "WEBP", **_WEBP_OPTIONS)
    return buffer.getvalue()


def decode_alpha(block: bytes, width: int, height: int) -> np.ndarray:
    """The (height, width) uint8 alpha plane of a block made by :func:`encode_alpha`.

    Its size is checked against the file's before the pixels are decoded. Raises FormatError for a
    block that is not a lossless WebP image of that size, or that libwebp cannot decode.
    """
    _check_webp("decode")
    if not (block[:4] == b"RIFF" and block[8:16] == b"WEBPVP8L"):
        raise FormatError("corrupt alpha plane: not a lossless WebP image")
    try:
        with _PILLOW_LIMIT, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            previous = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None  # the file's size, checked below, is bounded by the codec's limit
            try:
                with Image.open(io.BytesIO(block), formats=["WEBP"]) as image:
                    if image.size != (width, height):
                        raise FormatError(
                            f"corrupt alpha plane: {image.size[0]}x{image.size[1]} pixels in a {width}x{height} image"
                        )
                    image.load()
                    green = image.getchannel("G") if "G" in image.getbands() else image.convert("L")
                    return np.array(green, dtype=np.uint8)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except FormatError:
        raise
    except Exception as exc:  # Pillow's and libwebp's errors for a damaged block (OSError, SyntaxError, ...)
        raise FormatError(f"corrupt alpha plane: libwebp cannot decode it ({type(exc).__name__})") from None

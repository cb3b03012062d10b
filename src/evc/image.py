"""Images in and out: image files, PIL images, numpy arrays and tensors to the codec's RGB array, and back.

One path for every caller (the API, the command line, evaluation): :func:`open_image` opens files,
:func:`to_input` turns anything accepted into what the codec codes.

Rules (each deliberate, each tested):
- Files: the first frame of a multi-frame file is coded, with a warning; evc's own pixel limit
  (``max_pixels``) replaces Pillow's decompression-bomb limit.
- EXIF orientation is applied (to files and to PIL images alike): evc codes what viewers show. The
  EXIF block (orientation tag removed once applied, as Pillow's exif_transpose does) and the XMP packet
  are carried in the file (format version 4) unless the caller strips them.
- Every mode is of a kind (GRAY_MODES, COLOUR_MODES) and decodes to that kind's mode, whatever its
  bit depth and whether it had an opaque alpha band: gray kinds to "L", colour kinds to "RGB"; with
  transparency, "LA" and "RGBA".
- RGB is coded as is. Grayscale ("L", "1", "LA", "La") is coded as RGB with equal channels.
- 16-bit and 32-bit integer grayscale ("I;16*", "I") is scaled to 8 bits: round(v / 257), clipped to
  0..255 (evc codes 8-bit images). Every image of more than 8 bits per channel (these, uint16 arrays,
  and the 16-bit files Pillow reads as 8 bits) warns once (UserWarning) that it is coded at 8 bits. Float images ("F") are refused: their range is unknown. Pillow
  reads 16-bit colour and gray-with-alpha PNGs as 8-bit (their high bytes), and a 16-bit gray PNG with
  alpha as RGBA: evc reads that one back as gray ("LA") when it opens the file (:func:`_as_stored`).
- An alpha band ("RGBA", "RGBa", "LA", "La", "PA"), palette transparency or a colour key (PNG tRNS)
  is dropped when every pixel is fully opaque; with any transparency it becomes the image's alpha plane
  (straight: premultiplied "a" modes are un-premultiplied by Pillow), coded losslessly apart from the
  colours (:mod:`evc.alpha`, format version 4). Errors name the image's own mode, never one evc
  converted it to.
- Palette ("P", "PA") is expanded to RGB. YCbCr, LAB and HSV are converted to RGB by Pillow.
- Colour profiles: an embedded ICC profile of an image coded as is (RGB, gray, palette) is carried in
  the file unchanged and restored on decoding, so the pixel values and their meaning both survive.
  CMYK with a profile is converted to sRGB by LittleCMS (Pillow's ImageCms); CMYK without one by
  Pillow's plain formula. A profile of another colour space than the coded values (an RGB image
  with a CMYK or LAB profile) is ignored with a warning; an sRGB profile is not stored, since untagged
  images are sRGB.
"""

from __future__ import annotations

import io
import os
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
import sys
from typing import TYPE_CHECKING, BinaryIO, Literal, Union

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from evc.arguments import DEFAULT_MAX_PIXELS  # why this limit: there
from evc.entropy.streams import PIXELS_PER_HYPER_LATENT as PADDING_MULTIPLE  # the networks' whole input
from evc.errors import ImageError
from evc.icc import profile_description

if TYPE_CHECKING:  # torch only for tensors, which a caller passes with torch loaded (evc.onnx.runtime has none)
    import torch

ColourMode = Literal["RGB", "L"]
# An image file's bytes, or a binary file object holding one, is opened like a path.
ImageInput = Union[Image.Image, np.ndarray, "torch.Tensor", str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]


# Every mode Pillow has, by kind: a gray kind is coded as gray and decoded as "L", a colour kind decoded
# as "RGB", whatever the bit depth and whether an (opaque) alpha band came along. "F" is refused.
WIDE_GRAY_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})  # scaled to 8 bits
GRAY_MODES = frozenset({"1", "L", "LA", "La"}) | WIDE_GRAY_MODES
COLOUR_MODES = frozenset({"RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"})
ALPHA_MODES = frozenset({"LA", "La", "RGBA", "RGBa", "PA"})  # "a": alpha premultiplied
_CONVERTED_TO_RGB = {"CMYK", "YCbCr", "LAB", "HSV"}  # by Pillow's formulas
_KEYED_GRAY = {"1", "L"} | WIDE_GRAY_MODES  # gray modes a colour key (PNG tRNS) can come with
_EXIF_ORIENTATION = 0x0112
_PROFILE_SPACES = {"RGB": b"RGB ", "L": b"GRAY"}  # ICC header colour space of the values coded

# Pillow's decompression-bomb limit is a process-wide setting; evc swaps in its own limit only while it
# opens a file, under this lock, so concurrent evc calls do not undo each other's setting.
_PILLOW_LIMIT = threading.Lock()


@dataclass(frozen=True)
class InputImage:
    """What the codec codes: pixels, the colour mode to restore, and the ICC profile to carry."""

    rgb: np.ndarray  # (H, W, 3) uint8
    colour: ColourMode
    icc_profile: bytes | None = None
    exif: bytes | None = None  # the EXIF block as Pillow gives it (image.info["exif"]), orientation applied
    xmp: bytes | None = None  # the XMP packet (image.info["xmp"])
    alpha: np.ndarray | None = None  # (H, W) uint8 straight alpha, 0 transparent; None when fully opaque


# How the encoder fills an image out to multiples of 64 before the networks see it (the decoder crops
# whatever was there): "auto" repeats the edge pixels ("replicate", torch.nn.functional.pad's mode) for
# an image with a side under 64 pixels, where black borders ("constant", zeros) are most of what the
# networks see, and pads with zeros otherwise. Measured 2026-12-07 (issue 38): on a 1x1 pixel and 8x8
# Kodak crops replicating wins by far (benchmarks/padding.py); on the validation split's photos, whose
# sides are all over 64, it cost 0.64 % more rate (BD-rate, shipped v3) than zeros. "constant" or
# "replicate" forces one mode (benchmarks/padding.py sets it).
PADDING_MODE = "auto"
SMALL_SIDE = 64


def padding_mode(width: int, height: int) -> str:
    """The padding mode ("constant" or "replicate") the encoder uses for an image of ``width`` x
    ``height`` pixels."""
    if PADDING_MODE != "auto":
        return PADDING_MODE
    return "replicate" if min(width, height) < SMALL_SIDE else "constant"


def network_input(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> the analysis transform's input: (1, 3, H', W') float32 in [0, 1], H' and W'
    padded to multiples of 64 as :func:`padding_mode` says (the values the PyTorch codec pads
    :func:`rgb_to_tensor`'s to, tests/test_onnx.py checks)."""
    height, width = rgb.shape[:2]
    x = np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0)
    pad = ((0, 0), (0, 0), (0, padded(height) - height), (0, padded(width) - width))
    return np.pad(x, pad, mode="edge" if padding_mode(width, height) == "replicate" else "constant")


def to_pixels(x: np.ndarray) -> np.ndarray:
    """(1, 3, H, W) float reconstruction -> (H, W, 3) uint8, clamped to [0, 1] and rounded (half to even)."""
    return np.round(np.clip(x[0], 0.0, 1.0) * np.float32(255.0)).astype(np.uint8).transpose(1, 2, 0)


def padded(size: int) -> int:
    """An image side padded to the multiple of 64 the networks process."""
    return -(-size // PADDING_MULTIPLE) * PADDING_MULTIPLE


def padded_pixels(width: int, height: int) -> int:
    """Pixels the networks process for a width x height image (both sides padded to multiples of 64)."""
    return padded(width) * padded(height)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error of two equally shaped 8-bit images, on [0, 1] values. Raises ValueError
    when the shapes differ."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)) / 255.0**2


def check_pixel_limit(width: int, height: int, max_pixels: int, what: str = "image") -> None:
    """Raise ImageError when a width x height image exceeds ``max_pixels`` once padded."""
    padded = padded_pixels(width, height)
    if padded > max_pixels:
        raise ImageError(
            f"{what} of {width}x{height} pixels ({padded} once padded to multiples of {PADDING_MULTIPLE}) "
            f"exceeds the limit of {max_pixels} pixels (max_pixels, --max-pixels)"
        )


def open_image(source: str | os.PathLike | BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open an image file the way evc codes it, for the API and the command line alike.

    ``source``: a path, or a binary file object (e.g. standard input read into ``io.BytesIO``).
    Returns the loaded first frame as a PIL image (EXIF orientation and colour profile still attached:
    :func:`to_input` applies them). Warns (``UserWarning``) when the file has more than one frame.
    Raises ImageError for a missing or unreadable file, a format Pillow does not know, or an image over
    ``max_pixels`` (counted once padded to multiples of 64), checked before the pixels are decoded.
    """
    name = _source_name(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageError(f"input {name} not found")
        if not path.is_file():
            raise ImageError(f"input {name} is not a file")
    image, frames = None, 1
    try:
        with _PILLOW_LIMIT, warnings.catch_warnings():
            previous = Image.MAX_IMAGE_PIXELS
            # Pillow raises above 2x its limit and warns above 1x; as errors, both refuse exactly what
            # exceeds max_pixels, also for sizes met inside the file (frames, tiles) after the header.
            Image.MAX_IMAGE_PIXELS = max_pixels
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                image = Image.open(source)
                check_pixel_limit(image.width, image.height, max_pixels, f"{name}: image")
                frames = getattr(image, "n_frames", 1)
                stored = _as_stored(image)  # loads the pixels
                if stored is not image:  # a converted copy: the file's own image is done with
                    _close(image)
                    image = stored
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except ImageError:
        _close(image)
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        _close(image)
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        size = f" of {pixels.group(1)} pixels" if pixels else ""
        raise ImageError(f"{name}: image{size} exceeds the limit of {max_pixels} pixels (max_pixels, --max-pixels)") from None
    except UnidentifiedImageError:
        _close(image)
        raise ImageError(f"cannot read {name}: not an image format Pillow recognises") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        _close(image)
        raise ImageError(f"cannot read {name}: {exc}") from None
    if frames > 1:
        warnings.warn(f"{name} has {frames} frames; coding the first", UserWarning, stacklevel=2)
    return image


def _source_name(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fsdecode(source)
    name = getattr(source, "name", None)
    if isinstance(name, (str, bytes, os.PathLike)):
        return os.fsdecode(name)
    return f"the {type(source).__name__} passed"


def _file_source(image: object) -> BinaryIO | None:
    """An image file given as bytes or as a binary file object, ready for :func:`open_image` (bytes are
    wrapped in a file object named after them); None for anything else. Raises ImageError for a
    text-mode file object, naming it."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        source = io.BytesIO(data)
        source.name = f"the {len(data)} bytes passed"  # type: ignore[attr-defined]
        return source
    if not callable(getattr(image, "read", None)):
        return None
    if isinstance(image, io.TextIOBase):
        raise ImageError(f"{_source_name(image)} is open in text mode; open the image file in binary mode ('rb')")
    return image  # type: ignore[return-value]


def _close(image: Image.Image | None) -> None:
    if image is not None:
        image.close()


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (the image is copied only when it has one to apply)."""
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a malformed EXIF block: viewers ignore it, and so does evc
        return image
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(image)
    return image


def _cmyk_to_srgb(image: Image.Image, profile: bytes) -> Image.Image:
    """Colour-managed CMYK -> sRGB with the image's own profile (perceptual intent)."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        raise ImageError(
            f"cannot convert the {image.mode} image to sRGB with its embedded ICC profile ({exc}); "
            "convert it to RGB first"
        ) from None


def _matching(profile: bytes | None, colour: ColourMode) -> bytes | None:
    """The profile if it describes ``colour`` values (its header's colour space), else None with a
    warning: a profile of another colour space (left behind by a conversion, or simply wrong) would
    give the decoded colours a meaning they do not have."""
    if profile is None:
        return None
    space = profile[16:20] if len(profile) >= 128 else b""
    if space == _PROFILE_SPACES[colour]:
        if colour == "RGB" and (profile_description(profile) or "").lower().startswith("srgb"):
            return None  # untagged means sRGB: storing it would add bytes, not meaning
        return profile
    shown = space.decode("latin-1").strip() if space else "unreadable"
    warnings.warn(
        f"ignoring the image's ICC profile: it describes {shown!r} values, not {colour}; coded as untagged (sRGB)",
        UserWarning, stacklevel=4,
    )
    return None


def pil_to_input(image: Image.Image) -> InputImage:
    """A PIL image (any frame already selected) -> what the codec codes; see the module rules."""
    if image.width < 1 or image.height < 1:
        raise ImageError(f"image is empty ({image.width}x{image.height})")
    image = _upright(_as_stored(image))
    coded = _pil_to_input(image)
    exif, xmp = _metadata(image)
    return InputImage(coded.rgb, coded.colour, _matching(coded.icc_profile, coded.colour), exif, xmp, coded.alpha)


def _metadata(image: Image.Image) -> tuple[bytes | None, bytes | None]:
    """The EXIF block and XMP packet of an upright image, as Pillow read them (after an EXIF orientation
    was applied, Pillow's exif_transpose has removed that tag, so the block says 1)."""
    exif = image.info.get("exif")
    xmp = image.info.get("xmp")
    if isinstance(xmp, str):  # PNG's iTXt packet comes as text
        xmp = xmp.encode("utf-8")
    if not isinstance(exif, bytes) or _empty_exif(exif):
        exif = None
    return exif, (xmp if isinstance(xmp, bytes) and xmp else None)


def _empty_exif(exif: bytes) -> bool:
    """Whether an EXIF block holds no tag (e.g. one whose only tag, the orientation, was applied)."""
    if not exif:
        return True
    parsed = Image.Exif()
    try:
        parsed.load(exif)
    except Exception:  # a block Pillow cannot parse is carried as it is
        return False
    return len(parsed) == 0


def _pil_to_input(image: Image.Image) -> InputImage:
    """An upright image, as stored (:func:`_as_stored`) -> its pixels, colour mode and profile."""
    profile = image.info.get("icc_profile") or None
    if profile is not None and not isinstance(profile, bytes):
        profile = None  # not an ICC profile Pillow read from a file
    mode = image.mode  # the user's mode: every error names it, never a mode evc converted to
    if mode == "F":
        raise ImageError("floating-point images (mode F) are not supported: convert to 8-bit first")
    if mode not in GRAY_MODES and mode not in COLOUR_MODES:
        raise ImageError(f"unsupported image mode {mode!r}")
    alpha = _alpha_plane(image, mode)
    if mode in WIDE_GRAY_MODES:
        _warn_wide(mode)
    if mode in GRAY_MODES:
        gray = _gray8(image if alpha is None or mode != "La" else image.convert("LA"), mode)
        return InputImage(np.repeat(gray[:, :, None], 3, axis=2), "L", profile, alpha=alpha)
    if mode == "CMYK" and profile is not None:
        # The profile describes the CMYK values, not any RGB: convert under it, carry nothing.
        return InputImage(np.asarray(_cmyk_to_srgb(image, profile), dtype=np.uint8), "RGB", None)
    if mode in _CONVERTED_TO_RGB:
        # The profile of the converted values, as Pillow's conversion leaves it (LAB -> RGB tags sRGB);
        # it goes along only if it describes RGB values (checked by the caller).
        converted = image.convert("RGB")
        kept = converted.info.get("icc_profile") or None
        return InputImage(np.asarray(converted, dtype=np.uint8), "RGB", kept if isinstance(kept, bytes) else None)
    if mode in ("P", "PA") or (mode == "RGBa" and alpha is not None):
        image = image.convert("RGBA")  # the palette's colours; RGBa's un-premultiplied
    # RGB, RGBA, RGBa whose fourth band is opaque (premultiplied equals straight then), RGBX (unused band).
    rgb = np.ascontiguousarray(np.asarray(image, dtype=np.uint8)[:, :, :3])
    return InputImage(rgb, "RGB", profile, alpha=alpha)


def _as_stored(image: Image.Image) -> Image.Image:
    """The image with what Pillow's PNG reader loses put back, loaded (a new image when anything changes).

    Pillow reads a 16-bit gray-with-alpha PNG as RGBA (equal colour channels): it is gray, so it becomes
    LA (high bytes, as Pillow reads every 16-bit PNG but gray). Pillow keeps a PNG colour key (tRNS) in
    the file's units while it scales the pixels: the key of a 2- or 4-bit gray PNG is scaled like them,
    and that of a 16-bit RGB PNG (whose pixels Pillow keeps the high bytes of) becomes its high bytes, so
    that every possibly transparent pixel matches it. This needs the file's raw mode, which Pillow tells
    only until the pixels are loaded: :func:`open_image` and images passed unloaded (``Image.open``) get
    it; an image loaded elsewhere is taken as Pillow gives it.
    """
    tile = getattr(image, "tile", None) or []
    rawmode = tile[0].args if image.format == "PNG" and tile and isinstance(tile[0].args, str) else None
    if image.mode not in WIDE_GRAY_MODES and _stored_wide(image):  # wide gray modes: warned by _pil_to_input
        _warn_wide("LA" if rawmode == "LA;16B" else image.mode)  # the file's mode, as errors name it
    image.load()
    key = image.info.get("transparency")
    if rawmode == "LA;16B" and image.mode == "RGBA":
        return image.convert("LA")  # keeps image.info (the ICC profile)
    bits = {"L;2": 2, "L;4": 4}.get(rawmode or "")
    if bits is not None and isinstance(key, int):
        return _with_key(image, key * (255 // (2**bits - 1)))
    if rawmode == "RGB;16B" and isinstance(key, tuple):
        return _with_key(image, tuple(int(v) >> 8 for v in key))
    return image


def _stored_wide(image: Image.Image) -> bool:
    """Whether the file an unloaded image comes from stores more than 8 bits per channel, which Pillow
    reads as 8 (16-bit colour PNG, TIFF and PPM): its raw mode, or a PPM's maximum value, tells."""
    tile = getattr(image, "tile", None) or []
    if not tile:
        return False
    args = tile[0].args
    rawmode = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else None
    if isinstance(rawmode, str) and (";16" in rawmode or ";32" in rawmode):
        return True
    return tile[0].codec_name == "ppm" and isinstance(args, tuple) and len(args) > 1 and isinstance(args[1], int) and args[1] > 255


def _warn_wide(mode: str) -> None:
    """The one warning an image of more than 8 bits per channel gets: evc codes 8 bits."""
    warnings.warn(
        f"the {mode} image has more than 8 bits per channel; evc codes it at 8 bits per channel",
        UserWarning, stacklevel=5,
    )


def _with_key(image: Image.Image, key: int | tuple[int, ...]) -> Image.Image:
    """A copy of ``image`` whose colour key is ``key`` (the caller's image is left as it was)."""
    copy = image.copy()
    copy.info["transparency"] = key
    return copy


def _alpha_plane(image: Image.Image, mode: str) -> np.ndarray | None:
    """The (H, W) uint8 alpha plane of an image with any pixel not fully opaque, by its alpha band, its
    palette's transparency or its colour key (PNG tRNS: 0 where a pixel has the key's colour); None
    when every pixel is opaque (a key whose colour no pixel has is ignored)."""
    alpha: np.ndarray | None = None
    if mode in ("P", "PA"):
        alpha = np.asarray(image.convert("RGBA").getchannel("A"))
    elif mode in ALPHA_MODES:
        alpha = np.asarray(image.getchannel(image.getbands()[-1]))
    else:
        key = image.info.get("transparency")
        if mode in _KEYED_GRAY and isinstance(key, int):
            values = np.asarray(image.convert("L") if mode == "1" else image, dtype=np.int64)
            alpha = np.where(values == key, 0, 255).astype(np.uint8)
        elif mode == "RGB" and isinstance(key, tuple) and len(key) == 3:
            alpha = np.where((np.asarray(image) == np.asarray(key)).all(axis=2), 0, 255).astype(np.uint8)
    if alpha is None or not alpha.size or alpha.min() == 255:
        return None
    return np.ascontiguousarray(alpha, dtype=np.uint8)


def _gray8(image: Image.Image, mode: str) -> np.ndarray:
    """(H, W) uint8 gray values of a gray-kind image (its alpha straight, if not opaque)."""
    if mode in WIDE_GRAY_MODES:
        wide = np.asarray(image, dtype=np.int64)
        return np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)
    if mode in ("LA", "La"):
        return np.asarray(image.getchannel("L"), dtype=np.uint8)  # premultiplied by 1 when opaque
    return np.asarray(image.convert("L"), dtype=np.uint8)


def pil_to_array(image: Image.Image) -> tuple[np.ndarray, ColourMode]:
    """(H, W, 3) uint8 RGB array and the colour mode to restore on decoding."""
    coded = pil_to_input(image)
    return coded.rgb, coded.colour


def array_to_rgb(array: np.ndarray) -> tuple[np.ndarray, ColourMode]:
    """Accept (H, W) or (H, W, 1|3) arrays: uint8, uint16 (scaled by 1/257), or float in [0, 1]."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ImageError(f"expected an array of shape (H, W) or (H, W, 3), got {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageError(f"image is empty (shape {array.shape})")
    if array.dtype == np.uint8:
        data = array
    elif array.dtype == np.uint16:
        _warn_wide(f"uint16 {'gray' if array.ndim == 2 else 'RGB'}")
        data = np.clip(np.rint(array / 257.0), 0, 255).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageError("image contains NaN or infinite values")
        if array.min() < 0.0 or array.max() > 1.0:
            raise ImageError("float images must have values in [0, 1]")
        data = np.rint(array.astype(np.float64) * 255.0).astype(np.uint8)
    else:
        raise ImageError(f"unsupported array dtype {array.dtype}; use uint8, uint16 or float in [0, 1]")
    if data.ndim == 2:
        return np.repeat(data[:, :, None], 3, axis=2), "L"
    return np.ascontiguousarray(data), "RGB"


def _tensor_to_rgb(image: torch.Tensor) -> tuple[np.ndarray, ColourMode]:
    import torch

    t = image.detach().cpu()
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ImageError(f"expected one image, got a batch of {t.shape[0]}")
        t = t[0]
    if t.dim() == 3:
        if t.shape[0] not in (1, 3):
            raise ImageError(f"expected a tensor of shape (C, H, W) with C = 1 or 3, got {tuple(image.shape)}")
        t = t.permute(1, 2, 0)
    elif t.dim() != 2:
        raise ImageError(f"expected a tensor of shape (H, W), (C, H, W) or (1, C, H, W), got {tuple(image.shape)}")
    if t.dtype == torch.bfloat16 or t.dtype == torch.float16:
        t = t.float()
    return array_to_rgb(t.numpy())


def to_input(image: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS) -> InputImage:
    """Any accepted input -> what the codec codes. Paths, an image file's bytes and binary file objects
    (read from their start, as Pillow reads them) are opened with :func:`open_image` (limit
    ``max_pixels``); PIL images, numpy arrays and tensors are converted (see the module rules). The
    size limit of in-memory images is the caller's to check (they are already allocated)."""
    if isinstance(image, (str, os.PathLike)):
        with open_image(image, max_pixels) as opened:
            return pil_to_input(opened)
    source = _file_source(image)
    if source is not None:
        with open_image(source, max_pixels) as opened:
            return pil_to_input(opened)
    if isinstance(image, Image.Image):
        return pil_to_input(image)
    torch = sys.modules.get("torch")  # an object can be a tensor only once torch is loaded
    if torch is not None and isinstance(image, torch.Tensor):
        return InputImage(*_tensor_to_rgb(image))
    if isinstance(image, np.ndarray):
        return InputImage(*array_to_rgb(image))
    raise ImageError(
        f"cannot code an object of type {type(image).__name__}; pass a file path, an image file's bytes or "
        "binary file object, a PIL image, a numpy array or a tensor"
    )


def to_rgb_array(image: ImageInput) -> tuple[np.ndarray, ColourMode]:
    """Any supported input -> ((H, W, 3) uint8 RGB, colour mode of the original)."""
    coded = to_input(image)
    return coded.rgb, coded.colour


def rgb_to_tensor(rgb: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1] (the values of :func:`network_input`, unpadded).
    Its memory stays in the array's (H, W, C) order, which sets the convolution kernels the PyTorch
    codec's g_a runs (and so the last bits of its latent)."""
    import torch

    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).to(device).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def tensor_to_rgb(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float reconstruction tensor -> (H, W, 3) uint8, as :func:`to_pixels`."""
    return to_pixels(x.detach().float().cpu().numpy())


def rgb_to_pil(
    rgb: np.ndarray, colour: ColourMode, icc_profile: bytes | None = None, exif: bytes | None = None,
    xmp: bytes | None = None, alpha: np.ndarray | None = None,
) -> Image.Image:
    """(H, W, 3) uint8 -> PIL image in ``colour`` ("RGB" or "L"), with the ICC profile, EXIF block and
    XMP packet the input had (``image.info["icc_profile"]``, ``["exif"]``, ``["xmp"]``). ``alpha``, an
    (H, W) uint8 plane, makes it "RGBA" or "LA"."""
    image = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    if colour == "L":
        image = image.convert("L")
    if alpha is not None:
        image.putalpha(Image.fromarray(np.ascontiguousarray(alpha, dtype=np.uint8), "L"))
    for key, value in (("icc_profile", icc_profile), ("exif", exif), ("xmp", xmp)):
        if value:
            image.info[key] = value
    return image


def to_srgb(image: Image.Image) -> Image.Image | None:
    """The image converted from its ICC profile to sRGB (no profile attached), or None when LittleCMS
    cannot read the profile. For writers of formats that cannot hold a profile."""
    profile = image.info.get("icc_profile")
    if not profile:
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None
    if image.mode == "L":  # a gray profile's grays are sRGB grays after conversion
        converted = converted.convert("L")
    converted.info.pop("icc_profile", None)
    return converted

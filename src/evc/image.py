"""Images in and out: PIL images, numpy arrays and tensors to the codec's RGB tensor, and back.

Colour rules (each deliberate, each tested):
- RGB is coded as is. Grayscale ("L", "1") is coded as RGB with equal channels and decoded back to "L".
- 16-bit and 32-bit integer grayscale ("I;16*", "I") is scaled to 8 bits: round(v / 257), clipped to
  0..255 (evc codes 8-bit images). Float images ("F") are refused: their range is unknown.
- An alpha channel ("RGBA", "LA", "PA", palette or colour-key transparency) is dropped when every
  pixel is fully opaque; with any transparency the image is refused, since evc does not code alpha.
- Palette ("P") is expanded to RGB. CMYK is converted to RGB with Pillow's conversion (no ICC colour
  management). YCbCr, LAB and HSV are converted to RGB by Pillow.
"""

from __future__ import annotations

from typing import Literal, Union

import numpy as np
import torch
from PIL import Image

from evc.errors import ImageError

ColourMode = Literal["RGB", "L"]
ImageInput = Union[Image.Image, np.ndarray, torch.Tensor]

_GRAY_16 = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_TO_RGB = {"CMYK", "YCbCr", "LAB", "HSV", "RGBX"}


def _drop_opaque_alpha(image: Image.Image, colour: ColourMode) -> Image.Image:
    alpha = image.getchannel("A")
    low, _ = alpha.getextrema()
    if low < 255:
        raise ImageError(f"image mode {image.mode} has transparent pixels; evc does not code alpha (flatten it first)")
    return image.convert(colour)


def pil_to_array(image: Image.Image) -> tuple[np.ndarray, ColourMode]:
    """(H, W, 3) uint8 RGB array and the colour mode to restore on decoding."""
    mode = image.mode
    if mode in ("RGB", "L") and "transparency" in image.info:
        # A colour key (PNG tRNS): refused like alpha if that colour occurs, ignored otherwise.
        image = image.convert("RGBA" if mode == "RGB" else "LA")
        mode = image.mode
    if mode == "P" or mode == "PA":
        has_alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8), "RGB"
    if mode == "RGBA":
        return np.asarray(_drop_opaque_alpha(image, "RGB")), "RGB"
    if mode in ("L", "1"):
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2), "L"
    if mode == "LA":
        gray = np.asarray(_drop_opaque_alpha(image, "L"), dtype=np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2), "L"
    if mode in _GRAY_16:
        wide = np.asarray(image, dtype=np.int64)
        gray = np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2), "L"
    if mode in _TO_RGB:
        return np.asarray(image.convert("RGB"), dtype=np.uint8), "RGB"
    if mode == "F":
        raise ImageError("floating-point images (mode F) are not supported: convert to 8-bit first")
    raise ImageError(f"unsupported image mode {mode!r}")


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


def to_rgb_array(image: ImageInput) -> tuple[np.ndarray, ColourMode]:
    """Any supported input -> ((H, W, 3) uint8 RGB, colour mode of the original)."""
    if isinstance(image, Image.Image):
        if image.width < 1 or image.height < 1:
            raise ImageError(f"image is empty ({image.width}x{image.height})")
        return pil_to_array(image)
    if isinstance(image, torch.Tensor):
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
    if isinstance(image, np.ndarray):
        return array_to_rgb(image)
    raise ImageError(f"cannot code an object of type {type(image).__name__}; pass a PIL image, numpy array or tensor")


def rgb_to_tensor(rgb: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).to(device).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def tensor_to_rgb(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float reconstruction -> (H, W, 3) uint8, clamped and rounded."""
    return x[0].clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def rgb_to_pil(rgb: np.ndarray, colour: ColourMode) -> Image.Image:
    image = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    return image.convert("L") if colour == "L" else image

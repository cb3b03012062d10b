"""Image quality metrics on 8-bit RGB: PSNR, and MS-SSIM (Wang, Simoncelli, Bovik 2003) computed by
pytorch-msssim, the implementation learned-compression papers report with.

MS-SSIM convention (pytorch-msssim's defaults): values in [0, 1] data range, an 11-tap Gaussian window
(sigma 1.5) applied without padding, five scales with the standard weights, 2x2 average pooling between
scales, computed per channel and averaged over R, G, B. Both sides must be at least 161 pixels.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from evc.extras import require
from evc.image import mse

__all__ = ["MS_SSIM_MIN_SIDE", "MS_SSIM_WEIGHTS", "ms_ssim", "ms_ssim_db", "mse", "psnr"]

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WINDOW = 11
# Smallest side for which five scales of an 11-tap valid window fit.
MS_SSIM_MIN_SIDE = (_WINDOW - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1


def _as_float(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float64 in [0, 1]."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    return torch.from_numpy(np.array(image, dtype=np.float64)).permute(2, 0, 1).unsqueeze(0) / 255.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB on [0, 1] values (inf for identical images)."""
    error = mse(a, b)
    return math.inf if error == 0 else -10.0 * math.log10(error)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM of two (H, W, 3) uint8 images; None when a side is under MS_SSIM_MIN_SIDE (161) pixels,
    too small for five scales. Needs pytorch-msssim (the ``eval`` extra)."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    pytorch_msssim = require("pytorch_msssim", "eval")
    value = pytorch_msssim.ms_ssim(
        _as_float(a), _as_float(b), data_range=1.0, size_average=True, win_size=_WINDOW,
        weights=list(MS_SSIM_WEIGHTS),
    )
    return float(value)


def ms_ssim_db(value: float) -> float:
    """MS-SSIM as -10 log10(1 - MS-SSIM), the usual scale for plots and BD-rates."""
    return math.inf if value >= 1 else -10.0 * math.log10(1.0 - value)

"""Image quality metrics on 8-bit RGB: PSNR and MS-SSIM (Wang, Simoncelli, Bovik 2003).

MS-SSIM follows the usual learned-compression convention: values in [0, 1] data range, an 11-tap
Gaussian window (sigma 1.5) applied without padding, five scales with the standard weights, 2x2
average pooling between scales, computed per channel and averaged over R, G, B.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WINDOW = 11
_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03
# Smallest side for which five scales of an 11-tap valid window fit.
MS_SSIM_MIN_SIDE = (_WINDOW - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1


def _as_float(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float64 in [0, 1]."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    return torch.from_numpy(np.array(image, dtype=np.float64)).permute(2, 0, 1).unsqueeze(0) / 255.0


def mse(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)) / 255.0**2


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB on [0, 1] values (inf for identical images)."""
    error = mse(a, b)
    return math.inf if error == 0 else -10.0 * math.log10(error)


def _gaussian_window() -> torch.Tensor:
    x = torch.arange(_WINDOW, dtype=torch.float64) - _WINDOW // 2
    g = torch.exp(-(x**2) / (2 * _SIGMA**2))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter per channel, valid region only."""
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean SSIM and contrast-structure term, each (C,)."""
    c1, c2 = _K1**2, _K2**2
    mu_x, mu_y = _blur(x, g), _blur(y, g)
    sigma_xx = _blur(x * x, g) - mu_x**2
    sigma_yy = _blur(y * y, g) - mu_y**2
    sigma_xy = _blur(x * y, g) - mu_x * mu_y
    cs = (2 * sigma_xy + c2) / (sigma_xx + sigma_yy + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (luminance * cs).mean(dim=(0, 2, 3)), cs.mean(dim=(0, 2, 3))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM of two (H, W, 3) uint8 images; None when the image is too small for five scales."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    x, y = _as_float(a), _as_float(b)
    g = _gaussian_window()
    weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=torch.float64)
    factors = []
    for scale in range(len(MS_SSIM_WEIGHTS)):
        ssim, cs = _ssim_terms(x, y, g)
        if scale < len(MS_SSIM_WEIGHTS) - 1:
            factors.append(torch.relu(cs))
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        else:
            factors.append(torch.relu(ssim))
    per_channel = torch.prod(torch.stack(factors) ** weights.view(-1, 1), dim=0)
    return float(per_channel.mean())


def ms_ssim_db(value: float) -> float:
    """MS-SSIM as -10 log10(1 - MS-SSIM), the usual scale for plots and BD-rates."""
    return math.inf if value >= 1 else -10.0 * math.log10(1.0 - value)

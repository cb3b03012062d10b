"""Image quality metrics on 8-bit RGB: PSNR, and MS-SSIM (Wang, Simoncelli, Bovik 2003) as
pytorch-msssim computes it, the implementation learned-compression papers report with.

MS-SSIM convention (pytorch-msssim's defaults): values in [0, 1] data range, an 11-tap Gaussian window
(sigma 1.5) applied without padding, five scales with the standard weights, 2x2 average pooling between
scales, computed per channel and averaged over R, G, B. Both sides must be at least 161 pixels.

The computation is pytorch-msssim's, step for step, in float64 NumPy (SciPy for the horizontal pass):
the same window (its float32 Gaussian), the same zero-padded pooling of odd sides, the same clamps.
tests/test_eval.py checks it against pytorch-msssim to 1e-12. It is 5-12 times faster than pytorch-msssim's
grouped float64 convolutions (63-86 ms against 0.51-0.85 s per 768x512 pair, one thread; issue 39,
benchmarks/eval_cost.py, 2026-12-07, AMD EPYC beside a training run), and :class:`MSSSIMReference`
does the reference image's part once for all its decoded versions (`evc eval` codes each at 8-12 rates).
"""

from __future__ import annotations

import math

import numpy as np

from evc.extras import require
from evc.image import mse

__all__ = ["MS_SSIM_MIN_SIDE", "MS_SSIM_WEIGHTS", "MSSSIMReference", "ms_ssim", "ms_ssim_db", "mse", "psnr"]

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# pytorch-msssim's window: exp(-x^2 / 4.5) for x in -5..5, normalised, in float32 (its sum is 1 - 3e-8);
# these are those float32 values, so the results match pytorch-msssim's to rounding.
_WINDOW = np.array([
    0.0010283803567290306, 0.0075987582094967365, 0.036000773310661316, 0.10936068743467331,
    0.21300552785396576, 0.26601171493530273, 0.21300552785396576, 0.10936068743467331,
    0.036000773310661316, 0.0075987582094967365, 0.0010283803567290306,
])
_HALF = len(_WINDOW) // 2
_C1, _C2 = 0.01**2, 0.03**2  # (K1 * data range)^2, (K2 * data range)^2 with K = (0.01, 0.03), range 1
# Smallest side for which five scales of an 11-tap valid window fit.
MS_SSIM_MIN_SIDE = (len(_WINDOW) - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB on [0, 1] values (inf for identical images)."""
    error = mse(a, b)
    return math.inf if error == 0 else -10.0 * math.log10(error)


def _check(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {getattr(image, 'shape', type(image))} "
                         f"{getattr(image, 'dtype', '')}")


def _blur(plane: np.ndarray, out: np.ndarray | None = None, rows: np.ndarray | None = None,
          pair: np.ndarray | None = None) -> np.ndarray:
    """The Gaussian window over a 2-D float64 plane, valid part only (no padding). ``out`` (the valid
    shape), ``rows`` (the plane's shape) and ``pair`` (the valid shape): buffers to reuse, since fresh
    planes of this size cost page faults on every call."""
    correlate1d = require("scipy.ndimage", "eval").correlate1d
    # Rows: SciPy's symmetric-window loop, the fastest here. Columns: five symmetric pairs of whole
    # rows in NumPy, contiguous, where SciPy would walk strided columns.
    rows = correlate1d(plane, _WINDOW, axis=1, output=rows, mode="constant")[:, _HALF:-_HALF]
    n = rows.shape[0] - 2 * _HALF
    out = np.multiply(rows[_HALF:_HALF + n], _WINDOW[_HALF], out=out)
    pair = np.empty_like(out) if pair is None else pair
    for k in range(_HALF):
        np.add(rows[k:k + n], rows[2 * _HALF - k:2 * _HALF - k + n], out=pair)
        pair *= _WINDOW[k]
        out += pair
    return out


def _pool(plane: np.ndarray) -> np.ndarray:
    """2x2 average pooling as torch's avg_pool2d(kernel_size=2, padding=side % 2): an odd side gets a
    zero row or column on both ends, counted in the averages."""
    pad_h, pad_w = plane.shape[0] % 2, plane.shape[1] % 2
    if pad_h or pad_w:
        plane = np.pad(plane, ((pad_h, pad_h), (pad_w, pad_w)))
    h, w = plane.shape[0] // 2 * 2, plane.shape[1] // 2 * 2
    return (plane[0:h:2, 0:w:2] + plane[1:h:2, 0:w:2] + plane[0:h:2, 1:w:2] + plane[1:h:2, 1:w:2]) * 0.25


class MSSSIMReference:
    """A reference image ready for MS-SSIM against any number of distorted versions of it: its pooled
    scales and their local means and second moments are computed once (about 40 % of each comparison).

    Raises ValueError for anything but an (H, W, 3) uint8 array. ``available`` is False when a side is
    under MS_SSIM_MIN_SIDE; :meth:`compare` then returns None.
    """

    def __init__(self, reference: np.ndarray) -> None:
        _check(reference)
        self.shape = reference.shape
        self.available = min(reference.shape[:2]) >= MS_SSIM_MIN_SIDE
        # Per channel, per scale: (pixels, local mean, its square, local mean of the squares).
        self._scales: list[list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = []
        self._work: list[list[np.ndarray]] = []  # per level, buffers :meth:`compare` reuses
        if not self.available:
            return
        for channel in range(3):
            x = reference[:, :, channel] / 255.0
            scales = []
            for level in range(len(MS_SSIM_WEIGHTS)):
                mu = _blur(x)
                scales.append((x, mu, mu * mu, _blur(x * x)))
                if level < len(MS_SSIM_WEIGHTS) - 1:
                    x = _pool(x)
            self._scales.append(scales)

    def compare(self, distorted: np.ndarray) -> float | None:
        """MS-SSIM of ``distorted`` against the reference; None when the images are too small.
        Raises ValueError when the shapes differ."""
        _check(distorted)
        if distorted.shape != self.shape:
            raise ValueError(f"images differ in shape: {self.shape} vs {distorted.shape}")
        if not self.available:
            return None
        weights = np.array(MS_SSIM_WEIGHTS)
        per_channel = []
        # Channel by channel: a 768x512 plane of float64 stays in cache, three would not.
        for channel, scales in enumerate(self._scales):
            y = distorted[:, :, channel] / 255.0
            values = []
            for level, (x, mu1, mu1_sq, xx) in enumerate(scales):
                product, rows, pair, mu2, cs, den, mu1_mu2 = self._buffers(level)
                _blur(y, mu2, rows, pair)
                # cs = (2 sigma12 + C2) / (sigma1^2 + sigma2^2 + C2), in place
                _blur(np.multiply(x, y, out=product), cs, rows, pair)
                np.multiply(mu1, mu2, out=mu1_mu2)
                cs -= mu1_mu2
                cs *= 2
                cs += _C2
                _blur(np.multiply(y, y, out=product), den, rows, pair)
                mu2 *= mu2  # mu2 is its square from here
                den -= mu2
                den += xx
                den -= mu1_sq
                den += _C2
                cs /= den
                if level < len(scales) - 1:
                    values.append(max(float(cs.mean()), 0.0))
                    y = _pool(y)
                else:
                    luminance = (2 * mu1_mu2 + _C1) / (mu1_sq + mu2 + _C1)
                    values.append(max(float((luminance * cs).mean()), 0.0))
            per_channel.append(np.prod(np.array(values) ** weights))
        return float(np.mean(per_channel))

    def _buffers(self, level: int) -> list[np.ndarray]:
        """Planes reused by every comparison at ``level``: a product and the row pass (the level's
        shape), then five of the valid shape. Fresh ones cost page faults: a quarter of the time."""
        while len(self._work) <= level:
            shape = self._scales[0][len(self._work)][0].shape
            valid = (shape[0] - 2 * _HALF, shape[1] - 2 * _HALF)
            self._work.append([np.empty(shape), np.empty(shape), *(np.empty(valid) for _ in range(5))])
        return self._work[level]


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM of two (H, W, 3) uint8 images; None when a side is under MS_SSIM_MIN_SIDE (161) pixels,
    too small for five scales. Needs SciPy (the ``eval`` extra). For several versions of one image,
    :class:`MSSSIMReference` does the reference's half once."""
    _check(a)
    _check(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return MSSSIMReference(a).compare(b)


def ms_ssim_db(value: float) -> float:
    """MS-SSIM as -10 log10(1 - MS-SSIM), the usual scale for plots and BD-rates."""
    return math.inf if value >= 1 else -10.0 * math.log10(1.0 - value)

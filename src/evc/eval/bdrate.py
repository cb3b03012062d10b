"""Bjontegaard delta rate (BD-rate) between rate-distortion curves.

Method (the one used for the numbers in ../shared/rd_results/README.md): for each curve the points are
sorted by quality, log10(bpp) is interpolated as a function of quality with a monotone piecewise-cubic
Hermite interpolant (PCHIP, Fritsch-Carlson slopes with the same end-point rule as
scipy.interpolate.PchipInterpolator), both interpolants are integrated exactly over the overlapping
quality range [lo, hi], and

    BD-rate = (10 ** ((integral_test - integral_anchor) / (hi - lo)) - 1) * 100  [%]

i.e. the mean bit-rate change of the test curve at equal quality; negative = the test curve needs fewer
bits than the anchor. Quality is PSNR-RGB in dB ("psnr") or MS-SSIM in dB, -10 log10(1 - MS-SSIM)
("ms-ssim"); the dB scale spreads out the high-quality points where MS-SSIM saturates near 1.

Duplicate quality values (two rate points that reach exactly the same quality) would make the
interpolant undefined; their log10(bpp) values are averaged into one point (the geometric mean of the
rates), which keeps the curve's shape and does not favour either point.

Only numpy is needed: PCHIP is implemented here (see `Pchip`), not taken from scipy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evc.eval.results import RDCurve, ResultsError

METRICS = ("psnr", "ms-ssim")
_METRIC_LABEL = {"psnr": "PSNR", "ms-ssim": "MS-SSIM"}


@dataclass(frozen=True)
class BDRate:
    percent: float  # negative = the test curve needs fewer bits than the anchor at equal quality
    metric: str  # "psnr" or "ms-ssim"
    overlap: tuple[float, float]  # the quality range integrated over (dB, also for ms-ssim)
    anchor: str  # anchor curve name
    test: str  # test curve name


class Pchip:
    """Monotone piecewise-cubic Hermite interpolant through (x[i], y[i]), x strictly increasing.

    Slopes follow Fritsch & Carlson as scipy.interpolate.PchipInterpolator defines them:
    * interior point: 0 where the neighbouring secant slopes differ in sign or either is 0, else their
      weighted harmonic mean with weights w1 = 2 h_k + h_{k-1} (left secant), w2 = h_k + 2 h_{k-1}
      (right secant), h = interval widths;
    * end points: the one-sided three-point estimate ((2 h0 + h1) m0 - h0 m1) / (h0 + h1), set to 0 if
      its sign differs from m0's, and limited to 3 m0 if m0 and m1 differ in sign and it exceeds 3|m0|;
    * two points only: the straight line.
    Outside [x[0], x[-1]] the end segments' cubics are extended (as scipy's default extrapolation).
    """

    def __init__(self, x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> None:
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        if self.x.ndim != 1 or self.x.shape != self.y.shape:
            raise ValueError(f"x and y must be 1-D of equal length, got shapes {self.x.shape}, {self.y.shape}")
        if self.x.size < 2:
            raise ValueError(f"PCHIP needs at least 2 points, got {self.x.size}")
        if not (np.all(np.isfinite(self.x)) and np.all(np.isfinite(self.y))):
            raise ValueError("x and y must be finite")
        if not np.all(np.diff(self.x) > 0):
            raise ValueError("x must be strictly increasing")
        self.d = _pchip_slopes(self.x, self.y)
        # Power-basis coefficients per segment in s = x - x[k]: y0 + d0 s + c2 s^2 + c3 s^3.
        h = np.diff(self.x)
        m = np.diff(self.y) / h
        d0, d1 = self.d[:-1], self.d[1:]
        self._c2 = (3 * m - 2 * d0 - d1) / h
        self._c3 = (d0 + d1 - 2 * m) / (h * h)

    def __call__(self, xq: float | Sequence[float] | np.ndarray) -> np.ndarray:
        xq = np.asarray(xq, dtype=np.float64)
        k = np.clip(np.searchsorted(self.x, xq, side="right") - 1, 0, self.x.size - 2)
        s = xq - self.x[k]
        return self.y[k] + s * (self.d[k] + s * (self._c2[k] + s * self._c3[k]))

    def integrate(self, a: float, b: float) -> float:
        """Exact integral over [a, b] (a <= b, both within [x[0], x[-1]]), segment by segment."""
        if not (self.x[0] <= a <= b <= self.x[-1]):
            raise ValueError(f"integration range [{a}, {b}] is not within [{self.x[0]}, {self.x[-1]}]")
        left, right = self.x[:-1], self.x[1:]
        # Each segment contributes over its part of [a, b]; segments outside it get an empty range.
        s_lo = np.clip(a, left, right) - left
        s_hi = np.clip(b, left, right) - left
        return float(np.sum(self._antiderivative(s_hi) - self._antiderivative(s_lo)))

    def _antiderivative(self, s: np.ndarray) -> np.ndarray:
        y0, d0 = self.y[:-1], self.d[:-1]
        return s * (y0 + s * (d0 / 2 + s * (self._c2 / 3 + s * self._c3 / 4)))


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h = np.diff(x)
    m = np.diff(y) / h
    if x.size == 2:
        return np.array([m[0], m[0]])
    d = np.zeros_like(y)
    m_left, m_right = m[:-1], m[1:]
    h_left, h_right = h[:-1], h[1:]
    # Zero slope at local extrema and flat stretches: this is what keeps monotone data monotone.
    keep = (np.sign(m_left) == np.sign(m_right)) & (m_left != 0) & (m_right != 0)
    w1 = 2 * h_right + h_left
    w2 = h_right + 2 * h_left
    with np.errstate(divide="ignore", invalid="ignore"):
        harmonic = (w1 + w2) / (w1 / m_left + w2 / m_right)
    d[1:-1] = np.where(keep, harmonic, 0.0)
    d[0] = _end_slope(h[0], h[1], m[0], m[1])
    d[-1] = _end_slope(h[-1], h[-2], m[-1], m[-2])
    return d


def _end_slope(h0: float, h1: float, m0: float, m1: float) -> float:
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > 3 * abs(m0):
        return 3 * m0
    return float(d)


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")


def curve_quality(curve: RDCurve, metric: str = "psnr") -> np.ndarray:
    """The curve's quality values in dB: PSNR, or MS-SSIM as -10 log10(1 - MS-SSIM)."""
    _check_metric(metric)
    if metric == "psnr":
        if curve.psnr is None:
            raise ResultsError(f"curve {curve.name!r} has no PSNR values (psnr-rgb)")
        return np.asarray(curve.psnr, dtype=np.float64)
    if curve.ms_ssim is None:
        raise ResultsError(f"curve {curve.name!r} has no MS-SSIM values (ms-ssim-rgb)")
    ms = np.asarray(curve.ms_ssim, dtype=np.float64)
    if np.any((ms < 0) | (ms >= 1)):
        raise ResultsError(f"curve {curve.name!r}: MS-SSIM values must lie in [0, 1) to be expressed in dB")
    return -10 * np.log10(1 - ms)


def _log_rate_vs_quality(curve: RDCurve, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted, distinct quality values and log10(bpp) there (duplicates averaged, see module doc)."""
    quality = curve_quality(curve, metric)
    bpp = np.asarray(curve.bpp, dtype=np.float64)
    if np.any(bpp <= 0):
        raise ResultsError(f"curve {curve.name!r}: bpp values must be positive for a BD-rate (log of rate)")
    q, inverse = np.unique(quality, return_inverse=True)  # sorted distinct qualities
    log_rate = np.bincount(inverse, weights=np.log10(bpp)) / np.bincount(inverse)
    if q.size < 2:
        raise ResultsError(
            f"curve {curve.name!r} has {q.size} distinct {_METRIC_LABEL[metric]} value(s); a BD-rate needs at least 2"
        )
    return q, log_rate


def bd_rate(anchor: RDCurve, test: RDCurve, metric: str = "psnr") -> BDRate:
    """BD-rate of `test` against `anchor` (PCHIP in quality, see the module docstring)."""
    _check_metric(metric)
    qa, ra = _log_rate_vs_quality(anchor, metric)
    qt, rt = _log_rate_vs_quality(test, metric)
    lo, hi = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if not hi > lo:
        raise ResultsError(
            f"{_METRIC_LABEL[metric]} ranges do not overlap: anchor {anchor.name!r} covers "
            f"{qa[0]:.3f}-{qa[-1]:.3f} dB, test {test.name!r} covers {qt[0]:.3f}-{qt[-1]:.3f} dB"
        )
    mean_diff = (Pchip(qt, rt).integrate(lo, hi) - Pchip(qa, ra).integrate(lo, hi)) / (hi - lo)
    return BDRate(
        percent=float((10**mean_diff - 1) * 100),
        metric=metric,
        overlap=(float(lo), float(hi)),
        anchor=anchor.name,
        test=test.name,
    )


def bd_rate_table(
    curves: list[RDCurve], anchors: list[RDCurve], metric: str = "psnr"
) -> list[list[BDRate | None]]:
    """BD-rate of every curve (rows) against every anchor (columns); None where it cannot be computed
    (a curve lacks the metric, has too few points, or the quality ranges do not overlap)."""
    _check_metric(metric)  # a misspelt metric is a caller's bug, not an n/a cell
    table: list[list[BDRate | None]] = []
    for curve in curves:
        row: list[BDRate | None] = []
        for anchor in anchors:
            try:
                row.append(bd_rate(anchor, curve, metric))
            except ResultsError:
                row.append(None)
        table.append(row)
    return table


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _format_percent(percent: float) -> str:
    rounded = round(percent, 1)
    return "0.0 %" if rounded == 0 else f"{rounded:+.1f} %"  # avoid "-0.0 %"


def format_bd_table(
    curves: list[RDCurve], anchors: list[RDCurve], table: list[list[BDRate | None]], metric: str = "psnr"
) -> str:
    """A Markdown table: one row per curve, one column per anchor, cells like "-1.0 % (32.5-37.9 dB)"
    (BD-rate and the quality range it was integrated over), "n/a" where the table holds None."""
    _check_metric(metric)
    if len(table) != len(curves) or any(len(row) != len(anchors) for row in table):
        raise ValueError(f"table shape does not match {len(curves)} curves x {len(anchors)} anchors")
    label = _METRIC_LABEL[metric] + (" dB" if metric == "ms-ssim" else "")
    header = ["curve"] + [f"BD-rate ({label}) vs {_md_cell(a.name)}" for a in anchors]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for curve, row in zip(curves, table):
        cells = [_md_cell(curve.name)]
        for result in row:
            if result is None:
                cells.append("n/a")
            else:
                lo, hi = result.overlap
                cells.append(f"{_format_percent(result.percent)} ({lo:.1f}-{hi:.1f} dB)")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["BDRate", "METRICS", "Pchip", "bd_rate", "bd_rate_table", "curve_quality", "format_bd_table"]

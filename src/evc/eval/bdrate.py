"""Bjontegaard delta rate (BD-rate) between rate-distortion curves.

Method (the one used for the numbers in ../shared/rd_results/README.md): for each curve the points are
sorted by quality, log10(bpp) is interpolated as a function of quality with a monotone piecewise-cubic
Hermite interpolant (PCHIP: scipy.interpolate.PchipInterpolator), both interpolants are integrated
exactly over the overlapping quality range [lo, hi], and

    BD-rate = (10 ** ((integral_test - integral_anchor) / (hi - lo)) - 1) * 100  [%]

i.e. the mean bit-rate change of the test curve at equal quality; negative = the test curve needs fewer
bits than the anchor. Quality is PSNR-RGB in dB ("psnr") or MS-SSIM in dB, -10 log10(1 - MS-SSIM)
("ms-ssim"); the dB scale spreads out the high-quality points where MS-SSIM saturates near 1.

Duplicate quality values (two rate points that reach exactly the same quality) would make the
interpolant undefined; their log10(bpp) values are averaged into one point (the geometric mean of the
rates), which keeps the curve's shape and does not favour either point.

Needs scipy (the ``eval`` extra).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from evc.eval.results import RDCurve, ResultsError, different_images
from evc.extras import require

METRICS = ("psnr", "ms-ssim")
# How a table cell says its BD-rate compares curves measured on different images (results.image_set).
DIFFERENT_IMAGES = "different images"
# A cell whose BD-rate is not shown because the curves were measured on different images.
OTHER_IMAGES = "other images"
_METRIC_LABEL = {"psnr": "PSNR", "ms-ssim": "MS-SSIM"}


@dataclass(frozen=True)
class BDRate:
    percent: float  # negative = the test curve needs fewer bits than the anchor at equal quality
    metric: str  # "psnr" or "ms-ssim"
    overlap: tuple[float, float]  # the quality range integrated over (dB, also for ms-ssim)
    anchor: str  # anchor curve name
    test: str  # test curve name
    # The two curves say they were measured on different images: the number compares unlike things.
    different_images: bool = False


def mean_log_rate(quality: np.ndarray, log_rate: np.ndarray, lo: float, hi: float) -> float:
    """Mean of the PCHIP interpolant of ``log_rate`` over quality in [lo, hi] (within the points' range).

    ``quality``: strictly increasing, at least 2 points (two points: the straight line).
    """
    interpolator = require("scipy.interpolate", "eval").PchipInterpolator(quality, log_rate, extrapolate=False)
    return float(interpolator.integrate(lo, hi)) / (hi - lo)


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


def _overlap(
    a: np.ndarray, t: np.ndarray, anchor: RDCurve, test: RDCurve, what: str, show: Callable[[float], str], unit: str
) -> tuple[float, float]:
    """The common range [lo, hi] of two sorted axes; ResultsError naming both ranges if it is empty."""
    lo, hi = max(a[0], t[0]), min(a[-1], t[-1])
    if not hi > lo:
        raise ResultsError(
            f"{what} ranges do not overlap: anchor {anchor.name!r} covers {show(a[0])}-{show(a[-1])}{unit}, "
            f"test {test.name!r} covers {show(t[0])}-{show(t[-1])}{unit}"
        )
    return lo, hi


def bd_rate(anchor: RDCurve, test: RDCurve, metric: str = "psnr") -> BDRate:
    """BD-rate of `test` against `anchor` (PCHIP in quality, see the module docstring)."""
    _check_metric(metric)
    qa, ra = _log_rate_vs_quality(anchor, metric)
    qt, rt = _log_rate_vs_quality(test, metric)
    lo, hi = _overlap(qa, qt, anchor, test, _METRIC_LABEL[metric], lambda q: f"{q:.3f}", " dB")
    mean_diff = mean_log_rate(qt, rt, lo, hi) - mean_log_rate(qa, ra, lo, hi)
    return BDRate(
        percent=float((10**mean_diff - 1) * 100),
        metric=metric,
        overlap=(float(lo), float(hi)),
        anchor=anchor.name,
        test=test.name,
        different_images=different_images(anchor, test),
    )


@dataclass(frozen=True)
class BDQuality:
    db: float  # positive = the test curve has higher quality than the anchor at equal rate
    metric: str  # "psnr" or "ms-ssim"
    overlap: tuple[float, float]  # the bpp range averaged over
    anchor: str
    test: str
    different_images: bool = False


def _quality_by_log_rate(curve: RDCurve, metric: str, needs: str) -> tuple[np.ndarray, np.ndarray]:
    """The curve's distinct log10(bpp) values, ascending, and its mean quality at each (points at one
    rate are averaged). Raises ResultsError for a bpp <= 0 or fewer than 2 distinct rates (``needs``
    says what for)."""
    bpp = np.asarray(curve.bpp, dtype=np.float64)
    if np.any(bpp <= 0):
        raise ResultsError(f"curve {curve.name!r}: bpp values must be positive (log of rate)")
    log_rate, inverse = np.unique(np.log10(bpp), return_inverse=True)
    quality = np.bincount(inverse, weights=curve_quality(curve, metric)) / np.bincount(inverse)
    if log_rate.size < 2:
        raise ResultsError(f"curve {curve.name!r} has {log_rate.size} distinct rate(s); {needs}")
    return log_rate, quality


def bd_quality(anchor: RDCurve, test: RDCurve, metric: str = "psnr") -> BDQuality:
    """Bjontegaard delta quality (BD-PSNR for "psnr") of ``test`` against ``anchor``: the mean quality
    difference in dB at equal rate, PCHIP of quality against log10(bpp), integrated exactly over the
    overlapping log-rate range. BD-rate's counterpart (Bjontegaard, VCEG-M33), and the comparison left
    when two curves' quality ranges do not overlap (a young model's curve, e.g.) but their rates do.
    Raises ResultsError when the rate ranges do not overlap or a curve has fewer than 2 distinct rates."""
    _check_metric(metric)
    curves = []
    for curve in (anchor, test):
        curves.append(_quality_by_log_rate(curve, metric, "a BD-quality needs at least 2"))
    (ra, qa), (rt, qt) = curves
    lo, hi = _overlap(ra, rt, anchor, test, "rate", lambda r: f"{10**r:.4f}", " bpp")
    # mean_log_rate integrates any PCHIP y(x); here x is log-rate and y quality.
    diff = mean_log_rate(rt, qt, lo, hi) - mean_log_rate(ra, qa, lo, hi)
    return BDQuality(
        db=float(diff), metric=metric, overlap=(float(10**lo), float(10**hi)), anchor=anchor.name,
        test=test.name, different_images=different_images(anchor, test),
    )


def quality_at_rates(curve: RDCurve, rates: Sequence[float], metric: str = "psnr") -> list[float | None]:
    """The curve's quality in dB at each bpp of ``rates``: PCHIP of quality against log10(bpp) through
    its points (as :func:`bd_quality`), None outside its rate range. Raises ResultsError when the curve
    lacks ``metric`` or has fewer than 2 distinct rates."""
    _check_metric(metric)
    log_rate, quality = _quality_by_log_rate(curve, metric, "interpolation needs 2")
    interpolator = require("scipy.interpolate", "eval").PchipInterpolator(log_rate, quality, extrapolate=False)
    out: list[float | None] = []
    for rate in rates:
        value = float(interpolator(np.log10(rate))) if rate > 0 else float("nan")
        out.append(None if np.isnan(value) else value)
    return out


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


def format_bd_title(metric: str = "psnr") -> str:
    """The line that says how to read :func:`format_bd_table`'s table."""
    _check_metric(metric)
    return (
        f"BD-rate ({metric}); negative = fewer bits than the anchor at equal quality; "
        "PCHIP on log-rate over the overlapping quality range shown in brackets"
    )


def format_bd_table(
    curves: list[RDCurve],
    anchors: list[RDCurve],
    table: list[list[BDRate | None]],
    metric: str = "psnr",
    labels: Mapping[str, str] | None = None,
    withhold_different: bool = False,
) -> str:
    """A Markdown table: one row per curve, one column per anchor, cells like "-1.0 % (32.5-37.9 dB)"
    (BD-rate and the quality range it was integrated over), "n/a" where the table holds None, and
    "+427.0 % (30.1-32.0 dB, different images)" where the two curves were measured on different images
    (``withhold_different``: "other images", no number). ``labels`` maps curve names to the labels
    rows and headers show (evc.eval.labels); default: the names."""
    _check_metric(metric)
    if len(table) != len(curves) or any(len(row) != len(anchors) for row in table):
        raise ValueError(f"table shape does not match {len(curves)} curves x {len(anchors)} anchors")
    name = (lambda c: labels.get(c.name, c.name)) if labels else (lambda c: c.name)
    label = _METRIC_LABEL[metric] + (" dB" if metric == "ms-ssim" else "")
    header = ["curve"] + [f"BD-rate ({label}) vs {_md_cell(name(a))}" for a in anchors]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for curve, row in zip(curves, table):
        cells = [_md_cell(name(curve))]
        for anchor, result in zip(anchors, row):
            if withhold_different and different_images(curve, anchor):
                cells.append(OTHER_IMAGES)
            elif result is None:
                cells.append("n/a")
            else:
                lo, hi = result.overlap
                note = ", " + DIFFERENT_IMAGES if result.different_images else ""
                cells.append(f"{_format_percent(result.percent)} ({lo:.1f}-{hi:.1f} dB{note})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["BDRate", "DIFFERENT_IMAGES", "METRICS", "OTHER_IMAGES", "bd_rate", "bd_rate_table", "curve_quality",
           "format_bd_table", "format_bd_title", "quality_at_rates"]

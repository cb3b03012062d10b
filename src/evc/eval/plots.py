"""Rate-distortion plots (PNG + SVG) of RDCurve lists, e.g. our runs against published curves.

Figures are built with matplotlib's object API (`Figure` + the Agg canvas), never pyplot, so calling
this from a notebook or GUI session neither changes the user's backend nor leaves figures open.
matplotlib is imported only when a plot is made: the rest of evc.eval does not need it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from evc.eval.bdrate import curve_quality
from evc.eval.results import RDCurve, ResultsError

# Line styles by role, so readers tell our curves from published ones and from classic codecs at a glance.
_STYLES: dict[str, dict[str, object]] = {
    "ours": {"linestyle": "-", "linewidth": 2.4, "marker": "o", "markersize": 5.5, "zorder": 3},
    "published": {"linestyle": "--", "linewidth": 1.5, "marker": "s", "markersize": 4, "zorder": 2},
    "baseline": {"linestyle": ":", "linewidth": 1.3, "marker": ".", "markersize": 6, "zorder": 1},
}
_Y_LABEL = {"psnr": "PSNR-RGB (dB)", "ms-ssim": "MS-SSIM-RGB (dB) = -10 log10(1 - MS-SSIM)"}


def plot_rd(
    curves: list[RDCurve],
    out_stem: str | Path,
    metric: str = "psnr",
    title: str = "",
    bpp_max: float | None = 1.6,
    styles: dict[str, str] | None = None,
) -> list[Path]:
    """Plot quality against bpp, one line per curve; write `<out_stem>.png` and `<out_stem>.svg`.

    `styles` maps a curve name to "ours" (solid, thick), "published" (dashed) or "baseline" (dotted,
    thin; the default). Curves that lack `metric` are skipped. `bpp_max` limits the x axis (None: fit
    all points); the y range fits the points inside it. Returns the written paths (PNG, SVG).
    """
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plot_rd needs matplotlib (pip install matplotlib)") from None

    styles = styles or {}
    for name, role in styles.items():
        if role not in _STYLES:
            raise ValueError(f"style {role!r} for curve {name!r} is not one of {', '.join(_STYLES)}")
    if bpp_max is not None and not bpp_max > 0:
        raise ValueError(f"bpp_max must be positive or None, got {bpp_max}")

    series: list[tuple[RDCurve, np.ndarray, np.ndarray]] = []
    for curve in curves:
        try:
            quality = curve_quality(curve, metric)  # raises ValueError for an unknown metric name
        except ResultsError:
            continue  # lacks this metric: nothing to draw
        order = np.argsort(curve.bpp)  # connect points in rate order
        series.append((curve, np.asarray(curve.bpp, dtype=np.float64)[order], quality[order]))
    if not series:
        raise ResultsError(f"none of the {len(curves)} curves has {metric} values to plot")

    fig = Figure(figsize=(7.0, 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    # Distinct colours for up to 20 curves (the default cycle repeats after 10).
    palette = matplotlib.colormaps["tab10" if len(series) <= 10 else "tab20"].colors
    for i, (curve, bpp, quality) in enumerate(series):
        ax.plot(bpp, quality, label=curve.name, color=palette[i % len(palette)],
                **_STYLES[styles.get(curve.name, "baseline")])

    x_hi = bpp_max if bpp_max is not None else 1.05 * max(float(b.max()) for _, b, _ in series)
    ax.set_xlim(0.0, x_hi)
    visible = np.concatenate([q[b <= x_hi] for _, b, q in series])
    ax.set_ylim(*_y_range(visible if visible.size else np.concatenate([q for _, _, q in series])))
    ax.set_xlabel("bits per pixel (bpp)")
    ax.set_ylabel(_Y_LABEL[metric])
    if title:
        ax.set_title(title)
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", alpha=0.15)
    ax.minorticks_on()
    ax.legend(loc="lower right", fontsize="small")

    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_stem.parent / f"{out_stem.name}.png", out_stem.parent / f"{out_stem.name}.svg"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1], metadata={"Date": None})  # no timestamp: the same data gives the same file
    return paths


def _y_range(values: np.ndarray) -> tuple[float, float]:
    """Whole-dB limits around the given quality values (those visible in the bpp range)."""
    lo, hi = float(values.min()), float(values.max())
    pad = max(0.05 * (hi - lo), 0.5)  # a little room so markers are not cut by the frame
    return math.floor(lo - pad), math.ceil(hi + pad)


__all__ = ["plot_rd"]

"""Rate-distortion plots (PNG + SVG) of RDCurve lists, e.g. our runs against published curves.

Figures are built with matplotlib's object API (`Figure` + the Agg canvas), never pyplot, so calling
this from a notebook or GUI session neither changes the user's backend nor leaves figures open.
matplotlib is imported only when a plot is made: the rest of evc.eval does not need it.

What a reader sees is fixed here, once for every plot evc writes:
- a codec has one colour in every plot (CODEC_COLOURS), whichever metric and whichever other curves;
- legends name codecs briefly ("AVIF", "EVC-SS v4", "EVC-SS (paper)"; evc.eval.labels): the full
  names, with library versions and settings, belong under tables (`evc compare`, docs/results.md);
- the legend sits outside the axes, so it never covers a curve;
- curves measured on different images say so, in the legend and in a subtitle under the title.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from evc.eval.bdrate import curve_quality
from evc.eval.labels import PAPER_SUFFIX, curve_labels, cut, short_label
from evc.eval.results import RDCurve, ResultsError, image_set, mixed_image_sets

if TYPE_CHECKING:  # matplotlib is optional: imported when a figure is made
    from matplotlib.figure import Figure

# Line styles by role, so readers tell our curves from published ones and from classic codecs at a glance.
_STYLES: dict[str, dict[str, object]] = {
    "ours": {"linestyle": "-", "linewidth": 2.4, "marker": "o", "markersize": 5.5, "zorder": 3},
    "published": {"linestyle": "--", "linewidth": 1.5, "marker": "s", "markersize": 4, "zorder": 2},
    "baseline": {"linestyle": ":", "linewidth": 1.3, "marker": ".", "markersize": 6, "zorder": 1},
}
# The subtitle of a plot of curves measured on different images.
NOT_LIKE_FOR_LIKE = "Not like for like: the curves were measured on different images"
_Y_LABEL = {"psnr": "PSNR-RGB (dB)", "ms-ssim": "MS-SSIM-RGB (dB) = -10 log10(1 - MS-SSIM)"}

# One colour per codec in every plot (keys: short labels). Ours and the paper's curve of a model share
# its colour and differ in line style. Codecs not listed take the first free colour of FALLBACK_COLOURS.
CODEC_COLOURS: dict[str, str] = {
    "EVC-SS": "#1f77b4", "EVC-MM": "#ff7f0e", "EVC-LL": "#393b79",
    "EVC-LM": "#6b6ecf", "EVC-LS": "#9c9ede", "EVC-ML": "#8c6d31", "EVC-MS": "#bd9e39", "EVC-SL": "#843c39",
    "Scale-SL": "#ad494a", "Scale-SS": "#7b4173",
    "VTM": "#000000", "HM": "#7f7f7f", "AV1": "#17becf", "AVIF": "#d62728", "BPG": "#e7ba52",
    "HEIC": "#bcbd22", "JPEG": "#8c564b", "JPEG 4:2:0": "#8c564b", "JPEG 4:4:4": "#c49c94",
    "JPEG 2000": "#e377c2", "JPEG XL": "#9467bd", "WebP": "#2ca02c",
}
FALLBACK_COLOURS = ("#98df8a", "#ff9896", "#c5b0d5", "#aec7e8", "#ffbb78", "#f7b6d2", "#dbdb8d", "#9edae5",
                    "#cedb9c", "#e7969c", "#de9ed6", "#636363")
def _colours_and_labels(curves: list[RDCurve], styles: dict[str, str]) -> tuple[list[str], list[str]]:
    """A colour and a legend label per curve. A codec's colour is CODEC_COLOURS' wherever it is free;
    two curves of one codec and one role (e.g. live WebP and CompressAI's WebP) would look alike, so
    the later one takes a fallback colour, as do unknown codecs; labels are evc.eval.labels' (equal
    ones become the full names, cut)."""
    labels = [cut(label) for label in curve_labels(curves)]
    taken: set[tuple[str, str]] = set()  # (colour, role)
    used = set(CODEC_COLOURS.values())
    spare = iter([c for c in FALLBACK_COLOURS if c not in used] * (len(curves) // len(FALLBACK_COLOURS) + 1))
    colours = []
    for curve in curves:
        role = styles.get(curve.name, "baseline")
        colour = CODEC_COLOURS.get(short_label(curve.name).removesuffix(PAPER_SUFFIX))
        if colour is None or (colour, role) in taken:
            colour = next(spare)
        taken.add((colour, role))
        colours.append(colour)
    return colours, labels


def image_set_title(curves: list[RDCurve]) -> str:
    """A title naming the images the curves were measured on, like "Kodak, 24 images", when they agree
    (curves that do not say are left out); "" when they differ or none says."""
    if mixed_image_sets(curves):
        return ""
    found = [s for s in map(image_set, curves) if s.known]
    if not found:
        return ""
    dataset = next((s.dataset for s in found if s.dataset), None)
    count = next((s.count for s in found if s.count is not None), None)
    parts = [dataset[:1].upper() + dataset[1:] if dataset else "", f"{count} images" if count is not None else ""]
    return ", ".join(p for p in parts if p)


def plot_rd(
    curves: list[RDCurve],
    out_stem: str | Path,
    metric: str = "psnr",
    title: str | None = None,
    bpp_max: float | None = 1.6,
    styles: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> list[Path]:
    """Plot quality against bpp (:func:`rd_figure`); write `<out_stem>.png` and `<out_stem>.svg`.
    Returns the written paths (PNG, SVG). Raises as :func:`rd_figure`."""
    return save_figure(rd_figure(curves, metric, title, bpp_max, styles, labels), out_stem)


def save_figure(fig: Figure, out_stem: str | Path) -> list[Path]:
    """Write `fig` as `<out_stem>.png` (150 dpi) and `<out_stem>.svg`, creating the folder; returns the
    paths (PNG, SVG). The SVG is byte-stable: the same figure gives the same file."""
    import matplotlib

    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_stem.parent / f"{out_stem.name}.png", out_stem.parent / f"{out_stem.name}.svg"]
    fig.savefig(paths[0], dpi=150)
    # No timestamp and a fixed salt for the ids matplotlib gives clip paths and glyphs (random by
    # default): the same data gives the same file, so regenerated docs only change where data did.
    with matplotlib.rc_context({"svg.hashsalt": "evc"}):
        fig.savefig(paths[1], metadata={"Date": None})
    return paths


def rd_figure(
    curves: list[RDCurve],
    metric: str = "psnr",
    title: str | None = None,
    bpp_max: float | None = 1.6,
    styles: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> Figure:
    """A matplotlib Figure (Agg canvas, no pyplot) of quality against bpp, one line per curve.

    `styles` maps a curve name to "ours" (solid, thick), "published" (dashed) or "baseline" (dotted,
    thin; the default). Curves that lack `metric` are skipped; the others keep the colours they have in
    a plot of another metric. `title`: None names the images (:func:`image_set_title`). `labels` maps
    curve names to legend labels (default: evc.eval.labels' short ones). When the curves were measured
    on different images, each label says on which, and a subtitle says the plot is not like for like.
    `bpp_max` limits the x axis (None: fit all points); the y range fits the points inside it. The legend lies outside the axes, right of them.

    Raises ValueError for an unknown style or metric or a bpp_max <= 0, ResultsError when no curve has
    `metric`, ImportError without matplotlib.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("RD plots need matplotlib (pip install matplotlib)") from None

    styles = styles or {}
    for name, role in styles.items():
        if role not in _STYLES:
            raise ValueError(f"style {role!r} for curve {name!r} is not one of {', '.join(_STYLES)}")
    if bpp_max is not None and not bpp_max > 0:
        raise ValueError(f"bpp_max must be positive or None, got {bpp_max}")

    # Colours and labels from all the curves, before those without this metric are dropped: the
    # PSNR and MS-SSIM plots of one comparison then give each codec the same colour.
    colours, legend = _colours_and_labels(curves, styles)
    if labels:
        legend = [labels.get(c.name, label) for c, label in zip(curves, legend)]
    mixed = mixed_image_sets(curves)
    if mixed:
        legend = [f"{label}: {image_set(c).describe()}" for c, label in zip(curves, legend)]
    series: list[tuple[RDCurve, str, str, np.ndarray, np.ndarray]] = []
    for curve, colour, label in zip(curves, colours, legend):
        try:
            quality = curve_quality(curve, metric)  # raises ValueError for an unknown metric name
        except ResultsError:
            continue  # lacks this metric: nothing to draw
        order = np.argsort(curve.bpp)  # connect points in rate order
        series.append((curve, colour, label, np.asarray(curve.bpp, dtype=np.float64)[order], quality[order]))
    if not series:
        raise ResultsError(f"none of the {len(curves)} curves has {metric} values to plot")
    # Legend entries by role (ours, published, baselines), each in the given order.
    roles = list(_STYLES)
    series.sort(key=lambda s: roles.index(styles.get(s[0].name, "baseline")))

    fig = Figure(figsize=(8.6, 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for curve, colour, label, bpp, quality in series:
        ax.plot(bpp, quality, label=label, color=colour, **_STYLES[styles.get(curve.name, "baseline")])

    x_hi = bpp_max if bpp_max is not None else 1.05 * max(float(s[3].max()) for s in series)
    ax.set_xlim(0.0, x_hi)
    visible = np.concatenate([q[b <= x_hi] for *_, b, q in series])
    ax.set_ylim(*_y_range(visible if visible.size else np.concatenate([s[4] for s in series])))
    ax.set_xlabel("bits per pixel (bpp)")
    ax.set_ylabel(_Y_LABEL[metric])
    title = image_set_title(curves) if title is None else title
    if title:
        # Room above the axes for the subtitle, which sits between them and the title.
        ax.set_title(title, fontsize="medium", pad=16 if mixed else 6)
    if mixed:
        ax.annotate(NOT_LIKE_FOR_LIKE, xy=(0.5, 1.0), xycoords="axes fraction", xytext=(0, 3),
                    textcoords="offset points", ha="center", va="bottom", fontsize="small", color="#a0322d")
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", alpha=0.15)
    ax.minorticks_on()
    # Outside the axes: inside, some placement always covers a curve of some comparison.
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize="small")
    return fig


def _y_range(values: np.ndarray) -> tuple[float, float]:
    """Whole-dB limits around the given quality values (those visible in the bpp range)."""
    lo, hi = float(values.min()), float(values.max())
    pad = max(0.05 * (hi - lo), 0.5)  # a little room so markers are not cut by the frame
    return math.floor(lo - pad), math.ceil(hi + pad)


__all__ = ["CODEC_COLOURS", "FALLBACK_COLOURS", "NOT_LIKE_FOR_LIKE", "image_set_title", "plot_rd", "rd_figure",
           "save_figure", "short_label"]

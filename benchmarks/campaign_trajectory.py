"""EVC-SS along the training campaign: BD-rate against WebP, JPEG XL, AVIF and VTM per leg, as a table and a plot.

    python benchmarks/campaign_trajectory.py                       # the table (Markdown) only
    python benchmarks/campaign_trajectory.py --plot docs/results/campaign/trajectory

Reads docs/results/campaign/trajectory.json: per shipped version or campaign leg, its lineage's cumulative
training and its RD curves on Kodak (24 images) and on the validation split (16 training photos held out).
The anchors are the committed live baselines (docs/results/{kodak,validation}/{webp,jxl,avif}.json) and,
on Kodak only, the published VTM curve (no VTM encoder here). BD-rate in PSNR (`evc.eval.bdrate.bd_rate`):
negative = fewer bits than the anchor at equal quality, so a line below 0 has crossed that codec.

A point may also name its curve on the training sample (16 photos it trained on, the split's mix of
sources: evc.shared_data.TRAIN_SAMPLE_PHOTOS, `evc eval --train-sample`): the table then gives the
train-vs-split gap, its BD-rate against WebP there less that on the split. A large gap means the
model fits its training photos more than photos in general (issue 37).

`--plot STEM` writes STEM.png and STEM.svg: BD-rate against cumulative crops seen, one line per anchor,
one panel per image set. Points measured in float64 arithmetic (the versions shipped before int8 was
measured) are drawn hollow: int8 costs about 0.5 % BD-rate on the validation split (docs/training.md).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing

from evc.eval.bdrate import bd_rate  # noqa: E402
from evc.eval.plots import CODEC_COLOURS, save_figure  # noqa: E402
from evc.eval.published import VTM_KODAK  # noqa: E402
from evc.eval.results import RDCurve, ResultsError, load_curve  # noqa: E402

MANIFEST = ROOT / "docs" / "results" / "campaign" / "trajectory.json"
RESULTS = ROOT / "docs" / "results"
SETS = ("kodak", "validation")
ANCHORS: dict[str, dict[str, Path]] = {
    "kodak": {"WebP": RESULTS / "kodak" / "webp.json", "JPEG XL": RESULTS / "kodak" / "jxl.json",
              "AVIF": RESULTS / "kodak" / "avif.json", "VTM": VTM_KODAK},
    "validation": {"WebP": RESULTS / "validation" / "webp.json", "JPEG XL": RESULTS / "validation" / "jxl.json",
                   "AVIF": RESULTS / "validation" / "avif.json"},
}
TRAIN_SAMPLE_WEBP = RESULTS / "train-sample" / "webp.json"


@dataclass(frozen=True)
class Point:
    """One version or leg: its label, its lineage's training, and per image set its curve (or None)."""

    label: str
    date: str
    total_crops: int
    total_hours: float
    arithmetic: str
    curves: dict[str, RDCurve | None]
    train_sample: RDCurve | None = None


def read_manifest(path: Path) -> list[Point]:
    """The points of a trajectory manifest, curves loaded. Raises ResultsError for a malformed manifest
    or a curve file that is missing or unreadable (the error names it)."""
    try:
        data = json.loads(path.read_text())
        rows = data["points"]
    except FileNotFoundError:
        raise ResultsError(f"manifest not found: {path}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ResultsError(f"{path} is not a trajectory manifest ({exc})") from None
    points = []
    for row in rows:
        try:
            curves = {s: (load_curve(path.parent / row[s]) if row[s] else None) for s in SETS}
            sample = row.get("train_sample")
            points.append(Point(str(row["label"]), str(row["date"]), int(row["total_crops"]),
                                float(row["total_hours"]), str(row["arithmetic"]), curves,
                                load_curve(path.parent / sample) if sample else None))
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultsError(f"{path}: point {row!r} lacks or misstates a field ({exc})") from None
    return points


def bd_rates(points: list[Point]) -> dict[str, list[dict[str, float | None]]]:
    """Per image set, per point, the BD-rate (%) against each anchor; None where the point has no curve
    there or the curves do not overlap in quality."""
    table: dict[str, list[dict[str, float | None]]] = {}
    for image_set in SETS:
        anchors = {name: load_curve(p) for name, p in ANCHORS[image_set].items()}
        rows = []
        for point in points:
            curve = point.curves[image_set]
            row: dict[str, float | None] = {}
            for name, anchor in anchors.items():
                try:
                    row[name] = bd_rate(anchor, curve).percent if curve is not None else None
                except ResultsError:
                    row[name] = None
            rows.append(row)
        table[image_set] = rows
    return table


def train_split_gaps(points: list[Point], table: dict[str, list[dict[str, float | None]]]) -> list[float | None]:
    """Per point, its BD-rate against WebP on the training sample less that on the validation split
    (percentage points; None without both curves)."""
    webp = load_curve(TRAIN_SAMPLE_WEBP) if any(p.train_sample is not None for p in points) else None
    gaps: list[float | None] = []
    for point, split in zip(points, table["validation"]):
        if webp is None or point.train_sample is None or split["WebP"] is None:
            gaps.append(None)
            continue
        try:
            gaps.append(bd_rate(webp, point.train_sample).percent - split["WebP"])
        except ResultsError:
            gaps.append(None)
    return gaps


def _cell(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:+.1f} %"


def markdown(points: list[Point], table: dict[str, list[dict[str, float | None]]]) -> str:
    """The table: one row per point, Kodak then validation BD-rates against each anchor, then the
    train-vs-split gap where any point has a training-sample curve."""
    names = {s: list(ANCHORS[s]) for s in SETS}
    gaps = train_split_gaps(points, table)
    with_gap = any(g is not None for g in gaps)
    head = (["version / leg", "date", "training (h, cumulative)", "crops (cumulative)", "arithmetic"]
            + [f"Kodak vs {n}" for n in names["kodak"]] + [f"validation vs {n}" for n in names["validation"]]
            + (["train-vs-split gap (vs WebP)"] if with_gap else []))
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for i, p in enumerate(points):
        cells = [p.label, p.date, f"{p.total_hours:.2f}", f"{p.total_crops:,}", p.arithmetic]
        cells += [_cell(table[s][i][n]) for s in SETS for n in names[s]]
        if with_gap:
            cells.append("-" if gaps[i] is None else f"{gaps[i]:+.1f} points")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(points: list[Point], table: dict[str, list[dict[str, float | None]]], stem: Path) -> list[Path]:
    """BD-rate against cumulative crops, a panel per image set; writes STEM.png and STEM.svg."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11.0, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    x = [p.total_crops / 1e3 for p in points]
    for ax, image_set in zip(axes, SETS):
        for name in ANCHORS[image_set]:
            colour = CODEC_COLOURS[name]
            shown = [i for i, row in enumerate(table[image_set]) if row[name] is not None]
            ax.plot([x[i] for i in shown], [table[image_set][i][name] for i in shown], color=colour,
                    linewidth=1.8, label=f"vs {name}")
            for i in shown:
                ax.plot([x[i]], [table[image_set][i][name]], marker="o", markersize=6, color=colour,
                        markerfacecolor=colour if points[i].arithmetic == "int8" else "white")
        ax.axhline(0.0, color="black", linewidth=1.0)
        ax.text(0.99, 0.02, "below 0: fewer bits than the codec", transform=ax.transAxes, fontsize="small",
                ha="right", va="bottom")
        # The versions and legs named along the top, where each point lies on the x axis.
        measured = [i for i, row in enumerate(table[image_set]) if any(v is not None for v in row.values())]
        names = ax.secondary_xaxis("top")
        names.set_xticks([x[i] for i in measured], [points[i].label for i in measured], rotation=50,
                         ha="left", fontsize="x-small")
        missing = [p.label for p in points if p.curves[image_set] is None]
        if missing:
            ax.text(0.01, 0.98, "no curve kept here: " + ", ".join(missing), transform=ax.transAxes,
                    fontsize="small", va="top")
        title = "Kodak (24 images)" if image_set == "kodak" else "validation split (16 photos)"
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("crops of 128 px seen (thousands, cumulative)")
        ax.grid(True, alpha=0.35)
    handles, labels = axes[0].get_legend_handles_labels()  # Kodak has every anchor
    fig.legend(handles, labels, loc="outside right upper", fontsize="small")
    axes[0].set_ylabel("BD-rate in PSNR (%)")
    fig.suptitle("EVC-SS along the CPU training campaign (hollow: float64 arithmetic; filled: int8)",
                 fontsize="medium")
    return save_figure(fig, stem)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    parser.add_argument("--plot", type=Path, metavar="STEM", help="write STEM.png and STEM.svg")
    args = parser.parse_args(argv)
    try:
        points = read_manifest(args.manifest)
        table = bd_rates(points)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown(points, table))
    if args.plot is not None:
        for path in plot(points, table, args.plot):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

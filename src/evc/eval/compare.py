"""What `evc compare` compares with what: the anchor of each curve, chosen like for like.

A BD-rate between curves measured on different images says nothing about either codec (the same codec
scores +500 % against VTM on Kodak when measured on harder photos), so by default each compared curve is
anchored on a curve measured on the same images:

1. a live baseline among the results (`evc eval --baseline`), first in ANCHOR_ORDER: WebP, JPEG 4:2:0,
   JPEG 4:4:4, AVIF, HEIC, JPEG XL, JPEG 2000, then others in the order given. WebP comes first because
   every install has it (Pillow), it is widely known, and it sits mid-field, so BD-rates against it stay
   readable for strong and weak codecs alike; JPEG is the universal reference after it;
2. else a published curve on the same images (VTM on Kodak, shipped with evc).

VTM is shown beside a live anchor too when curves were measured on the 24 Kodak images: it is the
literature's anchor. "The same images" means the result files say so (pixel digests, else names, else
count and dataset: evc.eval.results.same_images). A curve that does not say which images it was measured
on (CompressAI's files) is anchored on a curve it is not known to differ from, and the report says so.
A curve with no anchor on its images gets no BD-rate at all: the report says plainly that there is no
like-for-like anchor, and gives its quality at a few rates instead (:func:`format_quality_table`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from evc.eval.bdrate import quality_at_rates
from evc.eval.labels import curve_label, short_label
from evc.eval.results import RDCurve, ResultsError, different_images, image_set, same_images

__all__ = ["ANCHOR_ORDER", "AnchorChoice", "QUALITY_RATES", "choose_anchors", "comparison_title", "describe_choice",
           "format_quality_table"]

#: Live baselines by preference as the default anchor (short labels, evc.eval.labels).
ANCHOR_ORDER: tuple[str, ...] = ("WebP", "JPEG 4:2:0", "JPEG 4:4:4", "AVIF", "HEIC", "JPEG XL", "JPEG 2000")
_METRIC_LABEL = {"psnr": "PSNR", "ms-ssim": "MS-SSIM"}
#: The rates (bpp) at which curves without an anchor are given their quality.
QUALITY_RATES: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)


@dataclass
class AnchorChoice:
    """The default anchors of a comparison (:func:`choose_anchors`)."""

    anchors: list[RDCurve]  # the table's columns, in order
    anchor_of: list[RDCurve | None]  # per compared curve, its own anchor (None: no like-for-like one)
    assumed: list[bool] = field(default_factory=list)  # per compared curve: its images unknown, anchored anyway


def _rank(curve: RDCurve) -> int:
    label = short_label(curve.name)
    return ANCHOR_ORDER.index(label) if label in ANCHOR_ORDER else len(ANCHOR_ORDER)


def choose_anchors(curves: Sequence[RDCurve], published: Sequence[RDCurve] = ()) -> AnchorChoice:
    """Each curve's like-for-like anchor (see the module docstring), among the live baselines of
    ``curves`` (meta "kind": "baseline") and the ``published`` anchor curves (e.g. VTM on Kodak)."""
    live = sorted((c for c in curves if c.meta.get("kind") == "baseline"), key=_rank)  # stable: given order
    candidates = [*live, *published]
    anchor_of: list[RDCurve | None] = []
    assumed = []
    for curve in curves:
        anchor = next((a for a in candidates if same_images(curve, a)), None)
        guessed = anchor is None and not image_set(curve).known
        if guessed:
            anchor = next((a for a in candidates if not different_images(curve, a)), None)
        anchor_of.append(anchor)
        assumed.append(guessed and anchor is not None)
    anchors: list[RDCurve] = []
    for anchor in anchor_of:
        if anchor is not None and all(anchor is not a for a in anchors):
            anchors.append(anchor)
    # The published anchor beside a live one, where it is like for like: the number papers give.
    for anchor in published:
        if all(anchor is not a for a in anchors) and any(same_images(c, anchor) for c in curves):
            anchors.append(anchor)
    return AnchorChoice(anchors, anchor_of, assumed)


def comparison_title(curves: Sequence[RDCurve], anchors: Sequence[RDCurve], metric: str) -> str:
    """A plot title that says what is compared, like "PSNR vs bpp on 3 images (photos), anchor WebP";
    "..., anchors WebP, VTM" for several, "..., no like-for-like anchor" for none. The images are named
    when every curve that says agrees; across image sets, each anchor's ("anchors WebP on 3 images
    (photos), VTM on 24 images (kodak)"), and the plot's subtitle says it is not like for like."""
    what = f"{_METRIC_LABEL[metric]} vs bpp"
    sets = {image_set(c).describe() for c in [*curves, *anchors] if image_set(c).known}
    mixed = any(different_images(a, b) for i, a in enumerate([*curves, *anchors]) for b in [*curves, *anchors][i + 1:])
    if len(sets) >= 1 and not mixed:
        what += f" on {max(sets, key=len)}"  # the fullest description of the one image set
    if not anchors:
        return f"{what}, no like-for-like anchor"
    # Across image sets each anchor says whose images it was measured on.
    names = ", ".join(curve_label(a) + (f" on {image_set(a).describe()}" if mixed else "") for a in anchors)
    return f"{what}, anchor{'s' if len(anchors) > 1 else ''} {names}"


def format_quality_table(curves: Sequence[RDCurve], labels: dict[str, str], metric: str,
                         rates: Sequence[float] = QUALITY_RATES) -> str:
    """A Markdown table of absolute figures, for curves with no like-for-like anchor: each curve's
    images and its quality (dB) at ``rates`` bpp, interpolated through its points (PCHIP in log-rate),
    "n/a" outside its rate range or without the metric."""
    unit = _METRIC_LABEL[metric] + " dB"
    header = ["curve", "images"] + [f"{unit} at {r:g} bpp" for r in rates]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for curve in curves:
        try:
            values = quality_at_rates(curve, rates, metric)
        except ResultsError:
            values = [None] * len(rates)
        cells = [labels.get(curve.name, curve.name), image_set(curve).describe()]
        cells += ["n/a" if v is None else f"{v:.2f}" for v in values]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def describe_choice(curves: Sequence[RDCurve], choice: AnchorChoice, labels: dict[str, str]) -> list[str]:
    """The lines that say which anchor each curve was given and why, and plainly when a curve has no
    like-for-like anchor (then no BD-rate is given for it)."""
    lines = []
    for anchor in choice.anchors:
        kind = "live baseline" if anchor.meta.get("kind") == "baseline" else "published curve"
        rows = [labels.get(c.name, c.name) for c, a in zip(curves, choice.anchor_of) if a is anchor]
        also = "" if rows else "; shown beside, as papers anchor on it"
        lines.append(f"Anchor {labels.get(anchor.name, anchor.name)}: {kind} measured on the same images "
                     f"({image_set(anchor).describe()}){also}.")
    for curve, anchor, guessed in zip(curves, choice.anchor_of, choice.assumed):
        if guessed and anchor is not None:
            lines.append(f"{labels.get(curve.name, curve.name)} does not say which images it was measured on: "
                         f"compared with {labels.get(anchor.name, anchor.name)} as if on the same images.")
    missing = [c for c, a in zip(curves, choice.anchor_of) if a is None]
    if missing:
        which = ", ".join(f"{labels.get(c.name, c.name)} ({image_set(c).describe()})" for c in missing)
        lines.append(
            f"No like-for-like anchor for {which}: none of the results is a live baseline measured on the "
            "same images, nor is a published curve. A BD-rate against a curve of other images (VTM on Kodak, "
            "say) would compare the images, not the codecs, so none is given; below, quality at equal rates. "
            "For BD-rates, measure a baseline on the same images (evc eval FOLDER --baseline webp) and "
            "compare again, or name an anchor with --anchor FILE."
        )
    return lines

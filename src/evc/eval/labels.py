"""How reports name curves: a short codec label ("WebP", "JPEG 4:2:0", "EVC-SS v4") for table headers,
rows and plot legends, and the full description (library versions, settings, weights) for a footnote.

Below the reports (evc.eval.bdrate, evc.eval.plots) and the runner, which names its progress bar so.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evc.eval.results import RDCurve

__all__ = ["PAPER_SUFFIX", "curve_description", "curve_label", "curve_labels", "short_label"]

# Curve names -> the codec's short label: first match wins, on the name in lower case with "_" as "-"
# (the paper's "EVC_MM (mask decay)", our "EVC-MM", CompressAI's "JPEG2000", our live
# "JPEG 2000 9/7 + MCT, .jp2 (OpenJPEG ...)").
_CODEC_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"evc-(ll|lm|ls|ml|mm|ms|sl|ss)\b", "EVC-{0}"),
    (r"scale-(sl|ss)\b", "Scale-{0}"),
    (r"vtm\b", "VTM"),
    (r"hm\b", "HM"),
    (r"bpg\b", "BPG"),
    (r"av1\b", "AV1"),
    (r"avif\b", "AVIF"),
    (r"(jpeg ?xl|jxl)\b", "JPEG XL"),
    (r"(jpeg ?2000|jp2)\b", "JPEG 2000"),
    (r"jpeg ?(4:?2:?0)", "JPEG 4:2:0"),
    (r"jpeg ?(4:?4:?4)", "JPEG 4:4:4"),
    (r"jpeg\b", "JPEG"),
    (r"webp\b", "WebP"),
    (r"(heic|hevc)\b", "HEIC"),
)
# Appended to the paper's curve names (evc.eval.published), kept in their labels.
PAPER_SUFFIX = " (paper)"
_MAX_LABEL = 32  # characters; longer names of unknown codecs are cut
_VERSION = re.compile(r"v\d+(\.\d+)*")


def short_label(name: str) -> str:
    """The codec's short name for a curve named ``name`` ("AVIF" for "AVIF 4:4:4 speed 6 (libaom ...)"),
    with " (paper)" kept; a name of no known codec as it is, cut to 32 characters."""
    key = name.lower().replace("_", "-").strip()
    for pattern, label in _CODEC_PATTERNS:
        match = re.match(pattern, key)
        if match:
            short = label.format(*(g.upper() for g in match.groups()))
            return short + (PAPER_SUFFIX if name.endswith(PAPER_SUFFIX) else "")
    return cut(name)


def cut(name: str) -> str:
    """``name`` cut to 32 characters ("..." at the end when cut)."""
    return name if len(name) <= _MAX_LABEL else name[: _MAX_LABEL - 3].rstrip() + "..."


def _weights_version(curve: RDCurve) -> str | None:
    """The release of our model's weights, like "v4": ``meta.versions.weights_version`` (`evc eval` of
    released weights), else a weights label ending in one ("EVC-SS v4", scripts/ship_weights.py)."""
    versions = curve.meta.get("versions") or {}
    if not isinstance(versions, dict):
        return None
    version = versions.get("weights_version")
    if isinstance(version, str) and _VERSION.fullmatch(version):
        return version
    last = str(versions.get("weights", "")).rsplit(" ", 1)[-1]
    return last if _VERSION.fullmatch(last) else None


def curve_label(curve: RDCurve) -> str:
    """The short label of ``curve``: :func:`short_label` of its name, and for our models the weights'
    release when the curve records one ("EVC-SS v4")."""
    label = short_label(curve.name)
    version = _weights_version(curve) if curve.meta.get("kind") == "ours" else None
    return f"{label} {version}" if version and not label.endswith(version) else label


def curve_description(curve: RDCurve) -> str:
    """The full description of ``curve``: its name (live codecs: configuration and library versions),
    and for our models the weights and arithmetic, like "EVC-SS (weights shipped v4, int8 arithmetic)"."""
    versions = curve.meta.get("versions") or {}
    if curve.meta.get("kind") != "ours" or not isinstance(versions, dict):
        return curve.name
    weights = str(versions.get("weights", "")).strip()
    version = _weights_version(curve)
    if version and not weights.endswith(version):
        weights = f"{weights} {version}".strip()
    parts = [f"weights {weights}" if weights else "",
             f"{versions['arithmetic']} arithmetic" if "arithmetic" in versions else ""]
    details = ", ".join(p for p in parts if p)
    return f"{curve.name} ({details})" if details else curve.name


def curve_labels(curves: list[RDCurve], long: bool = False) -> list[str]:
    """One label per curve, distinct: :func:`curve_label` (``long``: :func:`curve_description`); labels
    that two curves share become their descriptions, then get "#2", "#3" in order."""
    labels = [curve_description(c) if long else curve_label(c) for c in curves]
    labels = [curve_description(c) if labels.count(label) > 1 else label for c, label in zip(curves, labels)]
    seen: dict[str, int] = {}
    unique = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if labels.count(label) == 1 else f"{label} #{seen[label]}")
    return unique

"""Rate-distortion curves in CompressAI's JSON schema (the schema of ../shared/rd_results).

    {"name": ..., "description": ..., ["meta": {...}],
     "results": {"bpp": [...], "psnr-rgb": [...], ["ms-ssim-rgb": [...]],
                 ["encoding_time": [...], "decoding_time": [...]]},
     ["per_image": {"kodim01.png": {"bpp": [...], "psnr-rgb": [...], ...}, ...]}

One point per rate setting; "results" holds means over images, "per_image" (ours, optional) the
per-image values. Times are seconds per image. Files that give MS-SSIM only in dB
("ms-ssim-db-rgb", -10 log10(1 - MS-SSIM)) are read too.

The images a curve was measured on (:func:`image_set`) come from "per_image" (their names) or from
"meta": "image_sha256" (name -> digest of the pixels, `evc eval` since 2026-12-07), "images" (how
many), "image_names" (which, for files without per-image values) and "dataset" (the folder or set,
e.g. "kodak"). Curves measured on different images are not like for like: `evc compare` anchors each
curve on one measured on the same images (evc.eval.compare), and a BD-rate or plot across image sets
is marked (evc.eval.bdrate, evc.eval.plots).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evc.errors import EVCError

METRIC_KEYS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time")


class ResultsError(EVCError):
    pass


@dataclass
class RDCurve:
    name: str
    bpp: list[float]
    psnr: list[float] | None
    ms_ssim: list[float] | None = None
    encoding_time: list[float] | None = None
    decoding_time: list[float] | None = None
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    per_image: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.bpp)
        for key, values in self._series().items():
            if values is None:
                continue
            if len(values) != n:
                raise ResultsError(f"curve {self.name!r}: {key} has {len(values)} points, bpp has {n}")
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                raise ResultsError(f"curve {self.name!r}: {key} holds a missing or non-finite value")
        if n == 0:
            raise ResultsError(f"curve {self.name!r} has no points")
        if self.psnr is None and self.ms_ssim is None:
            raise ResultsError(f"curve {self.name!r} has neither psnr-rgb nor ms-ssim-rgb")

    def _series(self) -> dict[str, list[float] | None]:
        return {
            "bpp": self.bpp,
            "psnr-rgb": self.psnr,
            "ms-ssim-rgb": self.ms_ssim,
            "encoding_time": self.encoding_time,
            "decoding_time": self.decoding_time,
        }

    def to_json(self) -> dict[str, Any]:
        results = {k: list(map(float, v)) for k, v in self._series().items() if v is not None}
        out: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.meta:
            out["meta"] = self.meta
        out["results"] = results
        if self.per_image:
            out["per_image"] = self.per_image
        return out


@dataclass(frozen=True)
class ImageSet:
    """What a curve says about the images it was measured on; None where it does not say."""

    dataset: str | None  # e.g. "kodak" (evc eval: the images' folder)
    count: int | None
    names: frozenset[str] | None  # file names without suffix: kodim01.png and kodim01.ppm are one image
    digests: frozenset[str] | None = None  # SHA-256 of each image's pixels (evc.eval.runner.pixel_digest)

    @property
    def known(self) -> bool:
        return self.dataset is not None or self.count is not None or self.names is not None

    def describe(self) -> str:
        """Like "4 images (kodak)", "24 images", "unknown images"."""
        if not self.known:
            return "unknown images"
        count = "images" if self.count is None else f"{self.count} image{'s' if self.count != 1 else ''}"
        return count if self.dataset is None else f"{count} ({self.dataset})"


def curve_arithmetic(curve: RDCurve) -> str:
    """The entropy-parameter arithmetic an EVC curve's files were made in ("int8", "float64", "float"),
    from ``meta.versions.arithmetic`` (evc.eval.runner); curves recorded before 2026-12-04 do not name
    it, and format version 2's float64 made them."""
    return str(curve.meta.get("versions", {}).get("arithmetic", "float64"))


def image_set(curve: RDCurve) -> ImageSet:
    """The images ``curve`` was measured on, as far as its per-image values and meta say."""
    names = list(curve.per_image) or curve.meta.get("image_names")
    stems = frozenset(Path(str(n)).stem for n in names) if isinstance(names, list) and names else None
    count = curve.meta.get("images")
    if stems is not None:
        count = len(names)
    elif not (isinstance(count, int) and count > 0):
        count = None
    dataset = curve.meta.get("dataset")
    hashes = curve.meta.get("image_sha256")
    digests = frozenset(map(str, hashes.values())) if isinstance(hashes, dict) and hashes else None
    if digests is not None and count is None:
        count = len(hashes)
    return ImageSet(str(dataset) if dataset else None, count, stems, digests)


def different_images(a: RDCurve, b: RDCurve) -> bool:
    """True when ``a`` and ``b`` say they were measured on different images: other pixels (both record
    digests), else other names, else another count, else another dataset (letter case aside). False
    when they agree or one does not say."""
    sa, sb = image_set(a), image_set(b)
    if sa.digests is not None and sb.digests is not None:
        return sa.digests != sb.digests  # pixels decide: renamed copies agree, same-named photos do not
    if sa.names is not None and sb.names is not None:
        return sa.names != sb.names  # names decide: the same photos in another folder are the same set
    if sa.count is not None and sb.count is not None and sa.count != sb.count:
        return True
    return sa.dataset is not None and sb.dataset is not None and sa.dataset.lower() != sb.dataset.lower()


def same_images(a: RDCurve, b: RDCurve) -> bool:
    """True when ``a`` and ``b`` say enough to show they were measured on the same images: the same
    pixel digests, else the same names, else the same count and dataset. False when they differ or
    either does not say (:func:`different_images` gives the benefit of the doubt; this does not)."""
    if different_images(a, b):
        return False
    sa, sb = image_set(a), image_set(b)
    if sa.digests is not None and sb.digests is not None:
        return True
    if sa.names is not None and sb.names is not None:
        return True
    return (sa.count is not None and sa.count == sb.count and sa.dataset is not None and sb.dataset is not None
            and sa.dataset.lower() == sb.dataset.lower())


def mixed_image_sets(curves: list[RDCurve]) -> bool:
    """True when two of ``curves`` say they were measured on different images (:func:`different_images`)."""
    return any(different_images(a, b) for i, a in enumerate(curves) for b in curves[i + 1:])


def format_image_sets(curves: list[RDCurve]) -> str | None:
    """None unless :func:`mixed_image_sets`; then one line naming the curves of each image set, like
    "EVC-SS: 4 images (kodak); VTM, EVC_LL (paper): 24 images (kodak)"."""
    if not mixed_image_sets(curves):
        return None
    groups: dict[tuple[str, frozenset[str] | None], list[str]] = {}
    for curve in curves:
        found = image_set(curve)
        groups.setdefault((found.describe(), found.names), []).append(curve.name)
    return "; ".join(f"{', '.join(names)}: {described}" for (described, _), names in groups.items())


def curve_from_json(data: dict[str, Any], source: str = "<data>") -> RDCurve:
    try:
        results = data["results"]
        return RDCurve(
            name=str(data.get("name") or Path(source).stem),
            bpp=[float(v) for v in results["bpp"]],
            psnr=_optional(results, "psnr-rgb"),
            ms_ssim=_optional(results, "ms-ssim-rgb") or _ms_ssim_from_db(_optional(results, "ms-ssim-db-rgb")),
            encoding_time=_optional(results, "encoding_time"),
            decoding_time=_optional(results, "decoding_time"),
            description=str(data.get("description", "")),
            meta=dict(data.get("meta") or {}),
            per_image=dict(data.get("per_image") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ResultsError(f"{source} is not an RD results file (CompressAI schema): {exc!r}") from None


def _ms_ssim_from_db(values: list[float] | None) -> list[float] | None:
    """Some published files give MS-SSIM as -10 log10(1 - MS-SSIM) only."""
    return None if values is None else [1 - 10 ** (-v / 10) for v in values]


def _optional(results: dict[str, Any], key: str) -> list[float] | None:
    values = results.get(key)
    if values is None or (isinstance(values, list) and not values):
        return None
    return [float(v) for v in values]


def load_curve(path: str | Path) -> RDCurve:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultsError(f"results file not found: {path}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path} is not an RD results file (CompressAI schema)")
    return curve_from_json(data, str(path))


def save_curve(curve: RDCurve, path: str | Path) -> None:
    Path(path).write_text(json.dumps(curve.to_json(), indent=1) + "\n")


def format_points(curve: RDCurve) -> list[str]:
    """One line per rate point of ``curve``: bpp, PSNR (dB), MS-SSIM ("n/a" without), and the mean
    encode and decode times in ms; none when the curve lacks PSNR or times (as `evc eval` prints them)."""
    ms = [f"{m:.4f}" for m in curve.ms_ssim] if curve.ms_ssim else ["n/a   "] * len(curve.bpp)
    return [
        f"  {bpp:7.4f} bpp  {psnr:6.2f} dB  MS-SSIM {m}  encode {te * 1e3:8.1f} ms  decode {td * 1e3:8.1f} ms"
        for bpp, psnr, m, te, td in zip(curve.bpp, curve.psnr or [], ms, curve.encoding_time or [], curve.decoding_time or [])
    ]

"""Rate-distortion curves in CompressAI's JSON schema (the schema of ../shared/rd_results).

    {"name": ..., "description": ..., ["meta": {...}],
     "results": {"bpp": [...], "psnr-rgb": [...], ["ms-ssim-rgb": [...]],
                 ["encoding_time": [...], "decoding_time": [...]]},
     ["per_image": {"kodim01.png": {"bpp": [...], "psnr-rgb": [...], ...}, ...]}

One point per rate setting; "results" holds means over images, "per_image" (ours, optional) the
per-image values. Times are seconds per image. Files that give MS-SSIM only in dB
("ms-ssim-db-rgb", -10 log10(1 - MS-SSIM)) are read too.
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

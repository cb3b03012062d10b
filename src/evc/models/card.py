"""Model cards: what a set of weights is, read from the metadata its safetensors files carry.

The trainer writes the training facts (steps, crops seen, seconds, device, data, recipe, date); the
script that ships weights (scripts/ship_weights.py) adds the version and the measured Kodak RD. One
reader serves `evc models` and the MODEL_CARD.md written beside the shipped files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evc.models.weights import (
    CROP_KEY,
    DATA_KEY,
    DATE_KEY,
    DEVICE_KEY,
    IMAGES_SEEN_KEY,
    KODAK_KEY,
    MODEL_KEY,
    RECIPE_KEY,
    STEPS_KEY,
    TRAINING_SECONDS_KEY,
    VERSION_KEY,
    read_metadata,
)


@dataclass(frozen=True)
class ModelCard:
    model: str
    version: str
    steps: int | None
    crops_seen: int | None
    crop: int | None
    training_hours: float | None
    device: str
    data: str
    recipe: str
    date: str
    kodak_bpp: list[float]
    kodak_psnr: list[float]
    bd_rates: dict[str, float]

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> ModelCard:
        def number(key: str, kind: type) -> float | int | None:
            try:
                return kind(json.loads(meta[key])) if key in meta else None
            except (ValueError, TypeError):
                return None

        kodak = {}
        if KODAK_KEY in meta:
            try:
                kodak = json.loads(meta[KODAK_KEY])
            except ValueError:
                kodak = {}
        try:
            data = ", ".join(Path(d).name or d for d in json.loads(meta.get(DATA_KEY, "[]")))
        except (ValueError, TypeError):
            data = meta.get(DATA_KEY, "")
        seconds = number(TRAINING_SECONDS_KEY, float)
        return cls(
            model=meta.get(MODEL_KEY, "?"),
            version=meta.get(VERSION_KEY, "unversioned"),
            steps=number(STEPS_KEY, int),  # type: ignore[arg-type]
            crops_seen=number(IMAGES_SEEN_KEY, int),  # type: ignore[arg-type]
            crop=number(CROP_KEY, int),  # type: ignore[arg-type]
            training_hours=None if seconds is None else seconds / 3600,
            device=meta.get(DEVICE_KEY, "unknown device"),
            data=data,
            recipe=meta.get(RECIPE_KEY, ""),
            date=meta.get(DATE_KEY, "")[:10],
            kodak_bpp=[float(v) for v in kodak.get("bpp", [])],
            kodak_psnr=[float(v) for v in kodak.get("psnr", [])],
            bd_rates={str(k): float(v) for k, v in kodak.get("bd_rate", {}).items()},
        )

    @classmethod
    def read(cls, weights: str | Path) -> ModelCard:
        """The card of a weights file or folder (ModelError if it is unreadable)."""
        return cls.from_metadata(read_metadata(weights))

    def lines(self) -> list[str]:
        """A few plain-text lines: provenance, then Kodak RD (as `evc models` prints them)."""
        hours = "?" if self.training_hours is None else f"{self.training_hours:.2f} h"
        crops = "?" if self.crops_seen is None else f"{self.crops_seen:,}"
        out = [
            f"{self.model} {self.version}: trained {hours} on {self.device}, {self.steps} steps, {crops} crops of "
            f"{self.crop} px from {self.data or '?'}; {self.date}",
        ]
        if self.recipe:
            out.append(f"  recipe: {self.recipe}")
        if self.kodak_bpp:
            points = ", ".join(f"{b:.3f} bpp / {p:.2f} dB" for b, p in zip(self.kodak_bpp, self.kodak_psnr))
            out.append(f"  Kodak (24 images, real files): {points}")
        if self.bd_rates:
            out.append("  BD-rate (PSNR): " + ", ".join(f"{v:+.1f} % vs {k}" for k, v in self.bd_rates.items()))
        return out


def format_cards(cards: Sequence[ModelCard]) -> list[str]:
    """The model cards section of `evc models`: a blank line, a title, each card's lines; none when no
    weights ship."""
    if not cards:
        return []
    return ["", "Shipped weights (model cards):", *(line for card in cards for line in card.lines())]

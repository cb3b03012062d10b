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

from evc.errors import ModelError
from evc.models.metadata import read_metadata  # not evc.models.weights: `evc models` runs without torch
from evc.weights_keys import (
    CROP_KEY,
    DATA_KEY,
    DATE_KEY,
    DEVICE_KEY,
    HELD_OUT_KEY,
    IMAGES_SEEN_KEY,
    INIT_WEIGHTS_KEY,
    KODAK_KEY,
    MODEL_KEY,
    RECIPE_KEY,
    STEPS_KEY,
    TOTAL_IMAGES_SEEN_KEY,
    TOTAL_SECONDS_KEY,
    TOTAL_STEPS_KEY,
    TRAINING_SECONDS_KEY,
    VERSION_KEY,
)

# Lineages longer than this are taken to loop (weights that name themselves, directly or not).
_MAX_LINEAGE = 1000


@dataclass(frozen=True)
class TrainingTotals:
    """Training that went into a set of weights over its whole lineage: seconds, steps, crops seen."""

    seconds: float
    steps: int
    crops: int

    def __add__(self, other: TrainingTotals) -> TrainingTotals:
        return TrainingTotals(self.seconds + other.seconds, self.steps + other.steps, self.crops + other.crops)

    def metadata(self) -> dict[str, object]:
        """The totals as weights metadata entries."""
        return {TOTAL_SECONDS_KEY: round(self.seconds, 1), TOTAL_STEPS_KEY: self.steps, TOTAL_IMAGES_SEEN_KEY: self.crops}


def _number(meta: dict[str, str], key: str, kind: type) -> float | int | None:
    try:
        return kind(json.loads(meta[key])) if key in meta else None
    except (ValueError, TypeError):
        return None


def recorded_totals(meta: dict[str, str]) -> TrainingTotals | None:
    """The lineage totals the metadata records, if it does."""
    figures = [_number(meta, key, kind) for key, kind in
               ((TOTAL_SECONDS_KEY, float), (TOTAL_STEPS_KEY, int), (TOTAL_IMAGES_SEEN_KEY, int))]
    return None if None in figures else TrainingTotals(*figures)  # type: ignore[arg-type]


def training_totals(meta: dict[str, str]) -> TrainingTotals | None:
    """The lineage totals of weights with metadata ``meta``, to record when they are written: recorded
    totals when present; else their own run plus, through ``evc.init_weights``, the totals of the
    weights it started from, followed as far as those files still exist on this machine. None when the
    weights record no training."""
    total: TrainingTotals | None = None
    for _ in range(_MAX_LINEAGE):
        recorded = recorded_totals(meta)
        own = [_number(meta, key, kind) for key, kind in
               ((TRAINING_SECONDS_KEY, float), (STEPS_KEY, int), (IMAGES_SEEN_KEY, int))]
        if recorded is None and None in own:
            return total
        this = recorded or TrainingTotals(*own)  # type: ignore[arg-type]
        total = this if total is None else total + this
        init = meta.get(INIT_WEIGHTS_KEY, "null")
        if recorded is not None or init in ("", "null") or not Path(init).exists():
            return total
        try:
            meta = read_metadata(init)
        except ModelError:
            return total
    return total


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
    kodak_images: int | None = None  # how many Kodak images the RD points average (None: not recorded)
    totals: TrainingTotals | None = None  # over the whole lineage (see training_totals)

    @property
    def earlier_runs(self) -> bool:
        """Whether the weights continue earlier training (their lineage holds more than this run)."""
        return self.totals is not None and self.steps is not None and self.totals.steps > self.steps

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> ModelCard:
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
        held_out = _number(meta, HELD_OUT_KEY, int)
        if held_out:
            data += f" ({held_out} validation photos held out)"
        seconds = _number(meta, TRAINING_SECONDS_KEY, float)
        totals = recorded_totals(meta)  # never a walk of this machine's files: a card reads the same anywhere
        return cls(
            model=meta.get(MODEL_KEY, "?"),
            version=meta.get(VERSION_KEY, "unversioned"),
            steps=_number(meta, STEPS_KEY, int),  # type: ignore[arg-type]
            crops_seen=_number(meta, IMAGES_SEEN_KEY, int),  # type: ignore[arg-type]
            crop=_number(meta, CROP_KEY, int),  # type: ignore[arg-type]
            training_hours=None if seconds is None else seconds / 3600,
            device=meta.get(DEVICE_KEY, "unknown device"),
            data=data,
            recipe=meta.get(RECIPE_KEY, ""),
            date=meta.get(DATE_KEY, "")[:10],
            kodak_bpp=[float(v) for v in kodak.get("bpp", [])],
            kodak_psnr=[float(v) for v in kodak.get("psnr", [])],
            bd_rates={str(k): float(v) for k, v in kodak.get("bd_rate", {}).items()},
            kodak_images=int(kodak["images"]) if isinstance(kodak.get("images"), int) else None,
            totals=totals,
        )

    @classmethod
    def read(cls, weights: str | Path) -> ModelCard:
        """The card of a weights file or folder (ModelError if it is unreadable)."""
        return cls.from_metadata(read_metadata(weights))

    def kodak_set(self) -> str:
        """What the Kodak points average: "24 images, real files" (or "real files" if not recorded)."""
        return "real files" if self.kodak_images is None else f"{self.kodak_images} images, real files"

    def lines(self) -> list[str]:
        """A few plain-text lines: provenance, then Kodak RD (as `evc models` prints them)."""
        hours = "?" if self.training_hours is None else f"{self.training_hours:.2f} h"
        crops = "?" if self.crops_seen is None else f"{self.crops_seen:,}"
        out = [
            f"{self.model} {self.version}: trained {hours} on {self.device}, {self.steps} steps, {crops} crops of "
            f"{self.crop} px from {self.data or '?'}; {self.date}",
        ]
        if self.earlier_runs:
            assert self.totals is not None
            out.append(
                f"  in all, with the runs it continued: {self.totals.seconds / 3600:.2f} h, "
                f"{self.totals.steps} steps, {self.totals.crops:,} crops"
            )
        if self.recipe:
            out.append(f"  recipe: {self.recipe}")
        if self.kodak_bpp:
            points = ", ".join(f"{b:.3f} bpp / {p:.2f} dB" for b, p in zip(self.kodak_bpp, self.kodak_psnr))
            out.append(f"  Kodak ({self.kodak_set()}): {points}")
        if self.bd_rates:
            out.append("  BD-rate (PSNR): " + ", ".join(f"{v:+.1f} % vs {k}" for k, v in self.bd_rates.items()))
        return out


def format_cards(cards: Sequence[ModelCard]) -> list[str]:
    """The model cards section of `evc models`: a blank line, a title, each card's lines; none when no
    weights ship."""
    if not cards:
        return []
    return ["", "Shipped weights (model cards):", *(line for card in cards for line in card.lines())]

"""Validation with real coding: Kodak images at the four rate anchors, bpp from the file, RGB PSNR."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from evc.codec import Codec
from evc.models.evc import EVC
from evc.shared_data import KODAK_DIR


def kodak_images(folder: str, count: int) -> list[Path]:
    root = Path(folder) if folder else KODAK_DIR
    if count == 0 or not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.suffix.lower() == ".png")[:count]


def validate(model: EVC, name: str, images: list[Path], device) -> list[dict[str, Any]]:
    """Mean bpp and PSNR per anchor over ``images``; leaves the model in training mode."""
    codec = Codec(model, name, device)
    rows = []
    try:
        loaded = [Image.open(p).convert("RGB") for p in images]
        for anchor, q_index in enumerate(codec.anchor_q_indices):
            results = [codec.encode(image, q_index=q_index) for image in loaded]
            rows.append(
                {
                    "anchor": anchor,
                    "q_index": q_index,
                    "bpp": float(np.mean([r.bpp for r in results])),
                    "psnr": float(np.mean([r.psnr for r in results])),
                }
            )
    finally:
        model.train()
    return rows

"""One hash of what evc computes, to show that a refactor changed no behaviour: run before and after.

    python scripts/behaviour_hash.py          # prints one sha256; equal before and after = same behaviour

It hashes, in order: the bytes and decoded pixels of a 192x128 Kodak crop (kodim23) coded by the
shipped EVC-SS with exact and float entropy parameters at qualities 0, 0.5 and 1, in RGB and gray; the
same crop coded in 64-pixel tiles (every network tiled); seeded random EVC-LL and EVC-MS files of a
96x64 crop; and a seeded EVC-SS training forward (its loss) and every gradient. Deterministic on one
machine and thread count (the float paths depend on the CPU); compare runs of the same machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import evc
from evc.nn.tile_policy import TilePolicy

KODIM23 = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak" / "kodim23.png"


def _coded(h: "hashlib._Hash", codec: evc.Codec, image: object, quality: float) -> None:
    data = codec.compress(image, quality=quality)
    h.update(data)
    h.update(np.asarray(codec.decompress(data)).tobytes())


def main() -> None:
    if not KODIM23.is_file():
        sys.exit(f"needs {KODIM23}")
    torch.manual_seed(0)
    h = hashlib.sha256()
    crop = Image.open(KODIM23).convert("RGB").crop((256, 160, 448, 288))
    for exact in (True, False):
        codec = evc.load("EVC-SS", device="cpu", exact=exact)
        for quality in (0.0, 0.5, 1.0):
            for image in (crop, crop.convert("L")):
                _coded(h, codec, image, quality)
    tiled = evc.load("EVC-SS", device="cpu")
    tiled.execution = dataclasses.replace(tiled.execution, tile_policy=TilePolicy(untiled_max_pixels=0, tile_pixels=64))
    _coded(h, tiled, crop, 0.7)
    for name in ("EVC-LL", "EVC-MS"):
        _coded(h, evc.Codec(evc.create_model(name, seed=1), name, device="cpu"), np.asarray(crop)[:64, :96], 0.3)
    model = evc.create_model("EVC-SS", seed=2).train()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(4)
    out = model(x, torch.tensor([0, 3]))
    loss = sum(t.float().sum() for t in (out.x_hat, out.y_bits, out.z_bits, out.bpp))
    loss.backward()
    h.update(loss.detach().numpy().tobytes())
    for p in model.parameters():
        if p.grad is not None:
            h.update(p.grad.numpy().tobytes())
    print(h.hexdigest())


if __name__ == "__main__":
    main()

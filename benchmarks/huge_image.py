"""Huge images: encode and decode an 8000x6000 image through the `evc` command line, with peak memory,
time, and a seam check (CPU by default).

    python benchmarks/huge_image.py [--model EVC-SS] [--size 8000x6000] [--weights PATH] [--seams]

Each of `evc encode` and `evc decode` runs in its own process; its peak resident memory is the
child's ru_maxrss. Without --weights the model gets seeded random weights (saved to a temporary folder):
time and memory are what they would be with trained weights.

--seams decodes the file a second time in this process with tiles of 1536 instead of 1024 pixels, so
the two decodes have their tile borders in different places, and reports the PSNR between them on the
pixels within 4 of a 1024-tiling border and elsewhere. Both are the untiled result up to float
rounding: a seam would show as a lower PSNR at the borders. It also reports the PSNR against the
original at the borders and elsewhere.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

import evc
from evc.models.weights import save_weights
from evc.nn.tile_policy import TilePolicy

BORDER = 4  # pixels on each side of a tile border counted as "at the border"


def synthetic_photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like test image built in row bands to keep this script's own memory small."""
    rng = np.random.default_rng(seed)
    rows = []
    for top in range(0, height, 512):
        yy, xx = np.mgrid[top : min(top + 512, height), 0:width].astype(np.float32)
        band = np.stack([np.sin(xx / (23 + 7 * c)) * np.cos(yy / (17 + 5 * c)) for c in range(3)], axis=-1) * 90 + 128
        band[((xx // 97 + yy // 61) % 2) == 0] *= 0.8
        rows.append(np.clip(band + rng.normal(0, 6, band.shape), 0, 255).astype(np.uint8))
    return Image.fromarray(np.concatenate(rows))


def run_measured(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process.

    The child reports its own ru_maxrss: RUSAGE_CHILDREN in this process would give the largest of all
    children so far, not this one's."""
    wrapper = (
        "import resource, runpy, sys; sys.argv = sys.argv[1:]; "
        "exit_code = 0\n"
        "try:\n    runpy.run_module('evc', run_name='__main__')\n"
        "except SystemExit as exc:\n    exit_code = exc.code or 0\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(exit_code)"
    )
    start = time.perf_counter()
    done = subprocess.run([command[0], "-c", wrapper, *command[2:]], check=True, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    return elapsed, int(done.stderr.strip().splitlines()[-1]) / 1024


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def border_mask(height: int, width: int, tile: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    for k in range(tile, height, tile):
        mask[k - BORDER : k + BORDER, :] = True
    for k in range(tile, width, tile):
        mask[:, k - BORDER : k + BORDER] = True
    return mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="EVC-SS")
    parser.add_argument("--size", default="8000x6000")
    parser.add_argument("--quality", type=float, default=0.5)
    parser.add_argument("--weights", help="weights folder (default: seeded random weights)")
    parser.add_argument("--arithmetic", choices=["exact", "float"], default="exact")
    parser.add_argument("--seams", action="store_true", help="also decode with other tile borders and compare")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        weights = Path(args.weights) if args.weights else work / "weights"
        if not args.weights:
            save_weights(evc.create_model(args.model, seed=0), weights, args.model)
        source = work / "huge.png"
        image = synthetic_photo(width, height)
        image.save(source, compress_level=1)
        del image
        evc_cli = [sys.executable, "-m", "evc"]
        common = ["--weights", str(weights), "--device", "cpu"]
        enc_s, enc_mb = run_measured(
            evc_cli + ["encode", str(source), str(work / "huge.evc"), "--model", args.model, "--quality",
                       str(args.quality), "--arithmetic", args.arithmetic, *common]
        )
        dec_s, dec_mb = run_measured(evc_cli + ["decode", str(work / "huge.evc"), str(work / "out.png"), *common])
        size = (work / "huge.evc").stat().st_size
        print(f"{args.model} {width}x{height} ({width * height / 1e6:.1f} Mpx), {args.arithmetic} entropy parameters, "
              f"quality {args.quality}, CPU")
        print(f"encode: {enc_s:.1f} s, peak {enc_mb:.0f} MiB; decode: {dec_s:.1f} s, peak {dec_mb:.0f} MiB; "
              f"{size} bytes ({size * 8 / (width * height):.4f} bpp)")
        if args.seams:
            original = np.asarray(Image.open(source).convert("RGB"))
            decoded = np.asarray(Image.open(work / "out.png").convert("RGB"))
            codec = evc.load(args.model, device="cpu", weights=weights)
            codec.max_pixels = max(codec.max_pixels, width * height)
            codec.execution = replace(codec.execution, tile_policy=TilePolicy(tile_pixels=1536))
            other = np.asarray(codec.decompress((work / "huge.evc").read_bytes()).convert("RGB"))
            border = border_mask(height, width, 1024)
            print(f"tile borders (1024-pixel tiles, +-{BORDER} px): {border.mean() * 100:.1f}% of the pixels")
            print(f"PSNR between 1024- and 1536-pixel tiling: at borders {psnr(decoded[border], other[border]):.1f} dB, "
                  f"elsewhere {psnr(decoded[~border], other[~border]):.1f} dB, "
                  f"max difference {int(np.abs(decoded.astype(np.int16) - other).max())} levels")
            print(f"PSNR against the original: at borders {psnr(decoded[border], original[border]):.2f} dB, "
                  f"elsewhere {psnr(decoded[~border], original[~border]):.2f} dB")


if __name__ == "__main__":
    main()

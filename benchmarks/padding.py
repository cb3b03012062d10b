"""What the encoder's padding costs small images: the shipped EVC-SS's error and size with zero padding
and with the edge pixels replicated (evc.image.PADDING_MODE forced to each; its default, "auto", replicates
for images with a side under 64 pixels, as all of these are).

    python benchmarks/padding.py [--weights PATH] [--qualities 0 0.5 1] [--count 8] [--size 8]

Cases: the 1x1 pixel (122, 115, 109) of issue 38, then the central size x size crop of each of the first
``count`` Kodak images. Each line: the largest absolute error (levels), PSNR (dB) and file size (bytes)
of each padding mode, real files decoded by ``decompress``, at each quality; then per quality the mean
PSNR and total bytes of each mode, to compare the modes along their rate-distortion curves.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from PIL import Image

import evc
import evc.image
from evc.shared_data import KODAK_DIR

MODES = {"zeros": "constant", "replicate": "replicate"}


def measure(codec: evc.Codec, rgb: np.ndarray, quality: float, mode: str) -> tuple[int, float, int]:
    evc.image.PADDING_MODE = mode
    data = codec.compress(rgb, quality)
    decoded = np.asarray(codec.decompress(data).convert("RGB"), dtype=np.int64)
    error = decoded - rgb.astype(np.int64)
    mse = float(np.mean(error.astype(np.float64) ** 2))
    psnr = 10 * math.log10(255.0**2 / mse) if mse > 0 else math.inf
    return int(np.abs(error).max()), psnr, len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="weights instead of the shipped EVC-SS")
    parser.add_argument("--qualities", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--count", type=int, default=8, help="Kodak images to crop")
    parser.add_argument("--size", type=int, default=8, help="side of the central crops")
    args = parser.parse_args()
    codec = evc.load("EVC-SS" if not args.weights else None, weights=args.weights, device="cpu")
    cases = [("1x1 (122,115,109)", np.array([[[122, 115, 109]]], dtype=np.uint8))]
    for i in range(1, args.count + 1):
        photo = np.asarray(Image.open(KODAK_DIR / f"kodim{i:02d}.png").convert("RGB"))
        top, left = (photo.shape[0] - args.size) // 2, (photo.shape[1] - args.size) // 2
        cases.append((f"kodim{i:02d} {args.size}x{args.size}", photo[top : top + args.size, left : left + args.size]))
    summary = []
    for quality in args.qualities:
        print(f"{codec.name}, quality {quality}: max error (levels) / PSNR (dB) / bytes")
        print(f"{'case':24s}" + "".join(f"{name:>28s}" for name in MODES))
        totals = {name: [0.0, 0] for name in MODES}
        for label, rgb in cases:
            row = f"{label:24s}"
            for name, mode in MODES.items():
                worst, psnr, size = measure(codec, rgb, quality, mode)
                totals[name][0] += psnr
                totals[name][1] += size
                row += f"{worst:>12d} {psnr:>7.2f} {size:>6d}"
            print(row, flush=True)
        summary.append((quality, totals))
    print("quality: mean PSNR (dB) / total bytes of the cases, per mode")
    for quality, totals in summary:
        means = "".join(f"  {name} {t[0] / len(cases):6.2f} dB {t[1]:6d} B" for name, t in totals.items())
        print(f"{quality:<6}{means}")

if __name__ == "__main__":
    main()

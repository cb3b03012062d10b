"""RD cost of exact (fixed-point) entropy parameters: BD-rate of the exact path against the float path.

    python benchmarks/exact_rd_cost.py --weights PATH [--model EVC-SS] [--images ../shared/data/kodak]
                                      [--count 24] [--qualities 0 0.33 0.67 1]

Codes every image at each quality twice with the same weights, once with exact and once with float32
entropy parameters (real files, container included), and prints the mean bpp and PSNR of each path, the
per-point rate difference and the BD-rate (PSNR) of exact against float. The two paths quantise the same
latent with slightly different (mu, sigma), so the difference is small and may have either sign.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

import evc
from evc.eval.bdrate import bd_rate
from evc.eval.results import RDCurve

KODAK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--images", type=Path, default=KODAK)
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--qualities", type=float, nargs="+", default=[0.0, 1 / 3, 2 / 3, 1.0])
    args = parser.parse_args()
    paths = sorted(args.images.glob("*.png"))[: args.count]
    images = [Image.open(p).convert("RGB") for p in paths]
    curves = {}
    for arithmetic in ("float", "exact"):
        codec = evc.load(args.model, device="cpu", weights=args.weights, exact=arithmetic == "exact")
        bpp, psnr = [], []
        for quality in args.qualities:
            results = [codec.encode(image, quality) for image in images]
            bpp.append(float(np.mean([r.bpp for r in results])))
            psnr.append(float(np.mean([r.psnr for r in results])))
        curves[arithmetic] = RDCurve(f"{codec.name} {arithmetic}", bpp, psnr)
    print(f"{curves['exact'].name.split()[0]}, weights {args.weights}, {len(images)} images from {args.images}")
    print(f"{'quality':>8} {'float bpp':>10} {'float dB':>9} {'exact bpp':>10} {'exact dB':>9} {'rate diff':>10}")
    for k, quality in enumerate(args.qualities):
        f, e = curves["float"], curves["exact"]
        print(f"{quality:>8.3f} {f.bpp[k]:>10.4f} {f.psnr[k]:>9.3f} {e.bpp[k]:>10.4f} {e.psnr[k]:>9.3f} "
              f"{(e.bpp[k] / f.bpp[k] - 1) * 100:>+9.3f}%")
    result = bd_rate(curves["float"], curves["exact"])
    print(f"BD-rate (PSNR) of exact vs float entropy parameters: {result.percent:+.3f}%")


if __name__ == "__main__":
    main()

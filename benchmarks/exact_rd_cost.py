"""RD cost of exact entropy parameters: BD-rate of each exact arithmetic against the float path.

    python benchmarks/exact_rd_cost.py --weights PATH [--model EVC-SS] [--images ../shared/data/kodak | validation]
                                      [--count 24] [--qualities 0 0.33 0.67 1]

Codes every image at each quality three times with the same weights: float32 entropy parameters, exact
float64 fixed point (format version 2) and exact 8-bit integer products (int8, version 3); real files,
container included. Prints the mean bpp and PSNR of each path, the per-point rate difference and the
BD-rate (PSNR) of each exact path against float, and of int8 against float64. The paths quantise the
same latent with slightly different (mu, sigma), so the differences are small and may have either sign.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

import evc
from evc.eval.bdrate import bd_rate
from evc.eval.results import RDCurve
from evc.shared_data import validation_photo_paths

KODAK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--images", default=str(KODAK), help="a folder of PNGs, or 'validation' (the split)")
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--qualities", type=float, nargs="+", default=[0.0, 1 / 3, 2 / 3, 1.0])
    args = parser.parse_args()
    if args.images == "validation":
        paths = validation_photo_paths()[: args.count]
    else:
        paths = sorted(Path(args.images).glob("*.png"))[: args.count]
    images = [Image.open(p).convert("RGB") for p in paths]
    curves = {}
    for arithmetic in ("float", "float64", "int8"):
        exact = arithmetic != "float"
        codec = evc.load(args.model, device="cpu", weights=args.weights, exact=exact,
                         arithmetic=arithmetic if exact else "int8")
        bpp, psnr = [], []
        for quality in args.qualities:
            results = [codec.encode(image, quality) for image in images]
            bpp.append(float(np.mean([r.bpp for r in results])))
            psnr.append(float(np.mean([r.psnr for r in results])))
        curves[arithmetic] = RDCurve(f"{codec.name} {arithmetic}", bpp, psnr)
    f, e, i = curves["float"], curves["float64"], curves["int8"]
    print(f"{f.name.split()[0]}, weights {args.weights}, {len(images)} images from {args.images}")
    print(f"{'quality':>8} {'float bpp':>10} {'float dB':>9} {'f64 bpp':>10} {'f64 dB':>9} {'int8 bpp':>10} "
          f"{'int8 dB':>9} {'f64/float':>10} {'int8/f64':>9}")
    for k, quality in enumerate(args.qualities):
        print(f"{quality:>8.3f} {f.bpp[k]:>10.4f} {f.psnr[k]:>9.3f} {e.bpp[k]:>10.4f} {e.psnr[k]:>9.3f} "
              f"{i.bpp[k]:>10.4f} {i.psnr[k]:>9.3f} {(e.bpp[k] / f.bpp[k] - 1) * 100:>+9.3f}% "
              f"{(i.bpp[k] / e.bpp[k] - 1) * 100:>+8.3f}%")
    for name, curve in (("float64", e), ("int8", i)):
        print(f"BD-rate (PSNR) of {name} vs float entropy parameters: {bd_rate(f, curve).percent:+.3f}%")
    print(f"BD-rate (PSNR) of int8 vs float64 (format version 3 vs 2): {bd_rate(e, i).percent:+.3f}%")

if __name__ == "__main__":
    main()

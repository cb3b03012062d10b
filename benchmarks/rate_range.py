"""What the q index buys beyond the trained anchors: bpp and PSNR of real files at q indices past the
highest-rate anchor (quality 1) and below the lowest (quality 0), for the README's rate-control notes.

    python benchmarks/rate_range.py [--weights PATH] [--images kodim01 kodim23] [--q-index 80 8 1]

For each Kodak image: quality 0's and quality 1's q index, then the extra q indices given; each line
the file's bpp (real size, header included) and the decoded image's PSNR (dB), with exact entropy
parameters as `evc encode` writes them.
"""

from __future__ import annotations

import argparse
import warnings

import evc
from evc.shared_data import KODAK_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="weights instead of the shipped EVC-SS")
    parser.add_argument("--images", nargs="+", default=["kodim01", "kodim23"])
    parser.add_argument("--q-index", type=int, nargs="+", default=[80, 8, 1],
                        help="q indices besides quality 0's and 1's (lower q index = more bits)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)  # "past the highest-rate anchor": what is measured here
    codec = evc.load("EVC-SS" if not args.weights else None, weights=args.weights, device="cpu")
    q0, q1 = codec.q_index(0.0), codec.q_index(1.0)
    print(f"{codec.name}: quality 0 = q index {q0}, quality 1 = q index {q1}")
    for name in args.images:
        for q in sorted({q0, q1, *args.q_index}, reverse=True):
            result = codec.encode(KODAK_DIR / f"{name}.png", q_index=q)
            label = " (quality 0)" if q == q0 else " (quality 1)" if q == q1 else ""
            print(f"{name} q index {q:>3}{label:13} {result.bpp:.2f} bpp  {result.psnr:.2f} dB")


if __name__ == "__main__":
    main()

"""What a tiny hostile file costs the decoder: CPU time and memory per declared pixel.

    python benchmarks/hostile_size.py [--sizes 512 1024 2048] [--model EVC-SS]

A real file of a 64x64 image (shipped weights) gets a header that declares a larger square image; its
streams stay a few bytes. The decoder runs the entropy networks and the synthesis at the declared size
before the symbols checksum (or the coder) refuses the file, so its cost grows with the declared size:
why a service decoding untrusted files should set ``Codec.max_pixels`` / ``--max-pixels``. Each size runs
in a fresh process, which reports its CPU time (user + system) and its peak resident memory; the table
gives both per padded pixel, and the largest size's figures are the ones to quote.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import time

import numpy as np


def _one(model: str, side: int) -> dict[str, float]:
    import evc
    from evc.bitstream.container import pack, parse
    from evc.errors import FormatError

    codec = evc.load(model, device="cpu")
    codec.max_pixels = max(codec.max_pixels, side * side)
    rng = np.random.default_rng(0)
    header, streams = parse(codec.compress(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), 0.5))
    hostile = pack(dataclasses.replace(header, width=side, height=side), streams)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.process_time()
    try:
        codec.decompress(hostile)
        outcome = "decoded"
    except FormatError as exc:
        outcome = f"refused: {str(exc)[:60]}"
    cpu = time.process_time() - start
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"cpu_s": cpu, "peak_growth_mib": (rss_after - rss_before) / 1024, "outcome": outcome}  # type: ignore[dict-item]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--model", default="EVC-SS")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_one(args.model, args.child)))
        return
    print(f"{args.model}, shipped weights, CPU; a 64x64 file re-labelled as N x N (streams of a few bytes)")
    print(f"{'declared':>11} | {'CPU s':>7} {'us/px':>6} | {'peak +MiB':>9} {'B/px':>6} | outcome")
    for side in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--model", args.model, "--child", str(side)],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        pixels = side * side  # multiples of 64: padding adds nothing
        print(f"{f'{side}x{side}':>11} | {r['cpu_s']:>7.2f} {1e6 * r['cpu_s'] / pixels:>6.2f} | "
              f"{r['peak_growth_mib']:>9.0f} {r['peak_growth_mib'] * 2**20 / pixels:>6.0f} | {r['outcome']}")


if __name__ == "__main__":
    main()

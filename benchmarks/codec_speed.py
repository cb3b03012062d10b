"""Encode/decode time of a Kodak image per model, entropy coding separately (CPU by default).

    python benchmarks/codec_speed.py [--models EVC-LL EVC-MM EVC-SS] [--image PATH] [--repeat 3]

Each model is timed with exact (fixed-point) entropy parameters, the default, and with float32 ones,
side by side: the difference is the time cost of files that decode on any device.

`evc bench` measures the same at 768x512 and 1920x1080 on every device; this script times one real
image. Models without shipped weights run with seeded random weights ("random"): their network time is
representative, their entropy-coding time is not, so the coder is also timed on a Kodak-sized latent
with trained-like statistics.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

from evc.eval.bench import bench_codec, benchmark_codec, coder_throughput

KODAK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak" / "kodim01.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["EVC-LL", "EVC-MM", "EVC-SS"])
    parser.add_argument("--image", type=Path, default=KODAK)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--entropy-threads-ab", action="store_true",
        help="also time each model's float path with the entropy-parameter networks on all threads (not "
             "decodable across thread counts; shows what the single-threaded default costs)",
    )
    args = parser.parse_args()
    image = Image.open(args.image).convert("RGB")
    print(f"image {args.image.name} {image.width}x{image.height}, {args.device}, {torch.get_num_threads()} torch "
          f"threads, torch {torch.__version__}, median of {args.repeat}")
    print(f"{'model':<8} {'weights':<8} {'arithmetic':<10} {'encode s':>9} {'(coding)':>9} {'decode s':>9} "
          f"{'(coding)':>9} {'bpp':>8}")
    for name in args.models:
        for arithmetic in ("exact", "float"):
            codec, weights = benchmark_codec(name, args.device, exact=arithmetic == "exact")
            r = bench_codec(codec, image, args.repeat)
            print(f"{name:<8} {weights:<8} {arithmetic:<10} {r.encode_s:>9.3f} {r.encode_coding_s:>9.3f} "
                  f"{r.decode_s:>9.3f} {r.decode_coding_s:>9.3f} {r.bpp:>8.3f}")
        if args.entropy_threads_ab:  # codec: the float one, the only one that depends on threads
            codec.execution = replace(codec.execution, deterministic_float_parameters=False)
            r = bench_codec(codec, image, args.repeat)
            codec.execution = replace(codec.execution, deterministic_float_parameters=True)
            print(f"{'  (all threads for the entropy parameters)':<44} encode {r.encode_s:.3f} s, decode {r.decode_s:.3f} s")
    enc_s, dec_s, n = coder_throughput(image.width, image.height, args.repeat)
    print(f"entropy coding of a {image.width}x{image.height} latent ({n} y symbols, synthetic trained-like "
          f"statistics): encode {enc_s * 1e3:.1f} ms ({n / enc_s / 1e6:.1f} M symbols/s), "
          f"decode {dec_s * 1e3:.1f} ms ({n / dec_s / 1e6:.1f} M symbols/s)")


if __name__ == "__main__":
    main()

"""Encode/decode time of one image per model, with entropy coding timed separately.

    python benchmarks/codec_speed.py [--models EVC-LL EVC-MM EVC-SS] [--image PATH] [--repeat 3]

Uses the shipped weights when a model has them, otherwise seeded random weights (marked "random"):
network time does not depend on the weights, but the entropy coder's does (random weights give
unrealistic symbols), so the coder is also timed on Kodak-sized synthetic symbols drawn from the
codec's own Gaussian tables, as a trained model would produce them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import evc
import evc.models.evc as evc_model
from evc.entropy.coder import decode_symbols, encode_symbols
from evc.entropy.gaussian import NUM_SCALES, scale_pmfs

KODAK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak" / "kodim01.png"


class CoderTimer:
    """Wraps the model's entropy-coder calls to add up their time."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def codec_for(name: str) -> tuple[evc.Codec, str]:
    if evc.MODELS[name].has_weights():
        return evc.load(name, device="cpu"), "trained"
    return evc.Codec(evc.create_model(name, seed=0), name, device="cpu"), "random"


def time_model(name: str, image: Image.Image, repeat: int) -> dict[str, float | str]:
    codec, weights = codec_for(name)
    timer = CoderTimer()
    evc_model.encode_symbols = timer.wrap(encode_symbols)
    evc_model.decode_symbols = timer.wrap(decode_symbols)
    try:
        codec.compress(image, 0.5)  # warm-up (tables, allocator)
        enc, enc_coding, dec, dec_coding = [], [], [], []
        for _ in range(repeat):
            timer.seconds = 0.0
            start = time.perf_counter()
            data = codec.compress(image, 0.5)
            enc.append(time.perf_counter() - start)
            enc_coding.append(timer.seconds)
            timer.seconds = 0.0
            start = time.perf_counter()
            codec.decompress(data)
            dec.append(time.perf_counter() - start)
            dec_coding.append(timer.seconds)
    finally:
        evc_model.encode_symbols, evc_model.decode_symbols = encode_symbols, decode_symbols
    best = lambda xs: float(np.median(xs))  # noqa: E731
    return {
        "model": name,
        "weights": weights,
        "encode_s": best(enc),
        "encode_coding_s": best(enc_coding),
        "decode_s": best(dec),
        "decode_coding_s": best(dec_coding),
        "bpp": len(data) * 8 / (image.width * image.height),
    }


def synthetic_coding(width: int, height: int, repeat: int) -> tuple[float, float, int]:
    """Encode/decode seconds for a latent of a width x height image with realistic statistics."""
    rng = np.random.default_rng(0)
    n = 192 * (height // 16) * (width // 16)
    # Most elements of a trained latent have small sigma; a few carry the detail.
    index = np.clip(rng.gamma(2.0, 25.0, n).astype(np.int64), 0, NUM_SCALES - 1)
    symbols = np.empty(n, dtype=np.int64)
    for k in np.unique(index):
        pmf, lowest = scale_pmfs()[k]
        chosen = index == k
        symbols[chosen] = rng.choice(len(pmf), size=int(chosen.sum()), p=pmf / pmf.sum()) + lowest
    tables = evc_model.gaussian_tables()
    enc, dec = [], []
    for _ in range(repeat + 1):
        start = time.perf_counter()
        data = encode_symbols(symbols, index, tables)
        enc.append(time.perf_counter() - start)
        start = time.perf_counter()
        decode_symbols(data, index, tables)
        dec.append(time.perf_counter() - start)
    return float(np.median(enc[1:])), float(np.median(dec[1:])), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["EVC-LL", "EVC-MM", "EVC-SS"])
    parser.add_argument("--image", type=Path, default=KODAK)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    image = Image.open(args.image).convert("RGB")
    print(f"image {args.image.name} {image.width}x{image.height}, CPU, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, median of {args.repeat}")
    print(f"{'model':<8} {'weights':<8} {'encode s':>9} {'(coding)':>9} {'decode s':>9} {'(coding)':>9} {'bpp':>8}")
    for name in args.models:
        r = time_model(name, image, args.repeat)
        print(f"{r['model']:<8} {r['weights']:<8} {r['encode_s']:>9.3f} {r['encode_coding_s']:>9.3f} "
              f"{r['decode_s']:>9.3f} {r['decode_coding_s']:>9.3f} {r['bpp']:>8.3f}")
    enc_s, dec_s, n = synthetic_coding(image.width, image.height, args.repeat)
    print(f"entropy coding of a {image.width}x{image.height} latent ({n} y symbols, synthetic trained-like "
          f"statistics): encode {enc_s * 1e3:.1f} ms ({n / enc_s / 1e6:.1f} M symbols/s), "
          f"decode {dec_s * 1e3:.1f} ms ({n / dec_s / 1e6:.1f} M symbols/s)")


if __name__ == "__main__":
    main()

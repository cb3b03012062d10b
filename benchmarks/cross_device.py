"""Cross-device decoding: files encoded on the CPU decode on CUDA and back, with the exact latent.

    python benchmarks/cross_device.py [--model EVC-SS] [--images ../shared/data/kodak] [--count 4]

For each image and both arithmetics (exact: the default; float: expected to be refused across devices),
encodes on one device and decodes on the other, and prints whether decoding succeeded, whether the
dequantised latent is bit-identical to the encoder's, and the largest pixel difference from the
encoder's reconstruction. Seeded random weights unless --weights is given. Needs a CUDA GPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import evc
from evc.errors import FormatError

KODAK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak"


def decode_with_latent(codec: evc.Codec, data: bytes) -> tuple[np.ndarray, torch.Tensor]:
    seen: list[torch.Tensor] = []
    original = codec.model.synthesise

    def recording(y_hat, q_step, divisor, run):
        seen.append(((y_hat * q_step).float() * divisor).cpu())
        return original(y_hat, q_step, divisor, run)

    codec.model.synthesise = recording
    try:
        return np.asarray(codec.decompress(data), dtype=np.int16), seen[0]
    finally:
        del codec.model.synthesise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="EVC-SS")
    parser.add_argument("--images", type=Path, default=KODAK)
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--weights")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")

    def codec(device: str, exact: bool) -> evc.Codec:
        if args.weights:
            return evc.load(args.model, device=device, weights=args.weights, exact=exact)
        return evc.Codec(evc.create_model(args.model, seed=0), args.model, device=device, exact=exact)

    print(f"{args.model}, CPU: torch {torch.__version__} {torch.backends.cpu.get_cpu_capability()}, "
          f"GPU: {torch.cuda.get_device_name()}")
    print(f"{'image':<12} {'arithmetic':<10} {'direction':<12} {'decoded':<9} {'latent exact':<13} {'max px diff':>11}")
    for path in sorted(args.images.glob("*.png"))[: args.count]:
        image = Image.open(path).convert("RGB")
        for exact in (True, False):
            devices = {"cpu": codec("cpu", exact), "cuda": codec("cuda", exact)}
            for source, target in (("cpu", "cuda"), ("cuda", "cpu")):
                result = devices[source].encode(image, 0.5)
                _, own_latent = decode_with_latent(devices[source], result.data)
                try:
                    pixels, latent = decode_with_latent(devices[target], result.data)
                except FormatError as exc:
                    print(f"{path.name:<12} {'exact' if exact else 'float':<10} {source + '->' + target:<12} "
                          f"{'refused':<9} {'-':<13} {'-':>11}   ({exc})")
                    continue
                diff = int(np.abs(pixels - np.asarray(result.reconstruction, dtype=np.int16)).max())
                print(f"{path.name:<12} {'exact' if exact else 'float':<10} {source + '->' + target:<12} {'yes':<9} "
                      f"{str(torch.equal(latent, own_latent)):<13} {diff:>11}")


if __name__ == "__main__":
    main()

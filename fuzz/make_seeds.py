"""Write the fuzzer's seed corpus: valid .evc files of several models, sizes, colours, flags, sub-stream
counts and rates, plus fuzz/corpus/seeds/manifest.json (how each was made and the digest of its
decoded pixels, which tests/test_fuzz.py checks).

Every file comes from a codec with seeded random weights (``evc.create_model(name, seed=0)``), the
same codecs the harness and the tests build, so the weights fingerprints match. If the models'
initialisation changes, the fingerprints change and every seed is refused: rerun this script.

    python fuzz/make_seeds.py
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import torch

import evc
from evc.bitstream.container import MAGIC, parse
from evc.models.evc import CodingOptions
from evc.models.variable_rate import q_index_to_scale

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evcfuzz import SEEDS, pixel_digest

# (model, height, width, colour, quality or q index, exact, substreams)
RECIPES: list[tuple[str, int, int, str, float | int, bool, int]] = [
    ("EVC-SS", 1, 1, "RGB", 0.5, True, 1),
    ("EVC-SS", 17, 3, "L", 0.0, True, 3),
    ("EVC-SS", 64, 64, "RGB", 1.0, False, 1),
    ("EVC-SS", 70, 90, "RGB", 0.5, True, 3),
    ("EVC-SS", 24, 24, "RGB", 1, True, 1),  # the smallest q index
    ("EVC-SS", 24, 24, "L", 65535, True, 1),  # the largest
    ("EVC-MS", 1, 1, "L", 0.5, False, 1),
    ("EVC-MS", 64, 64, "RGB", 0.3, True, 3),
    ("EVC-MS", 70, 90, "L", 0.8, True, 1),
    ("EVC-LL", 17, 3, "RGB", 0.5, True, 1),
    ("EVC-LL", 64, 64, "L", 0.5, False, 3),
    ("EVC-LL", 33, 65, "RGB", 1.0, True, 1),
    ("Scale-SS", 1, 1, "RGB", 0.5, True, 1),
    ("Scale-SS", 70, 90, "RGB", 0.2, False, 1),
    ("Scale-SS", 17, 3, "L", 0.9, True, 3),
]


def image(height: int, width: int, colour: str, seed: int) -> np.ndarray:
    """Smooth gradients plus noise: a latent with both near-certain and spread-out symbols."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([np.sin(xx / 6.0 + c) * np.cos(yy / 4.0 - c) for c in range(3)], axis=-1) * 90 + 128
    rgb = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    return rgb[:, :, 0] if colour == "L" else rgb


def version_1_file(codec: evc.Codec, rgb: np.ndarray, q_index: int) -> bytes:
    """A version-1 file: no flags byte, float entropy parameters, nothing skipped, one stream per step
    (what evc wrote before format 2)."""
    height, width = rgb.shape[:2]
    x = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float() / 255.0
    x = torch.nn.functional.pad(x, (0, -(-width // 64) * 64 - width, 0, -(-height // 64) * 64 - height))
    with torch.no_grad():
        y = codec.model.analyse(x)
    options = CodingOptions(exact=False, substreams=1, skip_certain=False)
    coded, _ = codec.model.compress_latent(y, q_index_to_scale(q_index), reconstruct=False, options=options)
    body = MAGIC + bytes([1]) + struct.pack(
        ">BIBHIIIB", codec.spec.model_id, codec.fingerprint, 0, q_index, width, height, coded.symbols_crc,
        len(coded.streams),
    )
    body += b"".join(struct.pack(">I", len(s)) for s in coded.streams) + b"".join(coded.streams)
    return body + struct.pack(">I", zlib.crc32(body))


def main() -> None:
    torch.set_num_threads(1)  # the manifest's pixel digests are taken at one thread
    SEEDS.mkdir(parents=True, exist_ok=True)
    for old in SEEDS.glob("*.evc"):
        old.unlink()
    codecs: dict[tuple[str, bool, int], evc.Codec] = {}
    models: dict[str, evc.EVC] = {}
    manifest: dict[str, dict] = {}
    for n, (name, height, width, colour, rate, exact, substreams) in enumerate(RECIPES):
        model = models.setdefault(name, evc.create_model(name, seed=0))
        key = (name, exact, substreams)
        codec = codecs.setdefault(key, evc.Codec(model, name, "cpu", exact=exact, substreams=substreams))
        pixels = image(height, width, colour, seed=n)
        if isinstance(rate, int):
            data = codec.compress(pixels, q_index=rate)
        else:
            data = codec.compress(pixels, quality=rate)
        arithmetic = "exact" if exact else "float"
        q_index = parse(data)[0].q_index
        file = f"{name.lower()}-{width}x{height}-{colour.lower()}-{arithmetic}-s{substreams}-q{q_index}.evc"
        manifest[file] = {"model": name, "width": width, "height": height, "colour": colour, "rate": rate,
                          "exact": exact, "substreams": substreams, "version": 2}
        (SEEDS / file).write_bytes(data)
    codec = evc.Codec(models["EVC-SS"], "EVC-SS", "cpu")
    data = version_1_file(codec, image(40, 24, "RGB", seed=99), 120)
    manifest["evc-ss-24x40-rgb-float-s1-q120-v1.evc"] = {"model": "EVC-SS", "width": 24, "height": 40, "colour": "RGB",
                                                          "rate": 120, "exact": False, "substreams": 1, "version": 1}
    (SEEDS / "evc-ss-24x40-rgb-float-s1-q120-v1.evc").write_bytes(data)
    for file, entry in manifest.items():
        data = (SEEDS / file).read_bytes()
        decoded = evc.Codec(models[entry["model"]], entry["model"], "cpu").decompress(data)
        entry["pixels_sha256"] = pixel_digest(decoded)
        entry["bytes"] = len(data)
    (SEEDS / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(entry["bytes"] for entry in manifest.values())
    print(f"{len(manifest)} seeds, {total} bytes in {SEEDS}")


if __name__ == "__main__":
    main()

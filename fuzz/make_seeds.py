"""Write the fuzzer's seed corpus: valid .evc files of several models, sizes, colours, flags, sub-stream
counts and rates, plus fuzz/corpus/seeds/manifest.json (how each was made and the digest of its
decoded pixels, which tests/test_fuzz.py checks); then rebuild the regression files that are derived
from seeds (fuzz/corpus/regressions, whose manifest stays as written by hand).

Every file comes from a codec with seeded random weights (``evc.create_model(name, seed=0)``), the
same codecs the harness and the tests build, so the weights fingerprints match. If the models'
initialisation or the codec's weights change, the fingerprints change and every seed is refused:
rerun this script. ``--out FOLDER`` writes FOLDER/seeds and FOLDER/regressions instead, e.g. to check
that this script still makes the corpus's bytes.

    python fuzz/make_seeds.py
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import torch

import evc
from evc.bitstream.container import MAGIC, parse
from evc.entropy.latent_codec import CodingOptions
from evc.models.variable_rate import q_index_to_scale

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evcfuzz import HERE, Harness, RawFile, pixel_digest

# (model, height, width, colour, quality or q index, exact, substreams, arithmetic): "float64" writes
# format version 2 (those seeds prove that version 2 files still decode), "int8" version 3.
RECIPES: list[tuple[str, int, int, str, float | int, bool, int, str]] = [
    ("EVC-SS", 1, 1, "RGB", 0.5, True, 1, "float64"),
    ("EVC-SS", 17, 3, "L", 0.0, True, 3, "float64"),
    ("EVC-SS", 64, 64, "RGB", 1.0, False, 1, "float64"),
    ("EVC-SS", 70, 90, "RGB", 0.5, True, 3, "float64"),
    ("EVC-SS", 24, 24, "RGB", 1, True, 1, "float64"),  # the smallest q index
    ("EVC-SS", 24, 24, "L", 65535, True, 1, "float64"),  # the largest
    ("EVC-MS", 1, 1, "L", 0.5, False, 1, "float64"),
    ("EVC-MS", 64, 64, "RGB", 0.3, True, 3, "float64"),
    ("EVC-MS", 70, 90, "L", 0.8, True, 1, "float64"),
    ("EVC-LL", 17, 3, "RGB", 0.5, True, 1, "float64"),
    ("EVC-LL", 64, 64, "L", 0.5, False, 3, "float64"),
    ("EVC-LL", 33, 65, "RGB", 1.0, True, 1, "float64"),
    ("Scale-SS", 1, 1, "RGB", 0.5, True, 1, "float64"),
    ("Scale-SS", 70, 90, "RGB", 0.2, False, 1, "float64"),
    ("Scale-SS", 17, 3, "L", 0.9, True, 3, "float64"),
    ("EVC-SS", 1, 1, "RGB", 0.5, True, 1, "int8"),
    ("EVC-SS", 17, 3, "L", 0.0, True, 3, "int8"),
    ("EVC-SS", 70, 90, "RGB", 0.5, True, 3, "int8"),
    ("EVC-SS", 24, 24, "RGB", 1, True, 1, "int8"),
    ("EVC-MS", 64, 64, "RGB", 0.3, True, 3, "int8"),
    ("EVC-LL", 33, 65, "RGB", 1.0, True, 1, "int8"),
    ("Scale-SS", 17, 3, "L", 0.9, True, 3, "int8"),
    ("EVC-SS", 64, 64, "RGB", 1.0, False, 1, "int8"),
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


def symbol_moved_by_2_32(harness: Harness, data: bytes, group: int, sign: int) -> bytes:
    """``data`` with the first symbol of coding group ``group`` (0: z, then the y steps) moved by
    sign * 2^32 and coded again: the int32 symbols CRC still matches (what the int32-wrap findings were)."""
    from evc.entropy.coder import encode_substreams

    groups = harness.decoded_groups(data)
    assert groups, "seed does not decode"
    chosen = groups[group]
    values = np.array(chosen["values"], dtype=np.int64)
    values[0] += sign * 2**32
    index = np.asarray(chosen["index"]).astype(np.int64).ravel()
    streams = encode_substreams(values, index, chosen["tables"], chosen["count"], skip_certain=chosen["skip_certain"])
    raw = RawFile.from_bytes(data)
    assert raw is not None
    first = sum(g["count"] for g in groups[:group])
    raw.streams[first : first + chosen["count"]] = streams
    return raw.to_bytes()


def with_size(data: bytes, width: int, height: int) -> bytes:
    raw = RawFile.from_bytes(data)
    assert raw is not None
    raw.width, raw.height = width, height
    return raw.to_bytes()


def remake_regressions(seeds: Path, regressions: Path) -> None:
    """The regression files that are seeds with a finding's change applied (see their manifest)."""
    harness = Harness().setup(seeds)
    seed = {name: (seeds / name).read_bytes() for name in (
        "evc-ss-1x1-rgb-exact-s1-q94.evc", "scale-ss-1x1-rgb-exact-s1-q94.evc", "evc-ss-64x64-rgb-float-s1-q50.evc")}
    files = {
        "int32-wrap-y-step2.evc": symbol_moved_by_2_32(harness, seed["evc-ss-1x1-rgb-exact-s1-q94.evc"], -1, 1),
        "int32-wrap-z.evc": symbol_moved_by_2_32(harness, seed["scale-ss-1x1-rgb-exact-s1-q94.evc"], 0, -1),
        "thin-134217728x1-default-limit.evc": with_size(seed["evc-ss-1x1-rgb-exact-s1-q94.evc"], 134217728, 1),
        "thin-1x16384.evc": with_size(seed["evc-ss-64x64-rgb-float-s1-q50.evc"], 1, 16384),
    }
    regressions.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (regressions / name).write_bytes(data)
    print(f"{len(files)} regression files rebuilt in {regressions}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the fuzzer's seed corpus and derived regression files.")
    parser.add_argument("--out", type=Path, default=HERE / "corpus", help="folder for seeds/ and regressions/")
    out = parser.parse_args().out
    seeds = out / "seeds"
    torch.set_num_threads(1)  # the manifest's pixel digests are taken at one thread
    seeds.mkdir(parents=True, exist_ok=True)
    for old in seeds.glob("*.evc"):
        old.unlink()
    codecs: dict[tuple[str, bool, int, str], evc.Codec] = {}
    models: dict[str, evc.EVC] = {}
    manifest: dict[str, dict] = {}
    for n, (name, height, width, colour, rate, exact, substreams, arithmetic) in enumerate(RECIPES):
        model = models.setdefault(name, evc.create_model(name, seed=0))
        key = (name, exact, substreams, arithmetic)
        if key not in codecs:
            codecs[key] = evc.Codec(model, name, "cpu", exact=exact, substreams=substreams, arithmetic=arithmetic)
        codec = codecs[key]
        pixels = image(height, width, colour, seed=n)
        if isinstance(rate, int):
            data = codec.compress(pixels, q_index=rate)
        else:
            data = codec.compress(pixels, quality=rate)
        header = parse(data)[0]
        # Version 2 names as they always were; version 3 files say so.
        kind = ("exact" if exact else "float") + ("-v3" if header.version == 3 else "")
        file = f"{name.lower()}-{width}x{height}-{colour.lower()}-{kind}-s{substreams}-q{header.q_index}.evc"
        manifest[file] = {"model": name, "width": width, "height": height, "colour": colour, "rate": rate,
                          "exact": exact, "substreams": substreams, "version": header.version}
        (seeds / file).write_bytes(data)
    codec = evc.Codec(models["EVC-SS"], "EVC-SS", "cpu")
    data = version_1_file(codec, image(40, 24, "RGB", seed=99), 120)
    manifest["evc-ss-24x40-rgb-float-s1-q120-v1.evc"] = {"model": "EVC-SS", "width": 24, "height": 40, "colour": "RGB",
                                                          "rate": 120, "exact": False, "substreams": 1, "version": 1}
    (seeds / "evc-ss-24x40-rgb-float-s1-q120-v1.evc").write_bytes(data)
    for file, entry in manifest.items():
        data = (seeds / file).read_bytes()
        decoded = evc.Codec(models[entry["model"]], entry["model"], "cpu").decompress(data)
        entry["pixels_sha256"] = pixel_digest(decoded)
        entry["bytes"] = len(data)
    (seeds / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(entry["bytes"] for entry in manifest.values())
    print(f"{len(manifest)} seeds, {total} bytes in {seeds}")
    remake_regressions(seeds, out / "regressions")


if __name__ == "__main__":
    main()

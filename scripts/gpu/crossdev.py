"""Cross-device bit-exactness with files that travel: made here on the CPU, checked on the GPU machine,
and files made there checked here.

    python scripts/gpu/crossdev.py make                      # here, once: writes scripts/gpu/crossdev/
    python scripts/gpu/crossdev.py verify --device cuda --out OUT/crossdev-gpu.json   # on the GPU machine
    python scripts/gpu/crossdev.py home OUT/crossdev-gpu.json   # here, on the files the GPU made

The files use ``--arithmetic exact`` (the default) and "portable" random weights: the registry's model
with every randomly initialised tensor refilled from numpy's PCG64 at a bound computed from the tensor's
shape, so both machines rebuild the same weights without depending on torch's random-number code
(torch 2.13 here, 2.11 there). The weights fingerprint in each file proves they match.

What is compared, as benchmarks/cross_device.py does: the dequantised latent (must be bit-identical: that
is the format's promise) and the decoded pixels (the synthesis transform runs in floating point, so
devices may differ in the last bit; the largest difference is reported). Exit status 1 when a file is
refused or a latent differs.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import io
import json
import math
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import evc
from evc.errors import EVCError

ROOT = Path(__file__).resolve().parents[2]
FOLDER = Path(__file__).resolve().parent / "crossdev"
MANIFEST = "manifest.json"
MODELS = ("EVC-SS", "EVC-LL")
SEED = 0
# Source images in crossdev/sources/ (crops of Kodak test images, small so the files stay a few kB)
# and the quality each is coded at; the odd size exercises padding.
SOURCES = {"kodim23-128x96.png": 0.5, "kodim15-75x50.png": 0.8}


def _load_cross_device():
    """benchmarks/cross_device.py's decoder that records the latent (not a package: load by path)."""
    spec = importlib.util.spec_from_file_location("cross_device", ROOT / "benchmarks" / "cross_device.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


decode_with_latent = _load_cross_device().decode_with_latent


def portable_model(name: str, seed: int = SEED) -> torch.nn.Module:
    """The registry model with its random tensors refilled from numpy (see the module docstring).

    Which tensors are random is found by comparing two torch seeds (deterministic on any version); the
    bound is PyTorch's default conv init, 1/sqrt(fan_in), from the weight's shape (a bias takes its
    weight's), so no torch-generated number reaches the result. Non-random tensors (buffers, constant
    inits) keep their values.
    """
    model = evc.create_model(name, seed=0)
    other = evc.create_model(name, seed=1).state_dict()
    state = model.state_dict()
    for index, key in enumerate(sorted(state)):
        tensor = state[key]
        if not tensor.is_floating_point() or torch.equal(tensor, other[key]):
            continue
        weight = state.get(key[: -len("bias")] + "weight") if key.endswith("bias") else tensor
        if weight is None or weight.dim() < 2:
            raise EVCError(f"{name}: no shape-derived bound for the random tensor {key}")
        bound = 1.0 / math.sqrt(weight[0].numel())
        rng = np.random.default_rng([seed, index])
        # float16 values: what weights files store, so rounding to them (as codecs may) changes nothing.
        values = rng.uniform(-bound, bound, tuple(tensor.shape)).astype(np.float16).astype(np.float32)
        tensor.copy_(torch.from_numpy(values))
    return model


def codec(name: str, device: str) -> evc.Codec:
    return evc.Codec(portable_model(name), name, device=device, exact=True)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _decode(c: evc.Codec, data: bytes) -> tuple[np.ndarray, str]:
    pixels, latent = decode_with_latent(c, data)
    return pixels.astype(np.uint8), _sha(latent.contiguous().numpy().tobytes())


def _pixels_sha(pixels: np.ndarray) -> str:
    return _sha(str(pixels.shape).encode() + np.ascontiguousarray(pixels).tobytes())


def _environment(device: str) -> dict[str, str]:
    where = torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or platform.machine()
    return {
        "device": device, "device_name": where, "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "python": platform.python_version(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def make(folder: Path) -> int:
    """Encode every source with every model here on the CPU; write the files, the CPU's reconstructions
    and the manifest (hashes of file, latent and pixels)."""
    entries, fingerprints = [], {}
    for name in MODELS:
        c = codec(name, "cpu")
        fingerprints[name] = c.fingerprint
        for source, quality in SOURCES.items():
            image = Image.open(folder / "sources" / source).convert("RGB")
            data = c.compress(image, quality)
            pixels, latent_sha = _decode(c, data)
            stem = f"{Path(source).stem}.{name}"
            (folder / f"{stem}.evc").write_bytes(data)
            Image.fromarray(pixels).save(folder / f"{stem}.cpu.png", optimize=True)
            entries.append({
                "file": f"{stem}.evc", "model": name, "source": source, "quality": quality, "bytes": len(data),
                "sha256": _sha(data), "latent_sha256": latent_sha, "pixels_sha256": _pixels_sha(pixels),
                "reconstruction": f"{stem}.cpu.png",
            })
            print(f"{stem}.evc: {len(data)} bytes")
    manifest = {"weights": f"portable random, seed {SEED}", "fingerprints": fingerprints,
                "made_on": _environment("cpu"), "files": entries}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return 0


def verify(folder: Path, device: str, out: Path | None, models: list[str] | None = None) -> int:
    """On the other machine: decode the committed files on ``device`` and compare with what the CPU
    here decoded; then encode the sources on ``device``, decode those files on this machine's CPU too,
    and write them with their hashes to ``out`` for ``home``."""
    manifest = json.loads((folder / MANIFEST).read_text())
    models = models or list(manifest["fingerprints"])
    manifest["files"] = [e for e in manifest["files"] if e["model"] in models]
    failures = 0
    codecs = {(name, dev): codec(name, dev) for name in models for dev in {device, "cpu"}}
    for name in models:
        if codecs[name, device].fingerprint != manifest["fingerprints"][name]:
            print(f"FAIL {name}: the portable weights differ here (fingerprint {codecs[name, device].fingerprint:08x}, "
                  f"files say {manifest['fingerprints'][name]:08x}); the committed files cannot be compared")
            failures += 1
    made = []
    print(f"{'file':<28} {'check':<26} {'result':<7} detail")
    for entry in manifest["files"]:
        c = codecs[entry["model"], device]
        data = (folder / entry["file"]).read_bytes()
        try:
            pixels, latent_sha = _decode(c, data)
        except EVCError as exc:
            print(f"{entry['file']:<28} {'cpu-here -> ' + device:<26} {'FAIL':<7} refused: {exc}")
            failures += 1
            continue
        expected = np.asarray(Image.open(folder / entry["reconstruction"]), dtype=np.int16)
        diff = int(np.abs(pixels.astype(np.int16) - expected).max())
        ok = latent_sha == entry["latent_sha256"]
        failures += not ok
        print(f"{entry['file']:<28} {'cpu-here -> ' + device:<26} {'ok' if ok else 'FAIL':<7} "
              f"latent {'identical' if ok else 'DIFFERS'}, max pixel diff {diff}")
        # The other direction: encode the same source here, decode on this device and this machine's CPU.
        image = Image.open(folder / "sources" / entry["source"]).convert("RGB")
        gpu_data = c.compress(image, entry["quality"])
        own_pixels, own_latent = _decode(c, gpu_data)
        cpu_pixels, cpu_latent = _decode(codecs[entry["model"], "cpu"], gpu_data)
        ok = cpu_latent == own_latent
        failures += not ok
        diff = int(np.abs(cpu_pixels.astype(np.int16) - own_pixels.astype(np.int16)).max())
        print(f"{entry['file']:<28} {device + ' -> cpu-there':<26} {'ok' if ok else 'FAIL':<7} "
              f"latent {'identical' if ok else 'DIFFERS'}, max pixel diff {diff}, "
              f"same bytes as here: {gpu_data == data}")
        made.append({**{k: entry[k] for k in ("model", "source", "quality")}, "file": entry["file"],
                     "data_base64": base64.b64encode(gpu_data).decode(), "sha256": _sha(gpu_data),
                     "latent_sha256": own_latent, "pixels_sha256": _pixels_sha(own_pixels),
                     "pixels_png_base64": _png_base64(own_pixels)})
    if out is not None:
        out.write_text(json.dumps({"made_on": _environment(device), "fingerprints": manifest["fingerprints"],
                                   "files": made}, indent=1) + "\n")
        print(f"wrote {len(made)} files made on {device} to {out}")
    print(f"crossdev: {'PASS' if failures == 0 else f'FAIL ({failures} problems)'}")
    return 1 if failures else 0


def _png_base64(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode()


def home(made_file: Path) -> int:
    """Here: decode the files the GPU machine made, on this CPU, and compare with its decoding."""
    made = json.loads(made_file.read_text())
    failures = 0
    print(f"made on {made['made_on'].get('device_name')} (torch {made['made_on'].get('torch')}), decoded here on the CPU")
    codecs = {name: codec(name, "cpu") for name in {f["model"] for f in made["files"]}}
    for name, c in codecs.items():
        if c.fingerprint != made["fingerprints"][name]:
            print(f"FAIL {name}: portable weights differ here from the file's")
            failures += 1
    for entry in made["files"]:
        data = base64.b64decode(entry["data_base64"])
        try:
            pixels, latent_sha = _decode(codecs[entry["model"]], data)
        except EVCError as exc:
            print(f"{entry['file']:<28} FAIL refused: {exc}")
            failures += 1
            continue
        theirs = np.asarray(Image.open(io.BytesIO(base64.b64decode(entry["pixels_png_base64"]))), dtype=np.int16)
        ok = latent_sha == entry["latent_sha256"]
        failures += not ok
        diff = int(np.abs(pixels.astype(np.int16) - theirs).max())
        print(f"{entry['file']:<28} {'ok' if ok else 'FAIL':<5} latent {'identical' if ok else 'DIFFERS'}, "
              f"max pixel diff {diff}")
    print(f"crossdev home: {'PASS' if failures == 0 else f'FAIL ({failures} problems)'}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make", help="encode the sources here (CPU) and write the committed files")
    p.add_argument("--folder", type=Path, default=FOLDER)
    p = sub.add_parser("verify", help="check the committed files on a device; write the device's own files")
    p.add_argument("--folder", type=Path, default=FOLDER)
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", type=Path, help="JSON file for the files made on the device")
    p.add_argument("--models", nargs="+", choices=MODELS, help="only these models (default: all)")
    p = sub.add_parser("home", help="decode files made on the GPU machine here")
    p.add_argument("made", type=Path, help="the crossdev JSON that verify wrote")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(torch.get_num_threads(), 8))
    if args.command == "make":
        return make(args.folder)
    if args.command == "verify":
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            print("crossdev: error: --device cuda but no CUDA GPU is visible", file=sys.stderr)
            return 2
        return verify(args.folder, args.device, args.out, args.models)
    if not args.made.is_file():
        print(f"crossdev: error: {args.made} not found", file=sys.stderr)
        return 2
    return home(args.made)


if __name__ == "__main__":
    raise SystemExit(main())

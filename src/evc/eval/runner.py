"""Run a codec over a folder of images: real file sizes, PSNR, MS-SSIM, encode and decode times.

Anything with ``name``, ``settings``, ``encode(rgb, setting) -> bytes`` and ``decode(bytes) -> rgb``
can be evaluated: our models (through :class:`EVCUnderTest`) and the live baselines alike, so both
are measured by the same code.
"""

from __future__ import annotations

import hashlib
import math
import platform
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from evc import arguments
from evc.codec import Codec
from evc.errors import EVCError
from evc.eval.labels import short_label
from evc.eval.metrics import MSSSIMReference, psnr
from evc.eval.progress import progress_bar
from evc.eval.results import RDCurve
from evc.image import to_input

IMAGE_SUFFIXES = {".png", ".ppm", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".webp"}


class CodecUnderTest(Protocol):
    name: str
    settings: Sequence[Any]
    setting_name: str

    def encode(self, rgb: np.ndarray, setting: Any) -> bytes: ...

    def decode(self, data: bytes) -> np.ndarray: ...

    def versions(self) -> dict[str, str]: ...


class EVCUnderTest:
    """One of our codecs, at given q indices (the anchors, or qualities evenly spread in [0, 1]).

    ``encoder_level`` (scalable models) codes every image with encoders 0..level only; the curve is then
    named "<model> level <K>". Without it a scalable model tries its levels and keeps the best file.
    """

    setting_name = "q index"

    def __init__(self, codec: Codec, q_indices: Sequence[int], weights: str, encoder_level: int | None = None) -> None:
        self.codec = codec
        levels = codec.model.num_levels
        # ValueError for a level the model does not have, before any image is coded.
        self.encoder_level = arguments.encoder_level(encoder_level, levels if levels > 1 else None, codec.name)
        self.name = codec.name if encoder_level is None else f"{codec.name} level {encoder_level}"
        self.settings = list(q_indices)
        self.weights = weights

    @classmethod
    def at_anchors(cls, codec: Codec, weights: str, between: int = 0, encoder_level: int | None = None) -> EVCUnderTest:
        """The trained anchors, plus ``between`` interpolated rates between each neighbouring pair
        (log-uniform in q_scale, as every rate between anchors is coded)."""
        anchors = sorted(codec.anchor_q_indices)
        points = set(anchors)
        for low, high in zip(anchors, anchors[1:]):
            for k in range(1, between + 1):
                points.add(round(math.exp(math.log(low) + k * (math.log(high) - math.log(low)) / (between + 1))))
        return cls(codec, sorted(points, reverse=True), weights, encoder_level)

    @classmethod
    def at_qualities(cls, codec: Codec, count: int, weights: str, encoder_level: int | None = None) -> EVCUnderTest:
        if count < 2:
            raise EVCError("--qualities needs at least 2 points")
        qualities = np.linspace(0.0, 1.0, count)
        return cls(codec, sorted({codec.q_index(float(q)) for q in qualities}, reverse=True), weights, encoder_level)

    def _sync(self) -> None:
        if self.codec.device.type == "cuda":
            torch.cuda.synchronize(self.codec.device)

    def encode(self, rgb: np.ndarray, setting: int) -> bytes:
        data = self.codec.compress(rgb, q_index=setting, encoder_level=self.encoder_level)
        self._sync()
        return data

    def decode(self, data: bytes) -> np.ndarray:
        image = self.codec.decompress(data)
        self._sync()
        return np.asarray(image.convert("RGB"))

    def versions(self) -> dict[str, str]:
        import evc

        versions = {"evc": evc.__version__, "torch": torch.__version__, "weights": self.weights, "device": str(self.codec.device)}
        # The files' entropy parameters: their sizes are reproducible only in the same arithmetic.
        options = self.codec.options
        versions["arithmetic"] = options.arithmetic if options.exact else "float"
        if self.encoder_level is not None:
            versions["encoder_level"] = str(self.encoder_level)
        return versions


def list_images(folder: str | Path) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise EVCError(f"image folder not found: {root}")
    images = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise EVCError(f"no images in {root}")
    return images


def load_rgb(path: Path) -> np.ndarray:
    """The (H, W, 3) uint8 pixels evc codes for an image file (evc.image: orientation, first frame,
    colour rules), gray images as three equal channels, so every codec is measured on the same pixels."""
    return to_input(path).rgb


def pixel_digest(rgb: np.ndarray) -> str:
    """SHA-256 (hex) of an image's size and RGB pixels: the same photo gives the same digest whatever
    its file name or format, so result files can tell whether they were measured on the same images."""
    digest = hashlib.sha256(f"{rgb.shape[0]}x{rgb.shape[1]}x{rgb.shape[2]}:".encode())
    digest.update(np.ascontiguousarray(rgb).tobytes())
    return digest.hexdigest()


def evaluate(
    codec: CodecUnderTest, images: list[Path], kind: str, progress: bool = True, warmup: bool = True
) -> RDCurve:
    """Code every image at every setting; the curve holds the means, ``per_image`` the rest.

    ``kind`` ("ours", "baseline") is recorded in the curve's meta for plots and comparisons, with the
    images' pixel digests (:func:`pixel_digest`). ``progress``: a tqdm bar on stderr when it is a
    terminal and the run lasts over a few seconds (:func:`progress_bar`).
    """
    pixels = {p.name: load_rgb(p) for p in images}
    if warmup:  # first calls pay for tables, allocators, lazy library loading
        codec.decode(codec.encode(next(iter(pixels.values())), codec.settings[0]))
    per_image: dict[str, dict[str, list[float]]] = {
        name: {"bpp": [], "psnr-rgb": [], "ms-ssim-rgb": [], "encoding_time": [], "decoding_time": []}
        for name in pixels
    }
    with progress_bar(len(codec.settings) * len(pixels), short_label(codec.name), "img", progress) as bar:
        # Image by image: the reference's half of MS-SSIM is done once for all its settings, and only
        # one image's worth of it is held.
        for name, rgb in pixels.items():
            reference = MSSSIMReference(rgb)
            row = per_image[name]
            for setting in codec.settings:
                start = time.perf_counter()
                data = codec.encode(rgb, setting)
                encode_s = time.perf_counter() - start
                start = time.perf_counter()
                decoded = codec.decode(data)
                decode_s = time.perf_counter() - start
                if decoded.shape != rgb.shape:
                    raise EVCError(f"{codec.name} decoded {name} to shape {decoded.shape}, expected {rgb.shape}")
                row["bpp"].append(len(data) * 8 / (rgb.shape[0] * rgb.shape[1]))
                row["psnr-rgb"].append(psnr(rgb, decoded))
                ms = reference.compare(decoded)
                row["ms-ssim-rgb"].append(float("nan") if ms is None else ms)
                row["encoding_time"].append(encode_s)
                row["decoding_time"].append(decode_s)
                bar.update(1)

    means: dict[str, list[float] | None] = {}
    for key in ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"):
        values = np.array([row[key] for row in per_image.values()])  # (images, settings)
        # MS-SSIM is undefined for images under 161 pixels: no mean unless every image has it.
        means[key] = None if np.isnan(values).any() else values.mean(axis=0).tolist()
    for row in per_image.values():  # keep the JSON valid: no NaN
        if np.isnan(row["ms-ssim-rgb"]).any():
            del row["ms-ssim-rgb"]
    return RDCurve(
        name=codec.name,
        bpp=means["bpp"],  # type: ignore[arg-type]
        psnr=means["psnr-rgb"],
        ms_ssim=means["ms-ssim-rgb"],
        encoding_time=means["encoding_time"],
        decoding_time=means["decoding_time"],
        description=f"{codec.name}, {len(pixels)} images, settings ({codec.setting_name}): {list(codec.settings)}",
        meta={
            "kind": kind,
            "images": len(pixels),
            "dataset": Path(images[0]).parent.name,
            "image_sha256": {name: pixel_digest(rgb) for name, rgb in pixels.items()},
            "settings": list(codec.settings),
            "setting_name": codec.setting_name,
            "versions": codec.versions(),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        },
        per_image=per_image,
    )

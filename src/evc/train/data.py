"""Training data: image files from folders or shard roots (manifest.json), as random crops.

Sample number i (0, 1, 2, ...) is a pure function of (seed, i): which image, where the crop is, the
flips and the rate anchor. Step s on rank r of w processes uses samples
[(s * w + r) * B, (s * w + r + 1) * B), so a resumed or multi-GPU run sees exactly the data it would
have seen otherwise, with no sampler state to save.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Sampler

from evc.models.variable_rate import NUM_ANCHORS
from evc.train.config import ConfigError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm"}
_KODAK_NAME = re.compile(r"^kodim\d+\.", re.IGNORECASE)
# How many other images a sample may try when its image turns out to be unreadable.
_MAX_RETRIES = 16

Warn = Callable[[str], None]


@dataclass(frozen=True)
class ImageRecord:
    path: Path
    width: int
    height: int


def _is_kodak(path: Path) -> bool:
    return bool(_KODAK_NAME.match(path.name)) or any(part.lower() == "kodak" for part in path.parts)


def _listed_files(source: Path, warn: Warn) -> list[tuple[Path, tuple[int, int] | None]]:
    """(path, known size) of every image in a source: a manifest, a folder, or one file."""
    manifest = source / "manifest.json"
    if manifest.is_file():
        try:
            entries = json.loads(manifest.read_text())
            return [(source / e["file"], (int(e["width"]), int(e["height"]))) for e in entries]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{manifest} is not a valid manifest ({exc})") from None
    if source.is_dir():
        return [(p, None) for p in sorted(source.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if source.is_file():
        return [(source, None)]
    raise ConfigError(f"training data not found: {source}")


def find_images(sources: list[str], min_size: int, warn: Warn) -> list[ImageRecord]:
    """Every usable training image; unreadable or too-small files are skipped with a warning naming them.

    Kodak is the test set: a source holding Kodak images is refused outright.
    """
    records = []
    for source in map(Path, sources):
        for path, size in _listed_files(source, warn):
            if _is_kodak(path):
                raise ConfigError(f"{path} looks like a Kodak test image; Kodak is never used for training")
            if size is None or not path.is_file():
                try:
                    with Image.open(path) as image:
                        size = image.size
                except (UnidentifiedImageError, OSError, ValueError) as exc:
                    warn(f"skipping {path}: not a readable image ({exc})")
                    continue
            width, height = size
            if min(width, height) < min_size:
                warn(f"skipping {path}: {width}x{height} is smaller than the {min_size}-pixel crop")
                continue
            records.append(ImageRecord(path, width, height))
    if not records:
        raise ConfigError(f"no usable training images in {', '.join(sources)}")
    return records


class RandomCrops(Dataset):
    """Sample i -> (uint8 crop (3, S, S), rate anchor), deterministic in (seed, i).

    With ``cache``, each image is decoded once and kept (in each loading process): on a CPU, where
    the loader shares the cores with the step, decoding a 1280-pixel JPEG per crop costs more than
    the crop's share of a small model's step.
    """

    def __init__(self, records: list[ImageRecord], crop: int, seed: int, cache: bool = False) -> None:
        self.records = records
        self.crop = crop
        self.seed = seed
        self.cache = cache
        self._decoded: dict[Path, np.ndarray] = {}
        self._unreadable: set[Path] = set()

    def __len__(self) -> int:
        return 2**62  # samples are numbered, not enumerated; the batch sampler picks them

    def _load(self, record: ImageRecord) -> np.ndarray | None:
        if record.path in self._unreadable:
            return None
        if record.path in self._decoded:
            return self._decoded[record.path]
        try:
            with Image.open(record.path) as image:
                array = np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            self._unreadable.add(record.path)
            warnings.warn(f"skipping {record.path}: cannot decode it ({exc})", stacklevel=2)
            return None
        if min(array.shape[:2]) < self.crop:
            self._unreadable.add(record.path)
            warnings.warn(f"skipping {record.path}: smaller than the {self.crop}-pixel crop", stacklevel=2)
            return None
        if self.cache:
            self._decoded[record.path] = array
        return array

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        rng = np.random.default_rng([self.seed, index])
        for _ in range(_MAX_RETRIES):
            array = self._load(self.records[int(rng.integers(len(self.records)))])
            if array is not None:
                break
        else:
            raise RuntimeError(f"{_MAX_RETRIES} unreadable training images in a row; check the data")
        height, width = array.shape[:2]
        top = int(rng.integers(height - self.crop + 1))
        left = int(rng.integers(width - self.crop + 1))
        patch = array[top : top + self.crop, left : left + self.crop]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        if rng.random() < 0.5:
            patch = patch[::-1]
        anchor = int(rng.integers(NUM_ANCHORS))
        return torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1), anchor


class StepBatches(Sampler[list[int]]):
    """Sample numbers of each step's batch for one process, from ``start_step`` on, forever."""

    def __init__(self, start_step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.start_step = start_step
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            first = (step * self.world_size + self.rank) * self.batch_size
            yield list(range(first, first + self.batch_size))
            step += 1

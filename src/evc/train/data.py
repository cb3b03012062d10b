"""Training data: image files from folders or shard roots (manifest.json), as random crops.

Sample number i (0, 1, 2, ...) is a pure function of (seed, i): which image, where the crop is, its
scale (random downscaling, when on), the flips and the rate anchor. Step s on rank r of w processes uses samples
[(s * w + r) * B, (s * w + r + 1) * B), so a resumed or multi-GPU run sees exactly the data it would
have seen otherwise, with no sampler state to save.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import warnings
from collections.abc import Callable, Collection, Iterator
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


def find_images(sources: list[str], min_size: int, warn: Warn, exclude: Collection[str] = ()) -> list[ImageRecord]:
    """Every usable training image; unreadable or too-small files are skipped with a warning naming them.

    Kodak is the test set: a source holding Kodak images is refused outright. Files whose name (the
    last path component) is in ``exclude`` are left out: the validation split (evc.shared_data).
    """
    excluded = {Path(name).name for name in exclude}
    records = []
    for source in map(Path, sources):
        for path, size in _listed_files(source, warn):
            if _is_kodak(path):
                raise ConfigError(f"{path} looks like a Kodak test image; Kodak is never used for training")
            if path.name in excluded:
                continue
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

    def __init__(
        self,
        records: list[ImageRecord],
        crop: int,
        seed: int,
        cache: bool = False,
        anchor_weights: tuple[float, ...] | None = None,
        downscale: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        self.records = records
        self.crop = crop
        self.seed = seed
        self.cache = cache
        # (probability, smallest scale): how often a crop is cut larger and scaled down to the crop,
        # by a factor drawn log-uniformly in [smallest scale, 1]. New content (finer detail per pixel)
        # out of the photos we have; (0, 1): off, and the samples are those of a run without it.
        self.downscale_p, self.downscale_min = downscale
        # None: uniform over the anchors (and the same samples as before weights existed).
        self.anchor_p = None if anchor_weights is None else np.asarray(anchor_weights) / sum(anchor_weights)
        self._decoded: dict[Path, np.ndarray] = {}
        self._unreadable: set[Path] = set()

    def __len__(self) -> int:
        return 2**62  # samples are numbered, not enumerated; the batch sampler picks them

    def fill_cache(self) -> None:
        """Decode every image now (with ``cache``: the state of a run after its first minutes, which the
        benchmarks time); unreadable ones are skipped with a warning, as in training."""
        for record in self.records:
            self._load(record)

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
        side = self.crop
        if self.downscale_p > 0 and rng.random() < self.downscale_p:
            scale = float(np.exp(rng.uniform(np.log(self.downscale_min), 0.0)))
            side = min(int(round(self.crop / scale)), height, width)
        top = int(rng.integers(height - side + 1))
        left = int(rng.integers(width - side + 1))
        patch = array[top : top + side, left : left + side]
        if side != self.crop:  # antialiased, as a camera or a photo editor would scale it
            patch = np.array(Image.fromarray(patch).resize((self.crop, self.crop), Image.Resampling.LANCZOS))
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        if rng.random() < 0.5:
            patch = patch[::-1]
        anchor = int(rng.integers(NUM_ANCHORS)) if self.anchor_p is None else int(rng.choice(NUM_ANCHORS, p=self.anchor_p))
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


def step_batches(dataset: RandomCrops, sampler: StepBatches) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(uint8 images (B, 3, S, S), anchors (B,) int64) per step, as a DataLoader with no workers collates
    them, but stacked in NumPy: no torch operator runs outside the step's thread (one would start an
    OpenMP team of its own beside the step's)."""
    for indices in sampler:
        samples = [dataset[i] for i in indices]
        images = np.empty((len(samples), *samples[0][0].shape), dtype=np.uint8)  # contiguous, like torch.stack
        for row, (image, _) in zip(images, samples):
            row[...] = image.numpy()
        yield torch.from_numpy(images), torch.tensor([anchor for _, anchor in samples], dtype=torch.int64)


class Prefetcher:
    """Items of an iterator made ``depth`` ahead in a background thread: on a CPU with ``workers=0``,
    data loading overlaps the step (whose kernels release the GIL) instead of adding to it.

    ``next()`` re-raises in the caller what the iterator raised; ``close()`` stops the thread.
    """

    _DONE = object()

    def __init__(self, items: Iterator, depth: int = 2) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(items,), name="evc-prefetch", daemon=True)
        self._thread.start()

    def _fill(self, items: Iterator) -> None:
        try:
            for item in items:
                if not self._put(item):
                    return
            self._put(self._DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self):
        if self._stop.is_set():
            raise StopIteration
        item = self._queue.get()
        if item is self._DONE:
            self._stop.set()
            raise StopIteration
        if isinstance(item, BaseException):
            self._stop.set()
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

"""Coding speed: latency and FPS of encode and decode per model and image size, with a breakdown.

Encode and decode are timed separately, after warm-up, with the device synchronised, entropy coding
included. The breakdown splits each into entropy coding (the ANS coder, timed inside the call),
image I/O (conversion between PIL images and tensors, container packing; timed on its own) and the
networks (the rest). Peak memory: CUDA allocator peak on GPU, process peak RSS on CPU.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

import evc.models.evc as evc_model
from evc.bitstream.container import pack, parse
from evc.codec import Codec
from evc.entropy.coder import decode_symbols, encode_symbols
from evc.entropy.gaussian import NUM_SCALES, scale_pmfs
from evc.image import rgb_to_pil, to_rgb_array

SIZES = ((768, 512), (1920, 1080))


@dataclass(frozen=True)
class BenchResult:
    model: str
    device: str
    width: int
    height: int
    encode_s: float
    decode_s: float
    encode_coding_s: float
    decode_coding_s: float
    io_encode_s: float
    io_decode_s: float
    peak_memory_mb: float
    bpp: float

    @property
    def encode_fps(self) -> float:
        return 1.0 / self.encode_s

    @property
    def decode_fps(self) -> float:
        return 1.0 / self.decode_s


class _CoderClock:
    def __init__(self) -> None:
        self.seconds = 0.0

    def timed(self, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return wrapper


@contextmanager
def _clocked_coder() -> Iterator[_CoderClock]:
    """Time the model's calls into the entropy coder (the names it looks up at call time)."""
    clock = _CoderClock()
    evc_model.encode_symbols = clock.timed(encode_symbols)
    evc_model.decode_symbols = clock.timed(decode_symbols)
    try:
        yield clock
    finally:
        evc_model.encode_symbols, evc_model.decode_symbols = encode_symbols, decode_symbols


def benchmark_codec(name: str, device: str | torch.device, weights: str | None = None) -> tuple[Codec, str]:
    """The codec to time and how its weights were chosen: given or shipped ("trained"), else seeded
    random ("random"; network time is representative, entropy-coding time is not)."""
    import evc

    if weights or evc.MODELS[name].has_weights():
        return evc.load(name, device=device, weights=weights), "trained"
    return Codec(evc.create_model(name, seed=0), name, device), "random"


def synthetic_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth synthetic photo-like image (gradients, edges, noise) of the given size."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([np.sin(xx / (23 + 7 * c)) * np.cos(yy / (17 + 5 * c)) for c in range(3)], axis=-1) * 90 + 128
    base[(xx // 97 + yy // 61) % 2 == 0] *= 0.8
    return Image.fromarray(np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn, repeat: int, device: torch.device) -> float:
    times = []
    for _ in range(repeat):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_codec(codec: Codec, image: Image.Image, repeat: int = 3, quality: float = 0.5) -> BenchResult:
    device = codec.device
    data = codec.compress(image, quality)  # warm-up
    codec.decompress(data)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with _clocked_coder() as clock:

        def timed(fn) -> tuple[float, float]:
            """Median of (total seconds, entropy-coding seconds) over the repeats."""
            runs = []
            for _ in range(repeat):
                clock.seconds = 0.0
                _sync(device)
                start = time.perf_counter()
                fn()
                _sync(device)
                runs.append((time.perf_counter() - start, clock.seconds))
            total, coding = np.median(np.array(runs), axis=0)
            return float(total), float(coding)

        encode_s, encode_coding_s = timed(lambda: codec.compress(image, quality))
        decode_s, decode_coding_s = timed(lambda: codec.decompress(data))
    rgb, colour = to_rgb_array(image)
    header, streams = parse(data)
    io_encode_s = _median_time(lambda: (to_rgb_array(image), pack(header, streams)), repeat, torch.device("cpu"))
    io_decode_s = _median_time(lambda: (parse(data), rgb_to_pil(rgb, colour)), repeat, torch.device("cpu"))
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return BenchResult(
        codec.name, str(device), image.width, image.height, encode_s, decode_s, encode_coding_s,
        decode_coding_s, io_encode_s, io_decode_s, peak, len(data) * 8 / (image.width * image.height),
    )


def coder_throughput(width: int = 768, height: int = 512, repeat: int = 3) -> tuple[float, float, int]:
    """ANS encode / decode seconds for a width x height latent with trained-like statistics.

    Most elements of a trained latent have a small sigma; the scale indices are drawn accordingly and
    the symbols from the codec's own tables, so the rate matches what the tables model.
    """
    rng = np.random.default_rng(0)
    n = 192 * (height // 16) * (width // 16)
    index = np.clip(rng.gamma(2.0, 25.0, n).astype(np.int64), 0, NUM_SCALES - 1)
    symbols = np.empty(n, dtype=np.int64)
    for k in np.unique(index):
        pmf, lowest = scale_pmfs()[k]
        chosen = index == k
        symbols[chosen] = rng.choice(len(pmf), size=int(chosen.sum()), p=pmf / pmf.sum()) + lowest
    tables = evc_model.gaussian_tables()
    data = encode_symbols(symbols, index, tables)
    encode_s = _median_time(lambda: encode_symbols(symbols, index, tables), repeat, torch.device("cpu"))
    decode_s = _median_time(lambda: decode_symbols(data, index, tables), repeat, torch.device("cpu"))
    return encode_s, decode_s, n

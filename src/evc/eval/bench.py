"""Coding speed: latency and FPS of encode and decode per model and image size, with a breakdown.

Encode and decode are timed separately, after warm-up, with the device synchronised, entropy coding
included. The breakdown, from separate instrumented runs, splits each into the transforms (g_a, g_s), entropy
coding (the ANS coder; on the encoder it runs on a background thread, overlapped with the networks),
image I/O (conversion between PIL images and tensors, container packing; timed on its own) and the rest
(entropy-parameter networks, rounding, transfers). Peak memory is each row's own: the CUDA allocator's
peak since the row began on GPU; on the CPU the process's peak resident memory since the row began
(Linux resets the peak, "VmHWM", through /proc/self/clear_refs; where that cannot be done, the peak since
the process started, which later rows repeat).
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from PIL import Image

from evc.bitstream.container import pack, parse
from evc.codec import Codec
from evc.entropy.coder import decode_symbols, encode_symbols
from evc.entropy.gaussian import NUM_SCALES, scale_pmfs
from evc.entropy.latent_codec import gaussian_tables
from evc.image import rgb_to_pil, to_rgb_array

SIZES = ((768, 512), (1920, 1080))
# The paper's real-time claims: the large model at 768x512, the small one at 1080p (plus MM, Scale-SS).
PAPER_CASES = (("EVC-LL", 768, 512), ("EVC-MM", 768, 512), ("EVC-SS", 1920, 1080), ("Scale-SS", 1920, 1080))


@dataclass(frozen=True)
class BenchResult:
    model: str
    device: str
    width: int
    height: int
    encode_s: float
    decode_s: float
    encode_coding_s: float  # time inside the entropy coder (on the encoder, overlapped with the networks)
    decode_coding_s: float
    io_encode_s: float
    io_decode_s: float
    peak_memory_mb: float
    bpp: float
    encode_transform_s: float = 0.0  # g_a (and g_s when the encoder reconstructs)
    decode_transform_s: float = 0.0  # g_s

    @property
    def encode_fps(self) -> float:
        return 1.0 / self.encode_s

    @property
    def decode_fps(self) -> float:
        return 1.0 / self.decode_s

    @property
    def encode_other_s(self) -> float:
        """Entropy-parameter networks, rounding, transfers: what is neither transforms, coder nor I/O
        (the coder's time is excluded only as far as it was on the critical path: not on the encoder)."""
        return max(0.0, self.encode_s - self.encode_transform_s - self.io_encode_s)

    @property
    def decode_other_s(self) -> float:
        return max(0.0, self.decode_s - self.decode_transform_s - self.decode_coding_s - self.io_decode_s)


class _Clock:
    """Seconds spent in named parts; parts may run on the coding thread too (float += is atomic enough
    under the GIL for a benchmark). The device is synchronised around the transforms, so that their
    time is theirs."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}

    @contextmanager
    def section(self, part: str) -> Iterator[None]:
        synchronise = part == "transforms"
        if synchronise:
            _sync(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if synchronise:
                _sync(self.device)
            self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - start


@contextmanager
def _instrumented(codec: Codec) -> Iterator[_Clock]:
    """Time the entropy coder and the transforms of one codec through its execution's timing hook. The
    device synchronisation changes overlap: use for the breakdown only, never for the FPS."""
    clock = _Clock(codec.device)
    previous = codec.execution
    codec.execution = replace(previous, timing=clock.section)
    try:
        yield clock
    finally:
        codec.execution = previous


def benchmark_codec(
    name: str, device: str | torch.device, weights: str | None = None, **options: Any
) -> tuple[Codec, str]:
    """The codec to time and how its weights were chosen: given or shipped ("trained"), else seeded
    random ("random"; network time is representative, entropy-coding time is not). ``options``:
    Codec's keyword options (exact, arithmetic, precision, channels_last, substreams)."""
    import evc

    if weights or evc.MODELS[name].has_weights():
        return evc.load(name, device=device, weights=weights, **options), "trained"
    return Codec(evc.create_model(name, seed=0), name, device, **options), "random"


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


class RowPeak:
    """The peak memory of one row of a benchmark, in MB: made when the row starts, read with
    :meth:`mb` when it ends. On a CUDA ``device``, the allocator's peak since then; on the CPU, the
    process's peak resident set since then (Linux), else since the process started (``own`` False)."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.own = True
            return
        try:  # "5": reset the peak resident set size to the current one (Linux 4.0 and later)
            with open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")
            # Some kernels accept the write and keep the old peak: the reset took only if the peak is
            # now the current resident set (a few pages may be touched in between).
            peak, resident = _status_kb("VmHWM"), _status_kb("VmRSS")
            self.own = peak is not None and resident is not None and peak - resident < 4096
        except OSError:
            self.own = False

    def mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        peak = _status_kb("VmHWM") if self.own else None
        if peak is None:
            scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, kB elsewhere
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale / 1024
        return peak / 1024


def _status_kb(field: str) -> int | None:
    """A kB field of /proc/self/status (Linux), or None."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def bench_codec(codec: Codec, image: Image.Image, repeat: int = 3, quality: float = 0.5) -> BenchResult:
    """Encode and decode latency (medians of ``repeat`` plain runs after warm-up), then the breakdown
    from separate instrumented runs, so the instrumentation never slows the reported FPS."""
    device = codec.device
    peak = RowPeak(device)  # this row's own, warm-up included; the model is loaded already
    data = codec.compress(image, quality)  # warm-up
    codec.decompress(data)
    encode_s = _median_time(lambda: codec.compress(image, quality), repeat, device)
    decode_s = _median_time(lambda: codec.decompress(data), repeat, device)

    def breakdown(fn) -> dict[str, float]:
        runs = []
        for _ in range(repeat):
            with _instrumented(codec) as clock:
                fn()
                _sync(device)
            runs.append(dict(clock.seconds))
        return {part: float(np.median([run.get(part, 0.0) for run in runs])) for part in ("coding", "transforms")}

    encode_parts = breakdown(lambda: codec.compress(image, quality))
    decode_parts = breakdown(lambda: codec.decompress(data))
    rgb, colour = to_rgb_array(image)
    header, streams = parse(data)
    io_encode_s = _median_time(lambda: (to_rgb_array(image), pack(header, streams)), repeat, torch.device("cpu"))
    io_decode_s = _median_time(lambda: (parse(data), rgb_to_pil(rgb, colour)), repeat, torch.device("cpu"))
    return BenchResult(
        codec.name, str(device), image.width, image.height, encode_s, decode_s, encode_parts["coding"],
        decode_parts["coding"], io_encode_s, io_decode_s, peak.mb(), len(data) * 8 / (image.width * image.height),
        encode_parts["transforms"], decode_parts["transforms"],
    )


@dataclass(frozen=True)
class SpeedRow:
    """One model, size and path of :func:`compare_paths`, with its speed-up over the plain path."""

    path: str
    weights: str
    result: BenchResult
    encode_speedup: float
    decode_speedup: float


def fast_precision_for(device: str | torch.device) -> str:
    """The fast path's transform precision: float16 on CUDA; bfloat16 on the CPU, where it measured faster."""
    return "float16" if torch.device(device).type == "cuda" else "bfloat16"


def compare_paths(
    cases: Sequence[tuple[str, int, int]],
    device: str | torch.device,
    *,
    weights: str | None = None,
    exact: bool = True,
    arithmetic: str = "int8",
    substreams: int = 1,
    fast_precision: str | None = None,
    plain_only: bool = False,
    repeat: int = 3,
) -> Iterator[SpeedRow]:
    """For each (model, width, height): the plain path (float32 transforms, contiguous) and the fast path
    (reduced-precision, channels-last transforms), timed in the same run, with the fast path's speed-up."""
    precision = fast_precision or fast_precision_for(device)
    paths = [("plain float32", dict(precision="float32", channels_last=False))]
    if not plain_only:
        paths.append((f"fast {precision} NHWC", dict(precision=precision, channels_last=True)))
    for name, width, height in cases:
        image = synthetic_image(width, height)
        plain: BenchResult | None = None
        for label, options in paths:
            codec, chosen = benchmark_codec(
                name, device, weights, exact=exact, arithmetic=arithmetic, substreams=substreams, **options
            )
            r = bench_codec(codec, image, repeat)
            plain = plain or r
            yield SpeedRow(label, chosen, r, plain.encode_s / r.encode_s, plain.decode_s / r.decode_s)


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
    tables = gaussian_tables()
    data = encode_symbols(symbols, index, tables, skip_certain=True)  # as the codec codes by default
    encode_s = _median_time(lambda: encode_symbols(symbols, index, tables, skip_certain=True), repeat, torch.device("cpu"))
    decode_s = _median_time(lambda: decode_symbols(data, index, tables, skip_certain=True), repeat, torch.device("cpu"))
    return encode_s, decode_s, n


# The table `evc bench` prints: a header, one row per SpeedRow, a note, then the coder's throughput.
SPEED_TABLE_HEADER = (
    f"{'model':<9} {'weights':<8} {'device':<6} {'path':<22} {'size':<10} {'enc ms':>7} {'enc FPS':>7} "
    f"{'(g_a/s':>7} {'coder':>6} {'other)':>7} {'dec ms':>7} {'dec FPS':>7} {'(g_s':>7} {'coder':>6} "
    f"{'other)':>7} {'peak MB':>8} {'speed-up':>11}"
)
SPEED_TABLE_NOTE = (
    "coder: on the encoder it runs on a background thread, overlapped with the networks; "
    "speed-up: encode/decode against the plain float32 path"
)


def format_speed_row(row: SpeedRow, device: str | torch.device) -> str:
    """One row of the speed table: times in ms, FPS, peak memory in MB, and the speed-ups; ``device``
    as the user named it."""
    r = row.result
    return (
        f"{r.model:<9} {row.weights:<8} {str(device):<6} {row.path:<22} {f'{r.width}x{r.height}':<10} "
        f"{r.encode_s * 1e3:>7.1f} {r.encode_fps:>7.2f} {r.encode_transform_s * 1e3:>7.1f} "
        f"{r.encode_coding_s * 1e3:>6.1f} {r.encode_other_s * 1e3:>7.1f} {r.decode_s * 1e3:>7.1f} "
        f"{r.decode_fps:>7.2f} {r.decode_transform_s * 1e3:>7.1f} {r.decode_coding_s * 1e3:>6.1f} "
        f"{r.decode_other_s * 1e3:>7.1f} {r.peak_memory_mb:>8.0f} "
        f"{f'{row.encode_speedup:.2f}/{row.decode_speedup:.2f}':>11}"
    )


def format_coder_throughput(width: int, height: int, encode_s: float, decode_s: float, symbols: int) -> str:
    """One line: the entropy coder's speed on a width x height image's latent, from :func:`coder_throughput`."""
    return (f"entropy coder, {width}x{height} latent ({symbols} symbols, trained-like statistics): "
            f"encode {symbols / encode_s / 1e6:.1f} M symbols/s, decode {symbols / decode_s / 1e6:.1f} M symbols/s")

"""What a rate target costs: one `--quality` encode, the old target search and the new one, side by side.

    python benchmarks/target_search.py [--images kodim01 kodim07 kodim23] [--size 384x256] [--bpp 0.5]
                                       [--psnr 30] [--model EVC-SS]

For each image (Kodak names, or paths; by default a centre crop of --size, "full" for the whole image,
so that the default run takes a couple of minutes on a busy 2-core machine) and target: the wall time
and the process's CPU time (every thread; steadier than wall time where other work shares the CPU),
the CPU-time ratio to one `--quality 0.5` encode (``codec.compress``, what `evc encode` runs), the real
files coded, the synthesis transforms (g_s) run, and the q index chosen. Targets: one bpp and one PSNR
target inside the trained anchors for each image (those of its quality-0.4 file, a little looser, so
that both searches answer the same question), then any given with --bpp / --psnr (where the old search
may stop at an anchor: it searched between them only).

"old": the bisection evc used before issue 39, re-implemented here over the public API: it codes both
anchors, then bisects between them with ``codec.encode(image, q_index=q)`` (a full encode each: the
analysis transform g_a, the entropy coder, g_s). The old library ran g_a once per search; the row
"old, g_a once" subtracts the repeated g_a (wall and CPU alike), timed in the same run through
``Codec.execution``'s timing hook. "new": ``codec.compress(image, target_bpp=...)`` / ``target_psnr=...``, as `evc encode` runs it;
its probes are counted from its progress lines.
Run with OMP_NUM_THREADS=1 EVC_THREADS=1 for numbers that do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

import evc
from evc.shared_data import KODAK_DIR
from evc.train.speed import cpu_model_name


class Transforms:
    """A timing hook counting the transforms (g_a, g_s) the codec runs, and the first one's wall and CPU
    time after each :meth:`call` (g_a: each encode starts with it)."""

    def __init__(self) -> None:
        self.count = 0
        self.first: list[float] = []  # wall seconds
        self.first_cpu: list[float] = []  # the process's CPU seconds meanwhile
        self._fresh = False

    def __call__(self, part: str):
        return self._timed() if part == "transforms" else _nothing()

    @contextmanager
    def _timed(self) -> Iterator[None]:
        start, cpu = time.perf_counter(), time.process_time()
        yield
        self.count += 1
        if self._fresh:
            self.first.append(time.perf_counter() - start)
            self.first_cpu.append(time.process_time() - cpu)
            self._fresh = False

    def call(self) -> None:
        """A new encode starts: its first transform is g_a."""
        self._fresh = True


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def old_search(codec: evc.Codec, image: Image.Image, kind: str, target: float, hook: Transforms) -> tuple[int, int]:
    """The pre-issue-39 search (evc.ratecontrol before it): (q index chosen, files coded)."""
    results: dict[int, evc.EncodeResult] = {}

    def encode(q: int) -> evc.EncodeResult:
        if q not in results:
            hook.call()
            results[q] = codec.encode(image, q_index=q)
        return results[q]

    q_best, q_worst = codec.q_index(1.0), codec.q_index(0.0)
    if kind == "bpp":
        ok: Callable[[evc.EncodeResult], bool] = lambda r: r.bpp <= target  # noqa: E731
        if not ok(encode(q_worst)):
            return -1, len(results)  # unreachable
        if ok(encode(q_best)):
            return q_best, len(results)
        good, bad = q_worst, q_best
    else:
        ok = lambda r: r.psnr >= target  # noqa: E731
        if not ok(encode(q_best)):
            return -1, len(results)
        if ok(encode(q_worst)):
            return q_worst, len(results)
        good, bad = q_best, q_worst
    while abs(good - bad) > 1:
        mid = (good + bad) // 2
        if ok(encode(mid)):
            good = mid
        else:
            bad = mid
    return good, len(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="EVC-SS")
    parser.add_argument("--weights", help="weights instead of the shipped ones")
    parser.add_argument("--images", nargs="+", default=["kodim01", "kodim07", "kodim23"],
                        help="Kodak names (../shared/data/kodak) or image paths")
    parser.add_argument("--size", default="384x256", help="WxH centre crop of each image, or 'full'")
    parser.add_argument("--bpp", type=float, nargs="*", default=[], help="bpp targets besides each image's own")
    parser.add_argument("--psnr", type=float, nargs="*", default=[], help="PSNR targets (dB) besides each image's own")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)  # rates past the anchors: what the q columns show
    codec = evc.load(args.model, weights=args.weights, device="cpu")
    hook = Transforms()
    codec.execution = dataclasses.replace(codec.execution, timing=hook)
    import torch

    print(f"{codec.name}, CPU: {cpu_model_name()}, {torch.get_num_threads()} thread(s), "
          f"{datetime.date.today().isoformat()}, trained anchors q {codec.q_index(1.0)}..{codec.q_index(0.0)}")
    print(f"{'image':<10} {'target':>11}  {'method':<14} {'wall s':>7} {'cpu s':>7} {'x1 enc':>7} {'files':>6} "
          f"{'g_s':>4} {'q':>5}  result")

    def row(label: str, shown: str, method: str, wall: float, cpu: float, files: int, g_s: int, q: int, note: str) -> None:
        print(f"{label:<10} {shown:>11}  {method:<14} {wall:7.2f} {cpu:7.2f} {cpu / one_cpu:7.2f} {files:6d} "
              f"{g_s:4d} {q:5d}  {note}")

    for name in args.images:
        path = Path(name) if Path(name).is_file() else KODAK_DIR / f"{name}.png"
        image = Image.open(path).convert("RGB")
        if args.size != "full":
            width, height = (int(v) for v in args.size.lower().split("x"))
            left, top = max(0, (image.width - width) // 2), max(0, (image.height - height) // 2)
            image = image.crop((left, top, left + min(width, image.width), top + min(height, image.height)))
        label = path.stem
        codec.compress(image, 0.5)  # warm-up: the int8 entropy networks, allocations
        hook.count = 0
        wall, cpu = time.perf_counter(), time.process_time()
        data = codec.compress(image, 0.5)
        one_wall, one_cpu = time.perf_counter() - wall, time.process_time() - cpu
        info = evc.file_info(data)
        row(label, "quality 0.5", "one encode", one_wall, one_cpu, 1, hook.count - 1, info.q_index,
            f"{info.bpp:.4f} bpp  ({image.width}x{image.height})")
        own = codec.encode(image, 0.4)
        targets = [("bpp", round(own.bpp * 1.002, 4)), ("psnr", round(own.psnr - 0.02, 2))]
        targets += [("bpp", t) for t in args.bpp] + [("psnr", t) for t in args.psnr]
        for kind, target in targets:
            shown = f"{target:g} {'bpp' if kind == 'bpp' else 'dB'}"
            hook.count, hook.first, hook.first_cpu = 0, [], []
            wall, cpu = time.perf_counter(), time.process_time()
            q_old, files = old_search(codec, image, kind, target, hook)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            note = "unreachable" if q_old < 0 else ""
            row(label, shown, "old", wall, cpu, files, hook.count - files, q_old, note)
            row(label, shown, "old, g_a once", wall - sum(hook.first[1:]), cpu - sum(hook.first_cpu[1:]), files,
                hook.count - files, q_old, "")
            lines: list[str] = []
            hook.count = 0
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                kwargs = {"target_bpp": target} if kind == "bpp" else {"target_psnr": target}
                data = codec.compress(image, progress=lines.append, **kwargs)
                info = evc.file_info(data)
                q_new, note = info.q_index, f"{info.bpp:.4f} bpp"
            except evc.EVCError as exc:
                q_new, note = -1, f"unreachable: {exc}"
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            probes = sum(line.startswith("searching") for line in lines)
            row(label, shown, "new", wall, cpu, probes, hook.count - 1, q_new, note)

if __name__ == "__main__":
    main()

"""What `evc eval` of a live baseline costs, and where it goes (issue 39).

    python benchmarks/eval_cost.py [--images 3] [--kodak DIR] [--baseline webp] [--repeat 2]

Runs `python -m evc eval FOLDER --baseline KEY --quiet` on the first N Kodak images (768x512, from
../shared/data/kodak beside the repository), --repeat times in fresh processes, and prints each run's
wall and CPU time (user + system of the child). Then, in this process, it splits the same work into its
parts: importing evc (torch with it), the codec's encodes and decodes, MS-SSIM (evc.eval.metrics: the
references, then one comparison per decoded file), PSNR, and for comparison pytorch-msssim's MS-SSIM of
every fourth pair (scaled to all; skipped without pytorch-msssim), with the largest difference between
the two. Set OMP_NUM_THREADS to choose the threads; on a busy machine CPU times mean more than wall.
About 30 s of CPU time with the defaults.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KODAK = REPO.parent / "shared" / "data" / "kodak"


def _env() -> dict[str, str]:
    """The children run this checkout's evc, whatever is installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


def time_command(folder: Path, baseline: str, out: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one `evc eval FOLDER --baseline KEY` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "evc", "eval", str(folder), "--baseline", baseline, "--out", str(out),
                    "--force", "--quiet"], env=_env(), check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def breakdown(images: list[Path], baseline: str) -> None:
    """The parts of the same work, timed in CPU seconds in this process."""
    clock = time.process_time
    start = clock()
    sys.path.insert(0, str(REPO / "src"))
    import evc.eval.runner  # noqa: F401  (torch comes with evc)
    imported = clock() - start

    import numpy as np

    from evc.eval.baselines import baseline_codecs
    from evc.eval.metrics import MS_SSIM_WEIGHTS, MSSSIMReference, psnr
    from evc.eval.runner import load_rgb

    codec = baseline_codecs()[baseline]
    encode = decode = references = comparisons = psnr_s = 0.0
    pairs = []
    for path in images:
        rgb = load_rgb(path)
        start = clock()
        reference = MSSSIMReference(rgb)
        references += clock() - start
        for setting in codec.settings:
            start = clock()
            data = codec.encode(rgb, setting)
            encode += clock() - start
            start = clock()
            decoded = codec.decode(data)
            decode += clock() - start
            start = clock()
            value = reference.compare(decoded)
            comparisons += clock() - start
            start = clock()
            psnr(rgb, decoded)
            psnr_s += clock() - start
            pairs.append((rgb, decoded, value))
    ms_ssim = references + comparisons
    print(f"in one process, {len(pairs)} files ({len(images)} images x {len(codec.settings)} settings), CPU s:")
    print(f"  {'import evc (torch with it)':<28}{imported:6.2f}")
    print(f"  {codec.key + ' encode':<28}{encode:6.2f}  ({encode / len(pairs) * 1e3:.0f} ms per file)")
    print(f"  {codec.key + ' decode':<28}{decode:6.2f}")
    print(f"  {'MS-SSIM':<28}{ms_ssim:6.2f}  ({references:.2f} references + {comparisons:.2f} "
          f"comparisons, {comparisons / len(pairs) * 1e3:.0f} ms each)")
    print(f"  {'PSNR':<28}{psnr_s:6.2f}")
    try:
        import pytorch_msssim
        import torch
    except ImportError:
        print("  (pytorch-msssim is not installed: no comparison)")
        return
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float64)).permute(2, 0, 1)[None] / 255.0

    sample = pairs[::4]
    theirs, worst = 0.0, 0.0
    for rgb, decoded, value in sample:
        start = clock()
        expected = float(pytorch_msssim.ms_ssim(tensor(rgb), tensor(decoded), data_range=1.0, win_size=11,
                                                weights=list(MS_SSIM_WEIGHTS)))
        theirs += clock() - start
        worst = max(worst, abs(expected - value))
    theirs *= len(pairs) / len(sample)
    print(f"  {'pytorch-msssim (scaled)':<28}{theirs:6.2f}  (x{theirs / ms_ssim:.1f} evc's, every 4th file; "
          f"largest difference {worst:.1e})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--kodak", type=Path, default=KODAK)
    parser.add_argument("--baseline", default="webp")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    images = sorted(args.kodak.glob("*.png"))[: args.images]
    if len(images) < args.images:
        sys.exit(f"need {args.images} images in {args.kodak}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for path in images:
            (folder / path.name).symlink_to(path.resolve())
        for run in range(args.repeat):
            wall, cpu = time_command(folder, args.baseline, Path(tmp) / "out")
            print(f"evc eval {args.images} images --baseline {args.baseline}, run {run + 1}: "
                  f"wall {wall:.1f} s, CPU {cpu:.1f} s")
    breakdown(images, args.baseline)


if __name__ == "__main__":
    main()

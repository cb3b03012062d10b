"""Training throughput: crops/s of the plain float32 step and of the fast step, side by side.

    python benchmarks/train_speed.py                                  # EVC-SS and EVC-LL on the CPU
    python benchmarks/train_speed.py --models EVC-SS --shapes 16x128 8x256 --steps 5
    python benchmarks/train_speed.py --device cuda --shapes 32x256    # on a GPU
    python benchmarks/train_speed.py --models EVC-SS --shapes 16x128 --compile   # + a torch.compile column

Each measurement runs in a fresh process (the allocator setting is process-wide), on real crops from
the shared training shards when present (else random pixels), through evc.train's Trainer step:
forward, backward, gradient clipping and the Adam step, after one warm-up step, device synchronised.

- plain: float32, glibc's default allocator behaviour, no channels_last;
- fast: what `evc train` does on that device (evc.train.speed): bf16 autocast of every network with
  the entropy model's arithmetic and rate terms in float32, allocations kept mapped on the CPU,
  channels_last on CUDA;
- fast + compile (with --compile): the fast step with `--compile` (torch.compile of g_a and g_s); its
  one-off compile time (the warm-up step) is printed apart.

Also the data pipeline's crops/s (JPEG decode + crop, and the in-memory cache). This machine is
shared and noisy: compare the ratio of the two columns, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SHARDS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "train"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_one(
    name: str, device: str, batch: int, crop: int, steps: int, fast: bool, compile: bool = False
) -> dict[str, float]:
    """crops/s of `steps` training steps after one warm-up step (run in its own process)."""
    from evc.train.config import TrainConfig
    from evc.train.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        data = SHARDS
        if not SHARDS.is_dir():  # random pixels as a stand-in data set
            import numpy as np
            from PIL import Image

            data = Path(tmp) / "data"
            data.mkdir()
            rng = np.random.default_rng(0)
            Image.fromarray(rng.integers(0, 256, (crop * 2, crop * 2, 3), dtype=np.uint8)).save(data / "a.png")
        config = TrainConfig(
            model=name, data=[str(data)], out=str(Path(tmp) / "run"), steps=steps + 1, batch_size=batch,
            crop=crop, workers=0, device=device, amp=fast, channels_last=fast, val_images=0, warmup_steps=0,
            compile=compile,
        )
        trainer = Trainer(config, tune_allocator=fast)  # the plain step leaves glibc's allocator as it is
        dev = trainer.procs.device
        batches = [trainer.data[i] for i in range((steps + 1) * batch)]  # decoded up front: steps only
        losses = []
        warm_start = time.perf_counter()
        for step in range(steps + 1):
            part = batches[step * batch : (step + 1) * batch]
            images = torch.stack([b[0] for b in part])
            anchors = torch.tensor([b[1] for b in part])
            if step == 1:
                _sync(dev)
                start = time.perf_counter()
                warmup_s = start - warm_start
            stats = trainer.train_step(images, anchors)
            losses.append(float(stats[0]))
        _sync(dev)
        elapsed = time.perf_counter() - start
        return {
            "crops_per_s": steps * batch / elapsed, "amp": trainer.config.amp,
            "channels_last": trainer.config.channels_last, "first_loss": losses[0], "warmup_s": warmup_s,
        }


def data_rate(crop: int, count: int, cache: bool) -> float | None:
    from evc.train.data import RandomCrops, find_images

    if not SHARDS.is_dir():
        return None
    data = RandomCrops(find_images([str(SHARDS)], crop, lambda _: None), crop, seed=0, cache=cache)
    if cache:  # the cache's steady state: every image decoded once already
        data.fill_cache()
    start = time.perf_counter()
    for i in range(count):
        data[i]
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["EVC-SS", "EVC-LL"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shapes", nargs="+", default=["8x256", "16x128"], help="BATCHxCROP")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--compile", action="store_true", help="also the fast step with torch.compile")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one measurement, JSON out
    args = parser.parse_args()
    if args.one:
        spec = json.loads(args.one)
        print(json.dumps(measure_one(**spec)))
        return

    import evc.train.trainer as trainer_module

    where = (
        torch.cuda.get_device_name(0) if args.device.startswith("cuda")
        else trainer_module.device_description(torch.device("cpu"))
    )
    print(f"training step crops/s, {where}, torch {torch.__version__}, {args.steps} timed steps after 1 warm-up")
    variants = [(False, False), (True, False)] + ([(True, True)] if args.compile else [])
    extra = f" {'+compile':>9} {'vs fast':>8}" if args.compile else ""
    print(f"{'model':<8} {'batch x crop':>12} {'plain fp32':>11} {'fast':>9} {'speed-up':>9}{extra}   fast step")
    for name in args.models:
        for shape in args.shapes:
            batch, crop = map(int, shape.split("x"))
            results = {}
            for fast, compiled in variants:
                spec = dict(name=name, device=args.device, batch=batch, crop=crop, steps=args.steps, fast=fast,
                            compile=compiled)
                done = subprocess.run(
                    [sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True
                )
                if done.returncode != 0:
                    sys.exit(f"measurement failed: {spec}\n{done.stderr[-2000:]}")
                results[fast, compiled] = json.loads(done.stdout.strip().splitlines()[-1])
            plain, fast_r = results[False, False], results[True, False]
            cells = ""
            if args.compile:
                comp = results[True, True]
                cells = f" {comp['crops_per_s']:>9.2f} {comp['crops_per_s'] / fast_r['crops_per_s']:>7.2f}x"
            what = ("bf16" if fast_r["amp"] else "float32") + (" + channels_last" if fast_r["channels_last"] else "")
            print(
                f"{name:<8} {shape:>12} {plain['crops_per_s']:>11.2f} {fast_r['crops_per_s']:>9.2f} "
                f"{fast_r['crops_per_s'] / plain['crops_per_s']:>8.2f}x{cells}   {what}, first loss "
                f"{plain['first_loss']:.2f} vs {fast_r['first_loss']:.2f}"
                + (f" vs {comp['first_loss']:.2f} (compiled; its warm-up step, compiling: {comp['warmup_s']:.0f} s,"
                   f" the fast one's {fast_r['warmup_s']:.1f} s)" if args.compile else ""),
                flush=True,
            )
    for cache in (False, True):
        rate = data_rate(256, 40, cache)
        if rate is not None:
            print(f"data (one process, 256 px crops{', in-memory cache' if cache else ', JPEG decode per crop'}): {rate:.1f} crops/s")


if __name__ == "__main__":
    main()

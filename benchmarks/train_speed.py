"""Training throughput: images/s of the variable-rate training step at 256x256, per model.

    python benchmarks/train_speed.py [--models EVC-LL EVC-MM EVC-SS] [--batch-size 4] [--steps 3]
    python benchmarks/train_speed.py --device cuda --batch-size 16      # bf16 autocast + channels_last

Times forward, backward and the Adam step on random crops (the same code as evc train), after one
warm-up step, with the device synchronised; also the data pipeline's crops/s on the shared shards.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import evc
from evc.train.data import RandomCrops, find_images
from evc.train.objective import RateDistortionLoss

SHARDS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "train"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_rate(name: str, device: torch.device, batch: int, crop: int, steps: int, amp: bool) -> float:
    model = evc.create_model(name, seed=0).to(device).train()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    objective = RateDistortionLoss(model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, crop, crop, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    anchors = torch.arange(batch, device=device) % 4

    def one_step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = objective(x, anchors)[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    one_step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    sync(device)
    return batch * steps / (time.perf_counter() - start)


def data_rate(crop: int, count: int) -> float | None:
    if not SHARDS.is_dir():
        return None
    data = RandomCrops(find_images([str(SHARDS)], crop, print), crop, seed=0)
    start = time.perf_counter()
    for i in range(count):
        data[i]
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["EVC-LL", "EVC-MM", "EVC-SS"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    amp = device.type == "cuda"
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"training step at {args.crop}x{args.crop}, batch {args.batch_size}, {where}, "
          f"{'bf16 autocast' if amp else 'float32'}, torch {torch.__version__}, {args.steps} timed steps")
    for name in args.models:
        rate = step_rate(name, device, args.batch_size, args.crop, args.steps, amp)
        print(f"{name:<8} {rate:8.2f} images/s")
    crops = data_rate(args.crop, 40)
    if crops is not None:
        print(f"data pipeline (one process, JPEG decode + crop): {crops:.1f} crops/s")


if __name__ == "__main__":
    main()

"""How large is the rate-distortion gradient on a teacher's channel masks? (issue 22, sparsity weights)

With Adam, a sparsity loss moves a mask only where its gradient is not small beside the
rate-distortion gradient on that mask. This script inserts the masks of mask decay into trained
teacher weights (all at 1, so the function is the teacher's), computes the rate-distortion loss on a
few batches of training crops (the validation split left out), and prints quantiles of |dL/dm| over
every mask, the masks to remove and the masks to keep, and, for each candidate weight of the L1 and L2
losses, the share of masks whose rate-distortion gradient it exceeds (L1's pull is the weight, L2's is
twice the weight times the mask, so at m = 1).

    python benchmarks/mask_gradient_scale.py --teacher ~/evc-runs/paper-methods/teacher/export --batches 3
"""

from __future__ import annotations

import argparse

import torch

from evc.distill.distill import DistillConfig, MaskDecayTask
from evc.distill.mask_decay import removed_channels
from evc.shared_data import TRAIN_DIR, validation_photo_paths
from evc.train.data import RandomCrops, find_images
from evc.train.objective import RateDistortionLoss

QUANTILES = (0.25, 0.5, 0.75, 0.9, 0.99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True, help="teacher weights (file or folder)")
    parser.add_argument("--student", default="EVC-SS")
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--weights", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2, 1e-1])
    args = parser.parse_args()

    task = MaskDecayTask(DistillConfig(teacher=args.teacher, student=args.student))
    masked = task.build()  # the teacher with every mask at 1, and the channels that ours keeps
    loss_fn = RateDistortionLoss(masked.teacher)
    exclude = [p.name for p in validation_photo_paths()]
    records = find_images([str(TRAIN_DIR)], args.crop, lambda message: None, exclude=exclude)
    crops = RandomCrops(records, args.crop, seed=args.seed)

    grads = []
    for b in range(args.batches):
        items = [crops[b * args.batch_size + i] for i in range(args.batch_size)]
        x = torch.stack([crop for crop, _ in items]).float() / 255
        anchor = torch.tensor([a for _, a in items])
        masked.zero_grad()
        loss, _, _ = loss_fn(x, anchor)
        loss.backward()
        grads.append(torch.cat([masked.masks[g.name.replace(".", "_")].grad.clone() for g in masked.groups]))
    g = torch.stack(grads).abs()  # (batches, masks)
    removed = torch.cat([removed_channels(group, task.kept[group.name]) for group in masked.groups])
    print(f"{task.teacher_name} -> {task.student.name}: {g.shape[1]} masks, {int(removed.sum())} to remove; "
          f"{args.batches} batches of {args.batch_size} crops of {args.crop} px")
    print("| masks | " + " | ".join(f"|g| {int(q * 100)} %" for q in QUANTILES) + " |")
    print("| --- |" + " --- |" * len(QUANTILES))
    for name, sel in (("all", slice(None)), ("to remove", removed), ("to keep", ~removed)):
        values = torch.quantile(g[:, sel].flatten(), torch.tensor(QUANTILES))
        print(f"| {name} | " + " | ".join(f"{v:.1e}" for v in values.tolist()) + " |")
    print()
    print("| weight | L1 pull > |g| | L2 pull at m = 1 > |g| |")
    print("| --- | --- | --- |")
    for weight in args.weights:
        print(f"| {weight:g} | {(g < weight).float().mean():.0%} | {(g < 2 * weight).float().mean():.0%} |")


if __name__ == "__main__":
    main()

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

from evc.distill.mask_decay import MaskedTeacher, removed_channels, select_channels
from evc.models.registry import create_model, get_spec
from evc.models.weights import MODEL_KEY, apply_state, load_state, read_metadata
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

    teacher_name = get_spec(read_metadata(args.teacher).get(MODEL_KEY) or "EVC-LL").name
    teacher = create_model(teacher_name, seed=0)
    state, _ = load_state(args.teacher)
    apply_state(teacher, state, args.teacher)
    student = get_spec(args.student)
    spec = get_spec(teacher_name)
    masked = MaskedTeacher(
        teacher,
        student.encoder if student.encoder != spec.encoder else None,
        student.decoder if student.decoder != spec.decoder else None,
    )
    kept = select_channels(masked)
    loss_fn = RateDistortionLoss(teacher)
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
        grads.append(torch.cat([masked.masks[g.name.replace(".", "_")].grad.detach().clone() for g in masked.groups]))
    g = torch.stack(grads).abs()  # (batches, masks)
    removed = torch.cat([removed_channels(group, kept[group.name]) for group in masked.groups])
    print(f"{teacher_name} -> {student.name}: {g.shape[1]} masks, {int(removed.sum())} to remove; "
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

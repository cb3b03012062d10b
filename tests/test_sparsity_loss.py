"""Sparsity losses on a toy problem: which masks reach exactly zero, and which important ones shrink."""

from __future__ import annotations

import pytest
import torch

from evc.distill import sparsity_loss


def toy_problem() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    features = torch.randn(256, 8)
    target = features @ torch.tensor([1.0, 1, 1, 1, 0.3, 0.3, 0.3, 0.3]).view(8, 1)
    return features, target


def toy_run(kind: str, steps: int = 400, weight: float = 1.0, project: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Eight masks scale eight features of a linear model; the target uses all eight.

    The task loss wants masks (1, 1, 1, 1, .3, .3, .3, .3): the last four channels are less important
    but still carry signal (as a teacher's channels do), and they are the ones to remove.
    Returns the final (applied) masks of the kept and the removed channels. ``project=False`` leaves out
    the projection below the ceiling, so that only the loss acts.
    """
    features, target = toy_problem()
    masks = torch.nn.Parameter(torch.ones(8))
    optimizer = torch.optim.Adam([masks], lr=0.02)
    for step in range(steps):
        prediction = (features * torch.relu(masks)).sum(dim=1, keepdim=True)
        task = (prediction - target).pow(2).mean()
        if kind == "ours":
            penalty = sparsity_loss.ours([masks[4:]], step, decay_steps=steps // 2)
        else:
            penalty = getattr(sparsity_loss, kind)([masks])
        optimizer.zero_grad()
        (task + weight * penalty).backward()
        optimizer.step()
        if kind == "ours" and project:
            removed = torch.tensor([False] * 4 + [True] * 4)
            sparsity_loss.project_below_ceiling(masks.data, removed, step + 1, steps // 2)
    applied = torch.relu(masks.detach())
    return applied[:4], applied[4:]


def test_ours_reaches_exact_zero_and_spares_the_kept_masks() -> None:
    kept, removed = toy_run("ours")
    assert torch.equal(removed, torch.zeros(4))  # exactly zero, not merely small
    # The kept masks end where the task alone puts them once the other four are gone (least squares).
    features, target = toy_problem()
    best = torch.linalg.lstsq(features[:, :4], target).solution.view(4)
    assert torch.allclose(kept, best, atol=0.02)


def test_l2_never_reaches_zero() -> None:
    _, removed = toy_run("l2", weight=0.05)
    assert (removed > 0).all()


def test_l1_shrinks_the_important_masks_too() -> None:
    kept, _ = toy_run("l1", weight=0.5)
    features, target = toy_problem()
    best = torch.linalg.lstsq(features[:, :4], target).solution.view(4)
    assert (kept < best - 0.1).all()


def test_decay_ceiling() -> None:
    assert sparsity_loss.decay_ceiling(0, 100) == 1.0
    assert sparsity_loss.decay_ceiling(50, 100) == pytest.approx(0.5)
    assert sparsity_loss.decay_ceiling(150, 100) == 0.0
    m = torch.tensor([0.9, 0.2], requires_grad=True)
    loss = sparsity_loss.ours([m], step=50, decay_steps=100)  # ceiling 0.5: only 0.9 is above it
    loss.backward()
    assert loss.item() == pytest.approx(0.4) and m.grad.tolist() == [1.0, 0.0]


def test_projection_holds_the_removed_masks_under_the_ceiling() -> None:
    mask = torch.tensor([1.0, 0.9, 0.8, 0.25])
    sparsity_loss.project_below_ceiling(mask, torch.tensor([False, True, True, True]), step=3, decay_steps=6)
    assert mask.tolist() == [1.0, 0.5, 0.5, 0.25]
    sparsity_loss.project_below_ceiling(mask, torch.tensor([False, True, True, True]), step=6, decay_steps=6)
    assert mask.tolist() == [1.0, 0.0, 0.0, 0.0]


# What the loss itself contributes (issue 24 item 3): the tests above end at exactly zero, which the
# projection guarantees by itself; these hold the loss's own gradients and its effect without it.


def test_ours_gradient_is_one_on_removed_masks_above_the_ceiling_and_zero_elsewhere() -> None:
    masks = torch.tensor([1.0, 0.2, 0.9, 0.7, 0.6, 0.4, -0.1, 0.8], requires_grad=True)
    loss = sparsity_loss.ours([masks[4:]], step=50, decay_steps=100)  # ceiling 0.5; masks 4..7 removed
    loss.backward()
    assert masks.grad.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0]  # kept masks: no pull at all
    assert loss.item() == pytest.approx(0.1 + 0.3)
    # A removed mask that the task pulls up (its share of the task gradient below 1) still goes down.
    assert sparsity_loss.ours([torch.tensor([0.5])], step=100, decay_steps=100).item() == pytest.approx(0.5)


def test_the_loss_alone_drives_the_removed_masks_down_without_the_projection() -> None:
    _, with_loss = toy_run("ours", project=False)
    _, without = toy_run("ours", weight=0.0, project=False)
    assert (without > 0.25).all()  # the task alone keeps them near 0.3: they carry signal
    assert (with_loss < 0.02).all()  # the hinge's constant pull beats the task's pull towards 0.3

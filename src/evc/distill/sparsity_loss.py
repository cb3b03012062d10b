"""Sparsity losses that push channel masks towards zero during mask decay.

L1 and L2, applied to every mask, are the classic choices, and both fail here:
- L1 pulls every mask towards zero at the same rate, the important ones too, so the student loses
  capacity in the channels it keeps;
- L2's pull is proportional to the mask, so it fades as a mask approaches zero and masks never get
  there: merging then cuts channels that still carry signal.

Ours [our design] touches only the channels chosen for removal, and bounds them by a ceiling that
decays from 1 to 0 over the decay phase:

    L = sum_{c removed} relu(m_c - ceiling(t)),   ceiling(t) = max(0, 1 - t / T)

and, after every optimiser step, projects the removed masks below the ceiling (a proximal step for
the constraint m_c <= ceiling(t)):
- no pull at all on the kept masks (L1's failure avoided);
- a constant-size gradient on every removed mask above the ceiling, and the projection, so the
  removed masks follow the ceiling whatever the rate-distortion gradient says, and are exactly zero
  from step T on (L2's failure avoided); masks are applied as relu(m), so zero is absorbing;
- the removal is gradual, so the rate-distortion loss has time to move the information of the removed
  channels into the kept ones (the "decay" of mask decay).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

SPARSITY_LOSSES = ("ours", "l1", "l2")


def decay_ceiling(step: int, decay_steps: int) -> float:
    """The removed masks' ceiling at ``step``: 1 at the start, 0 from ``decay_steps`` on."""
    if decay_steps <= 0:
        return 0.0
    return max(0.0, 1.0 - step / decay_steps)


def ours(removed: Iterable[torch.Tensor], step: int, decay_steps: int) -> torch.Tensor:
    """Hinge above the decaying ceiling, on the masks chosen for removal only."""
    ceiling = decay_ceiling(step, decay_steps)
    terms = [torch.relu(m - ceiling).sum() for m in removed]
    return torch.stack(terms).sum() if terms else torch.zeros(())


@torch.no_grad()
def project_below_ceiling(mask: torch.Tensor, removed: torch.Tensor, step: int, decay_steps: int) -> None:
    """Clamp the removed entries of a mask parameter to the ceiling (in place)."""
    ceiling = decay_ceiling(step, decay_steps)
    mask[removed] = mask[removed].clamp(max=ceiling)


def l1(masks: Iterable[torch.Tensor]) -> torch.Tensor:
    """sum |m| over every mask (the channels to keep are chosen by magnitude afterwards)."""
    return torch.stack([m.abs().sum() for m in masks]).sum()


def l2(masks: Iterable[torch.Tensor]) -> torch.Tensor:
    """sum m^2 over every mask (the channels to keep are chosen by magnitude afterwards)."""
    return torch.stack([m.pow(2).sum() for m in masks]).sum()

"""An exponential moving average (EMA) of the weights, kept beside a training run.

Averaging the weights over the last few hundred steps smooths the noise of small batches (Polyak
averaging). The trainer exports it next to the raw weights (``export-ema/``); which of the two a leg
ships is measured on the validation split, not assumed (leg II-1: the average 0.83 % better, docs/training.md).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """``shadow = decay * shadow + (1 - decay) * parameter`` after every optimisation step, in float32.

    Only parameters are averaged; buffers (none carry learned state in these models) are taken from
    the module as it is when the average is made into a module. ``start_step`` is the step the
    average began at (a run may turn it on when resumed), for the export's metadata.
    """

    def __init__(self, module: nn.Module, decay: float, start_step: int = 0) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.start_step = start_step
        self.shadow = {name: p.detach().float().clone() for name, p in module.named_parameters()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Move the average towards ``module``'s current parameters (call after ``optimizer.step()``)."""
        for name, p in module.named_parameters():
            self.shadow[name].lerp_(p.detach().float(), 1.0 - self.decay)

    def averaged(self, module: nn.Module) -> nn.Module:
        """A copy of ``module`` holding the averaged parameters (``module`` is left as it is)."""
        copied = copy.deepcopy(module)
        with torch.no_grad():
            for name, p in copied.named_parameters():
                p.copy_(self.shadow[name].to(p.dtype))
        return copied

    def state_dict(self) -> dict[str, object]:
        return {"decay": self.decay, "start_step": self.start_step, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore a checkpoint's average; the decay stays this run's (a resume may change it)."""
        shadow = state["shadow"]
        assert isinstance(shadow, dict)
        if set(shadow) != set(self.shadow):
            raise ValueError("the checkpoint's weight average does not match the model's parameters")
        self.shadow = {name: t.float().to(self.shadow[name].device) for name, t in shadow.items()}
        self.start_step = int(state["start_step"])  # type: ignore[arg-type]

"""The variable-rate rate-distortion objective: lambda_r * 255^2 * MSE + bpp, r = each sample's anchor."""

from __future__ import annotations

import torch
from torch import nn

from evc.models.evc import EVC, RDOutput
from evc.models.variable_rate import LAMBDAS, rd_loss_weight


class RateDistortionLoss(nn.Module):
    """Wraps a model so that forward returns (loss, mse, bpp): the unit DDP replicates.

    ``loss`` is the batch mean; ``mse`` and ``bpp`` are per sample (B,), detached, for logging by
    rate anchor. For a scalable model (one output per encoder level) the loss is the mean over levels
    and the reported mse / bpp are the last level's.
    """

    def __init__(self, model: EVC) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mse_weights", torch.tensor([rd_loss_weight(l) for l in LAMBDAS]), persistent=False)

    def forward(
        self, x: torch.Tensor, anchor: torch.Tensor, entropy_autocast: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``entropy_autocast``: the model's entropy networks follow the step's autocast
        (:meth:`evc.models.evc.EVC.rd_forward`)."""
        outputs = self.model(x, anchor, entropy_autocast).all_levels
        weights = self.mse_weights[anchor]
        losses = []
        for out in outputs:
            mse = rd_mse(out, x)
            losses.append((weights * mse + out.bpp).mean())
        return torch.stack(losses).mean(), mse.detach(), outputs[-1].bpp.detach()


def rd_mse(out: RDOutput, x: torch.Tensor) -> torch.Tensor:
    """Per-sample MSE on [0, 1] RGB, in float32."""
    return (out.x_hat.float() - x.float()).pow(2).mean(dim=(1, 2, 3))

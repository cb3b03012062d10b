"""Dual spatial prior: two coding steps, each a checkerboard half of space crossed with a channel half.

The latent's channels are split into halves y0, y1; m0 marks positions with (i + j) even, m1 the rest.
Step 1 codes y0 at m0 and y1 at m1 with (mu, sigma) from the hyperprior. Step 2 codes the other half of
every channel group with (mu, sigma) predicted from what step 1 decoded. Each step codes half of all
elements, and both spatial phases appear in each step, so step 2 always has decoded neighbours.

How a step turns the latent into y_hat is the caller's :class:`StepQuantizer` (straight-through rounding
in training, rounding and entropy coding in the encoder, entropy decoding in the decoder), so all three
share this module's control flow and stay consistent by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from evc.entropy import streams
from evc.entropy.streams import NUM_STEPS  # noqa: F401  (the layout's; re-exported)
from evc.nn.blocks import DepthConvBlock
from evc.nn.transforms import LATENT_CHANNELS


class StepQuantizer(Protocol):
    def __call__(self, step: int, mu: torch.Tensor, sigma: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Return y_hat where ``mask`` is true and zero elsewhere; ``mu`` and ``sigma`` are full-size."""
        ...


def step_one_mask(channels: int, height: int, width: int, device: torch.device | str) -> torch.Tensor:
    """Boolean (1, C, H, W): true for the elements coded in step 1 (y0 at m0, y1 at m1), on ``device``
    (the layout is :func:`evc.entropy.streams.step_one_mask`'s)."""
    return torch.from_numpy(streams.step_one_mask(channels, height, width)).to(device)


class DualSpatialPrior(nn.Module):
    def __init__(self, channels: int = LATENT_CHANNELS) -> None:
        super().__init__()
        self.channels = channels
        # Input: step-1 y_hat (zero where not yet decoded), mu, sigma, Q_step.
        self.net = nn.Sequential(
            DepthConvBlock(4 * channels, 3 * channels, entropy_variant=True),
            DepthConvBlock(3 * channels, 2 * channels, entropy_variant=True),
            DepthConvBlock(2 * channels, 2 * channels, entropy_variant=True),
        )

    def step_two_params(
        self, y_hat_step1: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, q_step: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, sigma) for the step-2 elements, full-size (only the step-2 positions are used)."""
        return self.split(self.net(self.inputs(y_hat_step1, mu, sigma, q_step)))

    # The net's input and output layouts, owned here; the exact path evaluates ``net`` itself and uses
    # these too, so a change of order cannot reach one path and miss the other.
    @staticmethod
    def inputs(y_hat_step1: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, q_step: torch.Tensor) -> torch.Tensor:
        """The net's input: the four (B, C, h, w) tensors stacked along channels, (B, 4C, h, w)."""
        return torch.cat([y_hat_step1, mu, sigma, q_step], dim=1)

    @staticmethod
    def split(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The net's (B, 2C, h, w) output as (mu, sigma), (B, C, h, w) each: it predicts (sigma, mu) per
        channel half, in the order sigma0, mu0, sigma1, mu1."""
        sigma0, mu0, sigma1, mu1 = raw.chunk(4, dim=1)
        return torch.cat([mu0, mu1], dim=1), torch.cat([sigma0, sigma1], dim=1)

    def forward(
        self,
        mu: torch.Tensor,
        sigma: torch.Tensor,
        q_step: torch.Tensor,
        quantize: StepQuantizer,
        step_two: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """Run both steps; returns the full y_hat (in units of the latent divided by Q_step).

        ``step_two`` replaces :meth:`step_two_params` (same arguments and results) when the codec
        evaluates this network another way: in exact arithmetic, or tile by tile."""
        _, c, h, w = mu.shape
        mask1 = step_one_mask(c, h, w, mu.device)
        y_hat1 = quantize(0, mu, sigma, mask1)
        mu2, sigma2 = (step_two or self.step_two_params)(y_hat1, mu, sigma, q_step)
        y_hat2 = quantize(1, mu2, sigma2, ~mask1)
        return y_hat1 + y_hat2

"""Hyperprior networks: h_a, h_s and the prior fusion that yields (Q_step, sigma, mu)."""

from __future__ import annotations

import torch
from torch import nn

from evc.nn.blocks import Composite, DepthConvBlock, SubpelConv1x1, conv3x3
from evc.nn.transforms import LATENT_CHANNELS

HYPER_CHANNELS = 192
# The quantisation step Q_step the prior fusion predicts is bounded below by this (the authors' release).
Q_STEP_MIN = 0.5


class HyperAnalysis(Composite):
    """h_a: scaled latent (192, H/16) -> hyper-latent z (192, H/64)."""

    branches = (("layers",),)

    def __init__(self, y_ch: int = LATENT_CHANNELS, z_ch: int = HYPER_CHANNELS) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            DepthConvBlock(y_ch, z_ch, entropy_variant=True),
            conv3x3(z_ch, z_ch, stride=2),
            nn.LeakyReLU(0.01),
            conv3x3(z_ch, z_ch, stride=2),
        )


class HyperSynthesis(Composite):
    """h_s: z_hat (192, H/64) -> hyper features (192, H/16)."""

    branches = (("layers",),)

    def __init__(self, y_ch: int = LATENT_CHANNELS, z_ch: int = HYPER_CHANNELS) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            DepthConvBlock(z_ch, y_ch, entropy_variant=True),
            SubpelConv1x1(y_ch, y_ch),
            DepthConvBlock(y_ch, y_ch, entropy_variant=True),
            SubpelConv1x1(y_ch, y_ch),
            DepthConvBlock(y_ch, y_ch, entropy_variant=True),
        )


class PriorFusion(Composite):
    """Hyper features -> 576 channels, split in this order into (Q_step, sigma, mu).

    Q_step is used as max(Q_step, Q_STEP_MIN); that bound is applied by the entropy model, in the
    arithmetic it evaluates this network with (float32 or exact)."""

    # forward splits the channels afterwards, which tiling may ignore (see evc.nn.blocks.describe).
    branches = (("layers",),)

    def __init__(self, y_ch: int = LATENT_CHANNELS) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            DepthConvBlock(y_ch, 2 * y_ch, entropy_variant=True),
            DepthConvBlock(2 * y_ch, 3 * y_ch, entropy_variant=True),
        )

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.split(super().forward(features))

    @staticmethod
    def split(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The network's (B, 576, h, w) output as (Q_step, sigma, mu), 192 channels each: the one place
        that knows the order (the exact path evaluates the layers itself and splits here too)."""
        q_step, sigma, mu = raw.chunk(3, dim=1)
        return q_step, sigma, mu

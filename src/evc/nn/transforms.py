"""Analysis transform g_a and synthesis transform g_s, in the sizes of CHANNEL_PLANS (L / M / S)."""

from __future__ import annotations

from torch import nn

from evc.nn.blocks import Composite, DepthConvBlock, ResidualBlockDown, ResidualBlockUp, SubpelConv1x1, conv3x3

Size = str  # a key of CHANNEL_PLANS

LATENT_CHANNELS = 192

# Channels [C1, C2, C3, C4] at H/2, H/4, H/8, H/16.
# A new size: one entry here, its name in evc.models.registry.SIZE_NAMES, then its models there.
CHANNEL_PLANS: dict[str, tuple[int, int, int, int]] = {
    "L": (192, 192, 192, LATENT_CHANNELS),
    "M": (128, 128, 192, LATENT_CHANNELS),
    "S": (64, 64, 128, LATENT_CHANNELS),
}


def _plan(size: str) -> tuple[int, int, int, int]:
    try:
        return CHANNEL_PLANS[size]
    except KeyError:
        raise ValueError(f"unknown transform size {size!r}; expected one of {sorted(CHANNEL_PLANS)}") from None


class AnalysisTransform(Composite):
    """g_a: RGB image (B, 3, H, W) -> latent (B, 192, H/16, W/16)."""

    branches = (("layers",),)

    def __init__(self, size: Size = "L") -> None:
        super().__init__()
        c1, c2, c3, c4 = _plan(size)
        self.size = size
        self.layers = nn.Sequential(
            ResidualBlockDown(3, c1),
            DepthConvBlock(c1, c1),
            ResidualBlockDown(c1, c2),
            DepthConvBlock(c2, c2),
            ResidualBlockDown(c2, c3),
            DepthConvBlock(c3, c3),
            conv3x3(c3, c4, stride=2),
        )


class SynthesisTransform(Composite):
    """g_s: latent (B, 192, H/16, W/16) -> RGB image (B, 3, H, W)."""

    branches = (("layers",),)

    def __init__(self, size: Size = "L") -> None:
        super().__init__()
        c1, c2, c3, c4 = _plan(size)
        self.size = size
        self.layers = nn.Sequential(
            DepthConvBlock(c4, c4),
            ResidualBlockUp(c4, c3),
            DepthConvBlock(c3, c3),
            ResidualBlockUp(c3, c2),
            DepthConvBlock(c2, c2),
            ResidualBlockUp(c2, c1),
            DepthConvBlock(c1, c1),
            SubpelConv1x1(c1, 3),
        )

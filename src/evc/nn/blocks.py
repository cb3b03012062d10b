"""Building blocks of EVC's transforms and entropy-model networks (DESIGN.md section 2).

Every activation is a named submodule so that mask decay can find the positions where it inserts
channel masks (after a conv, before the next nonlinearity) without re-implementing the blocks.
"""

from __future__ import annotations

import torch
from torch import nn


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride)


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1)


class SubpelConv1x1(nn.Module):
    """conv1x1 to out_ch * r^2 channels followed by PixelShuffle(r): learned upsampling."""

    def __init__(self, in_ch: int, out_ch: int, factor: int = 2) -> None:
        super().__init__()
        self.conv = conv1x1(in_ch, out_ch * factor * factor)
        self.shuffle = nn.PixelShuffle(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class ResidualBlockDown(nn.Module):
    """RBdown: conv3x3 s2 -> LReLU(0.01) -> conv3x3 -> LReLU(0.1), plus a conv1x1 s2 shortcut."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride=2)
        self.act1 = nn.LeakyReLU(0.01)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.act2 = nn.LeakyReLU(0.1)
        self.shortcut = conv1x1(in_ch, out_ch, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act2(self.conv2(self.act1(self.conv1(x))))
        return out + self.shortcut(x)


class ResidualBlockUp(nn.Module):
    """RBup: subpel conv1x1 -> LReLU(0.01) -> conv3x3 -> LReLU(0.1), plus a subpel conv1x1 shortcut."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = SubpelConv1x1(in_ch, out_ch)
        self.act1 = nn.LeakyReLU(0.01)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.act2 = nn.LeakyReLU(0.1)
        self.shortcut = SubpelConv1x1(in_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act2(self.conv2(self.act1(self.conv1(x))))
        return out + self.shortcut(x)


def _act_or_identity(slope: float | None) -> nn.Module:
    return nn.LeakyReLU(slope) if slope is not None else nn.Identity()


class DepthConv(nn.Module):
    """conv1x1 -> LReLU(0.01) -> depthwise 3x3 [-> act] -> conv1x1 [-> act], plus identity or 1x1 adaptor.

    The transforms use LReLU(0.01) at the bracketed places; the entropy-model networks use none there
    (``inner_activations=False``).
    """

    def __init__(self, in_ch: int, out_ch: int, inner_activations: bool = True) -> None:
        super().__init__()
        slope = 0.01 if inner_activations else None
        self.conv1 = conv1x1(in_ch, in_ch)
        self.act1 = nn.LeakyReLU(0.01)
        self.depth_conv = nn.Conv2d(in_ch, in_ch, kernel_size=3, padding=1, groups=in_ch)
        self.act2 = _act_or_identity(slope)
        self.conv2 = conv1x1(in_ch, out_ch)
        self.act3 = _act_or_identity(slope)
        self.adaptor = conv1x1(in_ch, out_ch) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.adaptor is None else self.adaptor(x)
        out = self.act2(self.depth_conv(self.act1(self.conv1(x))))
        return self.act3(self.conv2(out)) + identity


class ConvFFN(nn.Module):
    """conv1x1 C->hidden -> act -> conv1x1 hidden->C -> act, plus identity."""

    def __init__(self, ch: int, hidden: int, activation: nn.Module) -> None:
        super().__init__()
        self.expand = conv1x1(ch, hidden)
        self.act1 = activation
        self.project = conv1x1(hidden, ch)
        self.act2 = type(activation)(**_activation_kwargs(activation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act2(self.project(self.act1(self.expand(x))))


def _activation_kwargs(act: nn.Module) -> dict:
    if isinstance(act, nn.LeakyReLU):
        return {"negative_slope": act.negative_slope}
    return {}


class DepthConvBlock(nn.Module):
    """DCB: DepthConv followed by ConvFFN.

    ``entropy_variant=False`` (the transforms): FFN hidden 4C with ReLU, activations inside DepthConv.
    ``entropy_variant=True`` (hyperprior, prior fusion, spatial prior): FFN hidden max(min(4C, 1024), 2C)
    with LReLU(0.1), no activation after the depthwise and last conv of DepthConv.
    """

    def __init__(self, in_ch: int, out_ch: int, entropy_variant: bool = False) -> None:
        super().__init__()
        self.depth = DepthConv(in_ch, out_ch, inner_activations=not entropy_variant)
        if entropy_variant:
            hidden = max(min(4 * out_ch, 1024), 2 * out_ch)
            self.ffn = ConvFFN(out_ch, hidden, nn.LeakyReLU(0.1))
        else:
            self.ffn = ConvFFN(out_ch, 4 * out_ch, nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.depth(x))

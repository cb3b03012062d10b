"""Building blocks of EVC's transforms and entropy-model networks (the paper's figures and the authors' release).

Every activation is a named submodule so that mask decay can find the positions where it inserts
channel masks (after a conv, before the next nonlinearity) without re-implementing the blocks.

Each block states its wiring once, in ``branches`` (see :class:`Composite`): its forward runs that
description, and tiling (:mod:`evc.nn.tiling`), exact arithmetic (:mod:`evc.nn.exact`) and mask decay
walk the same description through :func:`describe`, so none of them can disagree with forward. Beside
it, ``mask_points`` names the submodules after which mask decay puts its channel masks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import nn

# One chain of a composite: the attribute names of its submodules, applied in order.
Chain = tuple[str, ...]
# A chain resolved to (attribute name, submodule) pairs.
ResolvedChain = list[tuple[str, nn.Module]]
# Mask decay's masks in a block (:mod:`evc.distill.mask_decay`): group name -> the attribute of a chain
# whose output the group's mask multiplies, or OUTPUT for the block's output. STREAM is the residual
# stream the block writes: masked at OUTPUT when the block starts a new stream, else (one branch passes
# its input on) where its other branch writes the sum. The names key saved masks: never rename one.
MaskPoints = Mapping[str, str]
OUTPUT = ""
STREAM = "stream"
# Per pixel, per channel and positively homogeneous: nothing spatial for tiling, and a non-negative
# channel mask commutes with them, so mask decay may move a mask across them.
POINTWISE: tuple[type[nn.Module], ...] = (nn.LeakyReLU, nn.ReLU, nn.Identity)


class Composite(nn.Module):
    """A block whose output is the sum of parallel chains of its submodules, declared in ``branches``.

    ``branches`` lists each chain as the attribute names of its submodules, applied in order; an empty
    chain is the identity, and an attribute that is ``None`` (an optional module) is skipped. The
    chains' outputs are summed in the declared order (``out_0 + out_1 + ...``); a single chain is
    returned as it is. A subclass that overrides ``forward`` must declare its own ``branches`` next to
    it, and then only tiling (which needs the spatial structure alone) follows it; see :func:`describe`.

    ``mask_points`` (see :data:`MaskPoints`) must name attributes of ``branches`` and include STREAM;
    a subclass that breaks this raises TypeError when it is defined. None (the default): mask decay
    opens the block as a sequence of stages (a transform, :class:`DepthConvBlock`).
    """

    branches: ClassVar[tuple[Chain, ...]] = ()
    mask_points: ClassVar[MaskPoints | None] = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # Checked here, not when mask decay runs: a subclass that rewires inherited points fails at once.
        if cls.mask_points is None:
            return
        if STREAM not in cls.mask_points:
            raise TypeError(f"{cls.__name__}.mask_points has no {STREAM!r} point: where its output is masked")
        named = {attr for chain in cls.branches for attr in chain}
        for group, attr in cls.mask_points.items():
            if attr != OUTPUT and attr not in named:
                raise TypeError(
                    f"{cls.__name__} masks {group!r} after {attr!r}, which is in none of its branches {cls.branches}"
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total: torch.Tensor | None = None
        for chain in self.branches:
            out = x
            for attr in chain:
                module = getattr(self, attr)
                if module is not None:
                    out = module(out)
            total = out if total is None else total + out
        if total is None:
            raise TypeError(f"{type(self).__name__} declares no branches")
        return total


def _owner(cls: type, attr: str) -> type:
    return next(c for c in cls.__mro__ if attr in vars(c))


def describe(module: nn.Module, *, strict: bool = True) -> list[ResolvedChain] | None:
    """The branches of ``module`` as chains of (attribute name, submodule); None for anything else.

    ``nn.Sequential`` (exactly that type) is one chain of its children. A :class:`Composite` is
    described by its ``branches`` when its forward is :meth:`Composite.forward`, which runs exactly that
    description. With ``strict=False`` a class may also override forward in the same class that declares
    its ``branches`` (e.g. :class:`~evc.nn.hyperprior.PriorFusion`, whose forward only splits channels
    afterwards). Any other subclass that overrides forward is not described (None): what it computes is
    unknown, and a guessed structure would silently mislead tiling, exact arithmetic or mask decay.
    """
    if type(module) is nn.Sequential:
        return [list(module.named_children())]
    if not isinstance(module, Composite) or not module.branches or "forward" in vars(module):
        return None
    cls = type(module)
    forward_owner = _owner(cls, "forward")
    if forward_owner is not Composite and (strict or forward_owner is not _owner(cls, "branches")):
        return None
    chains = []
    for chain in module.branches:
        resolved = [(attr, getattr(module, attr)) for attr in chain]
        chains.append([(attr, child) for attr, child in resolved if child is not None])
    return chains


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride)


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1)


class SubpelConv1x1(Composite):
    """conv1x1 to out_ch * r^2 channels followed by PixelShuffle(r): learned upsampling."""

    branches = (("conv", "shuffle"),)
    mask_points = {STREAM: OUTPUT}  # one stage for mask decay (g_s's last layer), not two

    def __init__(self, in_ch: int, out_ch: int, factor: int = 2) -> None:
        super().__init__()
        self.conv = conv1x1(in_ch, out_ch * factor * factor)
        self.shuffle = nn.PixelShuffle(factor)


class ResidualBlockDown(Composite):
    """RBdown: conv3x3 s2 -> LReLU(0.01) -> conv3x3 -> LReLU(0.1), plus a conv1x1 s2 shortcut."""

    branches = (("conv1", "act1", "conv2", "act2"), ("shortcut",))
    mask_points = {"rb_hidden": "conv1", STREAM: OUTPUT}

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride=2)
        self.act1 = nn.LeakyReLU(0.01)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.act2 = nn.LeakyReLU(0.1)
        self.shortcut = conv1x1(in_ch, out_ch, stride=2)


class ResidualBlockUp(Composite):
    """RBup: subpel conv1x1 -> LReLU(0.01) -> conv3x3 -> LReLU(0.1), plus a subpel conv1x1 shortcut."""

    branches = (("conv1", "act1", "conv2", "act2"), ("shortcut",))
    mask_points = {"rb_hidden": "conv1", STREAM: OUTPUT}

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = SubpelConv1x1(in_ch, out_ch)
        self.act1 = nn.LeakyReLU(0.01)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.act2 = nn.LeakyReLU(0.1)
        self.shortcut = SubpelConv1x1(in_ch, out_ch)


def _act_or_identity(slope: float | None) -> nn.Module:
    return nn.LeakyReLU(slope) if slope is not None else nn.Identity()


class DepthConv(Composite):
    """conv1x1 -> LReLU(0.01) -> depthwise 3x3 [-> act] -> conv1x1 [-> act], plus identity or 1x1 adaptor.

    The transforms use LReLU(0.01) at the bracketed places; the entropy-model networks use none there
    (``inner_activations=False``).
    """

    branches = (("conv1", "act1", "depth_conv", "act2", "conv2", "act3"), ("adaptor",))  # no adaptor: x
    mask_points = {"dw": "depth_conv", STREAM: "conv2"}  # needs no adaptor: the input passes on (in = out)

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


class ConvFFN(Composite):
    """conv1x1 C->hidden -> act -> conv1x1 hidden->C -> act, plus identity."""

    branches = ((), ("expand", "act1", "project", "act2"))  # x + ...
    mask_points = {"hidden": "expand", STREAM: "project"}

    def __init__(self, ch: int, hidden: int, activation: nn.Module) -> None:
        super().__init__()
        self.expand = conv1x1(ch, hidden)
        self.act1 = activation
        self.project = conv1x1(hidden, ch)
        self.act2 = type(activation)(**_activation_kwargs(activation))


def _activation_kwargs(act: nn.Module) -> dict:
    if isinstance(act, nn.LeakyReLU):
        return {"negative_slope": act.negative_slope}
    return {}


class DepthConvBlock(Composite):
    """DCB: DepthConv followed by ConvFFN.

    ``entropy_variant=False`` (the transforms): FFN hidden 4C with ReLU, activations inside DepthConv.
    ``entropy_variant=True`` (hyperprior, prior fusion, spatial prior): FFN hidden max(min(4C, 1024), 2C)
    with LReLU(0.1), no activation after the depthwise and last conv of DepthConv.
    """

    branches = (("depth", "ffn"),)

    def __init__(self, in_ch: int, out_ch: int, entropy_variant: bool = False) -> None:
        super().__init__()
        self.depth = DepthConv(in_ch, out_ch, inner_activations=not entropy_variant)
        if entropy_variant:
            hidden = max(min(4 * out_ch, 1024), 2 * out_ch)
            self.ffn = ConvFFN(out_ch, hidden, nn.LeakyReLU(0.1))
        else:
            self.ffn = ConvFFN(out_ch, 4 * out_ch, nn.ReLU())

"""When the codec runs a network in tiles, and how: one policy for the transforms and the entropy model.

A network runs whole while its input covers at most ``untiled_max_pixels`` image pixels, and otherwise
in tiles of ``tile_pixels`` image pixels plus a receptive-field halo (:mod:`evc.nn.tiling`), which bounds
memory at any image size. The decision depends on the image size alone, so an encoder and a decoder
with the same policy run identical pieces.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import torch
from torch import nn

# The policy and the windows live without torch (the ONNX Runtime codec tiles by them too); re-exported.
from evc.nn.tile_grid import TilePolicy, is_tiled
from evc.nn.tiling import halo_for, run_tiled, scale_factor


class TiledNetwork:
    """One fully convolutional network as the codec runs it under a :class:`TilePolicy`.

    ``input_pixel``: image pixels per input pixel along an axis (1 for g_a, 16 for g_s, h_a and the
    spatial prior, 64 for h_s). Its scale and halo are computed from the network once, on first use.
    """

    def __init__(self, network: nn.Module, input_pixel: int) -> None:
        self.network = network
        self.input_pixel = input_pixel
        self._plan: tuple[Fraction, int, int] | None = None

    def plan(self) -> tuple[Fraction, int, int]:
        """(scale, align, halo): output/input size, tile granularity and halo in input pixels."""
        if self._plan is None:
            scale = scale_factor(self.network)
            # Tiles must start on the coarsest grid a strided network visits (1/scale input pixels).
            align = int(1 / scale) if scale < 1 else 1
            self._plan = (scale, align, halo_for(self.network, align))
        return self._plan

    def is_tiled(self, x: torch.Tensor, policy: TilePolicy) -> bool:
        return is_tiled(x.shape[-2], x.shape[-1], self.input_pixel, policy)

    def run(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, policy: TilePolicy) -> torch.Tensor:
        """``fn(x)``, where ``fn`` computes this network (in any precision or arithmetic), in tiles when
        ``x`` is large: the result equals ``fn(x)`` up to float summation order."""
        if not self.is_tiled(x, policy):
            return fn(x)
        scale, align, halo = self.plan()
        return run_tiled(fn, x, scale=scale, tile=policy.tile_pixels // self.input_pixel, halo=halo, align=align)

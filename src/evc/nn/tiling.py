"""Tiled execution of the fully convolutional networks, for images larger than memory allows at once.

Every network of the codec (g_a, g_s, h_a, h_s, prior fusion, the dual prior's net) is fully convolutional:
an output pixel depends only on input pixels within a bounded distance, its *receptive radius*. So a
large input can be cut into tiles, each tile extended by a *halo* of at least that radius on every
side, the network run on the extended tile, and the output cropped back to the tile's own region.
Where the halo covers the receptive field, every kept output pixel sees exactly the inputs it sees
in the whole image, including the zero padding at the image border (tiles are clipped there, so the
network pads them itself). The tiled result therefore equals the untiled one mathematically; only
the order of float summation may differ. Peak memory is set by the tile plus halo, not the image.

The radius is computed analytically by walking the module tree (:func:`receptive_radius`) rather than
measured, so it is exact and free. It is tracked per axis as a (left, right) reach in input pixels,
walking backward from the output: a region of output pixels with edges e0..e1 depends on inputs
e0 - left .. e1 + right. Going back through a conv (kernel k, stride s, dilation d, padding p) adds
p resp. d(k-1) - p - s + 1 pixels of the conv's input; going back through a PixelShuffle rounds the
edges outward to whole pixels of the coarser grid. That rounding is why the walk runs backward and
in exact fractions: a reach is not additive across an upsampling (g_s's continuous sum is 2.75 latent
pixels; an output tile really needs 3). Parallel branches (the residual blocks' shortcuts) take the
union, i.e. the larger reach on each side. The branches are the blocks' own description
(:func:`evc.nn.blocks.describe`), the one their forward runs.

All of this assumes tile edges lie on every pixel grid the network visits: for g_a, whose deepest
level has a pixel of 16 input pixels, tiles and halos must be multiples of 16 (:func:`alignment`).
Then every tile's strided convolutions sample the same positions as on the whole image.

Bounded memory also needs the caller to run without autograd (``torch.no_grad()``): otherwise every
tile's activations are kept for the backward pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import torch
from torch import nn

from evc.nn.blocks import POINTWISE, describe
from evc.nn.tile_grid import tile_windows

__all__ = ["alignment", "halo_for", "receptive_radius", "run_tiled", "scale_factor"]


def _unsupported(module: nn.Module) -> ValueError:
    return ValueError(
        f"cannot analyse the receptive field of {type(module).__name__}: supported are Conv2d, PixelShuffle, "
        "PixelUnshuffle, LeakyReLU, ReLU, Identity, nn.Sequential and blocks that describe their branches "
        "(evc.nn.blocks.Composite; a subclass that overrides forward must declare its own branches)"
    )


def _composite(module: nn.Module) -> list[list[nn.Module]] | None:
    """The parallel branches (summed) of a composite, each a chain of modules; None for a leaf.

    A forward that only splits channels after its branches is spatially a no-op, so ``strict=False``.
    """
    branches = describe(module, strict=False)
    return None if branches is None else [[child for _, child in chain] for chain in branches]


def _axis_scale(module: nn.Module, axis: int) -> Fraction:
    """Output size / input size of ``module`` along ``axis`` (0 = height, 1 = width)."""
    branches = _composite(module)
    if branches is not None:
        scales = set()
        for chain in branches:
            scale = Fraction(1)
            for child in chain:
                scale *= _axis_scale(child, axis)
            scales.add(scale)
        if len(scales) != 1:
            raise ValueError(f"the branches of {type(module).__name__} change the size differently: {scales}")
        return scales.pop()
    if isinstance(module, nn.Conv2d):
        return Fraction(1, module.stride[axis])
    if isinstance(module, nn.PixelShuffle):
        return Fraction(module.upscale_factor)
    if isinstance(module, nn.PixelUnshuffle):
        return Fraction(1, module.downscale_factor)
    if isinstance(module, POINTWISE):
        return Fraction(1)
    raise _unsupported(module)


def _conv_reach(conv: nn.Conv2d, axis: int) -> tuple[int, int]:
    """(left, right) extension in the conv's input pixels of the input needed for a run of outputs."""
    k, s, d = conv.kernel_size[axis], conv.stride[axis], conv.dilation[axis]
    padding = conv.padding
    if padding == "valid":
        p = 0
    elif padding == "same":
        p = d * (k - 1) // 2  # PyTorch puts the odd pixel of 'same' padding on the right
    else:
        p = padding[axis]
    # Outputs [u, v) read inputs [u*s - p, (v-1)*s - p + d(k-1) + 1) = [u*s - p, v*s + right).
    return p, d * (k - 1) - p - s + 1


def _ceil_to(value: Fraction, grid: Fraction) -> Fraction:
    return math.ceil(value / grid) * grid


class _Walk:
    """Backward walk of one axis, accumulating the reach in input pixels and the grids visited."""

    def __init__(self, axis: int) -> None:
        self.axis = axis
        self.grids: set[Fraction] = set()

    def back(
        self, module: nn.Module, left: Fraction, right: Fraction, pixel: Fraction
    ) -> tuple[Fraction, Fraction]:
        """Reach needed before ``module`` given the reach needed after it.

        ``pixel`` is the size of one of the module's *output* pixels in network-input pixels.
        """
        self.grids.add(pixel)
        branches = _composite(module)
        if branches is not None:
            reaches = [self._back_chain(chain, left, right, pixel) for chain in branches]
            return max(r[0] for r in reaches), max(r[1] for r in reaches)
        if isinstance(module, POINTWISE):
            return left, right
        pixel_in = pixel * _axis_scale(module, self.axis)
        self.grids.add(pixel_in)
        if isinstance(module, nn.Conv2d):
            conv_left, conv_right = _conv_reach(module, self.axis)
            return left + conv_left * pixel_in, right + conv_right * pixel_in
        if isinstance(module, nn.PixelShuffle):
            # A fine output pixel depends on the whole coarse pixel containing it: round edges outward.
            return _ceil_to(left, pixel_in), _ceil_to(right, pixel_in)
        if isinstance(module, nn.PixelUnshuffle):
            return left, right  # every coarse pixel edge is also a fine pixel edge
        raise _unsupported(module)

    def _back_chain(
        self, chain: list[nn.Module], left: Fraction, right: Fraction, pixel: Fraction
    ) -> tuple[Fraction, Fraction]:
        for module in reversed(chain):
            left, right = self.back(module, left, right, pixel)
            pixel = pixel * _axis_scale(module, self.axis)
        return left, right


def _walk(module: nn.Module) -> tuple[Fraction, set[Fraction]]:
    """(radius, grids) over both axes; grids are the pixel sizes visited, in input pixels."""
    radius = Fraction(0)
    grids: set[Fraction] = set()
    for axis in (0, 1):
        walk = _Walk(axis)
        left, right = walk.back(module, Fraction(0), Fraction(0), 1 / _axis_scale(module, axis))
        radius = max(radius, left, right)
        grids |= walk.grids
    return radius, grids


def scale_factor(module: nn.Module) -> Fraction:
    """Output size / input size of a network (1/16 for g_a, 16 for g_s, 4 for h_s)."""
    height, width = _axis_scale(module, 0), _axis_scale(module, 1)
    if height != width:
        raise ValueError(f"{type(module).__name__} scales height by {height} but width by {width}")
    return height


def receptive_radius(module: nn.Module) -> float:
    """How far, in input pixels, an output pixel's dependence reaches beyond the input it covers.

    An output pixel covers the input pixels under it (a 16x16 block for g_a; for g_s, a part of one
    latent pixel). The radius is the largest distance, along either axis, from that footprint to an
    input pixel the output can depend on, for tiles aligned as :func:`alignment` says. It is always
    a whole number for the supported modules; it is returned as a float for generality.
    """
    radius, _ = _walk(module)
    return float(radius)


def alignment(module: nn.Module) -> int:
    """The smallest tile and halo granularity, in input pixels, for which tiling is exact.

    Tile edges must fall on the pixel grid of every level of the network: 16 for g_a (four stride-2
    stages), 1 for g_s and h_s (whose coarsest level is their input).
    """
    _, grids = _walk(module)
    return math.lcm(*(grid.numerator for grid in grids))


def halo_for(module: nn.Module, align: int = 1) -> int:
    """The halo, in input pixels, to tile ``module`` with: its receptive radius rounded up to ``align``."""
    _check_int(align, "align", minimum=1)
    radius, grids = _walk(module)
    needed = math.lcm(*(grid.numerator for grid in grids))
    if align % needed:
        raise ValueError(
            f"align={align} is not a multiple of {needed}, the alignment {type(module).__name__} needs "
            "for its strided layers to sample the same positions in every tile"
        )
    return -(-math.ceil(radius) // align) * align


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _pair(value: int | tuple[int, int], name: str, minimum: int) -> tuple[int, int]:
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a (height, width) pair, got {value!r}")
        return _check_int(value[0], name, minimum), _check_int(value[1], name, minimum)
    v = _check_int(value, name, minimum)
    return v, v


def _as_fraction(scale: Fraction | int | float) -> Fraction:
    if isinstance(scale, bool) or not isinstance(scale, Fraction | int | float):
        raise ValueError(f"scale must be a Fraction, int or float, got {scale!r}")
    if isinstance(scale, float):
        if not math.isfinite(scale):
            raise ValueError(f"scale must be finite, got {scale}")
        # Floats like 1/3 are inexact; a small denominator recovers the intended ratio.
        scale = Fraction(scale).limit_denominator(1 << 20)
    scale = Fraction(scale)
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    return scale


def _scaled(size: int, scale: Fraction, what: str) -> int:
    scaled = size * scale
    if scaled.denominator != 1:
        raise ValueError(f"{what} ({size}) times scale ({scale}) must be a whole number of output pixels")
    return int(scaled)


def _check_result(
    result: object, batch: int, channels: int | None, size: tuple[int, int], scale: Fraction
) -> torch.Tensor:
    if not isinstance(result, torch.Tensor) or result.dim() != 4:
        raise ValueError(f"fn must return a (B, C, H, W) tensor, got {type(result).__name__}")
    expected = (size[0] * scale, size[1] * scale)
    if result.shape[0] != batch or tuple(result.shape[-2:]) != expected:
        raise ValueError(
            f"fn mapped a batch of {batch} at {size[0]}x{size[1]} to {tuple(result.shape)}, expected a "
            f"batch of {batch} at {expected[0]}x{expected[1]} (scale {scale}); is scale right?"
        )
    if channels is not None and result.shape[1] != channels:
        raise ValueError(f"fn returned {result.shape[1]} channels for one tile and {channels} for another")
    return result


def _check_out(out: torch.Tensor, shape: tuple[int, int, int, int]) -> None:
    if tuple(out.shape) != shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {shape}")


def run_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    scale: Fraction | int | float,
    tile: int | tuple[int, int],
    halo: int | tuple[int, int],
    align: int = 1,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply the fully convolutional ``fn`` to ``x`` (B, C, H, W) tile by tile; equals ``fn(x)``.

    ``tile`` and ``halo`` are in input pixels (an int, or a (height, width) pair) and must be
    multiples of ``align``; tiles start at multiples of ``tile`` and are visited in raster order.
    Each tile is run with ``halo`` extra input pixels on every side (fewer at the image border) and
    its output cropped back to the tile. ``scale`` is fn's output size / input size. The result goes
    into ``out`` if given (any dtype or device: e.g. a CPU buffer while fn runs on a GPU), otherwise
    into a tensor allocated once like fn's output. For an exact result, ``halo`` must be at least
    :func:`halo_for` of the network and ``align`` a multiple of its :func:`alignment`.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a (B, C, H, W) tensor, got {getattr(x, 'shape', type(x).__name__)}")
    ratio = _as_fraction(scale)
    align = _check_int(align, "align", minimum=1)
    tile_h, tile_w = _pair(tile, "tile", minimum=1)
    halo_h, halo_w = _pair(halo, "halo", minimum=0)
    for name, value in (("tile", tile_h), ("tile", tile_w), ("halo", halo_h), ("halo", halo_w)):
        if value % align:
            raise ValueError(f"{name} ({value}) must be a multiple of align ({align})")
    # Tiles and halos are multiples of align, so this makes every tile's output a whole pixel count.
    _scaled(align, ratio, "align")
    batch, _, height, width = x.shape
    out_h, out_w = _scaled(height, ratio, "the input height"), _scaled(width, ratio, "the input width")

    if height <= tile_h and width <= tile_w:
        result = _check_result(fn(x), batch, None, (height, width), ratio)
        if out is None:
            return result
        _check_out(out, (batch, result.shape[1], out_h, out_w))
        out.copy_(result)
        return out

    channels: int | None = None
    for (rows, cols), crop, (out_rows, out_cols) in tile_windows(height, width, (tile_h, tile_w), (halo_h, halo_w), ratio):
        # A view, not a copy: fn moves it to its device if it needs to.
        result = fn(x[:, :, rows, cols])
        result = _check_result(result, batch, channels, (rows.stop - rows.start, cols.stop - cols.start), ratio)
        if channels is None:
            channels = result.shape[1]
            if out is None:
                out = result.new_empty((batch, channels, out_h, out_w))
            else:
                _check_out(out, (batch, channels, out_h, out_w))
        out[:, :, out_rows, out_cols] = result[:, :, crop[0], crop[1]]
    assert out is not None  # the loops ran at least once, as the input exceeds one tile
    return out

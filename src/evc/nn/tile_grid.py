"""Where tiles lie, without torch: the tile policy, whether an input is tiled, and each tile's windows.

:mod:`evc.nn.tiling` runs torch networks tile by tile and :mod:`evc.onnx.runtime` runs ONNX graphs so,
both over the windows :func:`tile_windows` gives, under the one :class:`TilePolicy`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

Window = tuple[slice, slice]  # rows, columns


@dataclass(frozen=True)
class TilePolicy:
    """``untiled_max_pixels``: the largest input, in image pixels, run in one piece.
    ``tile_pixels``: the tile side in image pixels (a multiple of 64, so every network's tile is whole)."""

    untiled_max_pixels: int = 1 << 22
    tile_pixels: int = 1024


def is_tiled(height: int, width: int, input_pixel: int, policy: TilePolicy) -> bool:
    """Whether a network whose input pixel covers ``input_pixel`` image pixels a side runs an input of
    ``height`` x ``width`` pixels in tiles under ``policy``: the image size alone decides, so an encoder
    and a decoder with the same policy run identical pieces."""
    return height * width * input_pixel**2 > policy.untiled_max_pixels


def tile_windows(
    height: int, width: int, tile: tuple[int, int], halo: tuple[int, int], ratio: Fraction
) -> Iterator[tuple[Window, Window, Window]]:
    """The tiles of a ``height`` x ``width`` input in raster order, each as (the input window to run,
    with ``halo`` pixels more on every side where the input has them; the part of that window's output
    to keep; where it goes in the whole output), for a network whose output is ``ratio`` times its
    input. Tiles start at multiples of ``tile`` (height, width)."""
    (tile_h, tile_w), (halo_h, halo_w) = tile, halo
    for top in range(0, height, tile_h):
        bottom = min(top + tile_h, height)
        in_top, in_bottom = max(0, top - halo_h), min(height, bottom + halo_h)
        for left in range(0, width, tile_w):
            right = min(left + tile_w, width)
            in_left, in_right = max(0, left - halo_w), min(width, right + halo_w)
            crop = (slice(int((top - in_top) * ratio), int((bottom - in_top) * ratio)),
                    slice(int((left - in_left) * ratio), int((right - in_left) * ratio)))
            out = (slice(int(top * ratio), int(bottom * ratio)), slice(int(left * ratio), int(right * ratio)))
            yield (slice(in_top, in_bottom), slice(in_left, in_right)), crop, out

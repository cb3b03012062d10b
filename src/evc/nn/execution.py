"""How the codec runs a model's networks: precision and layout of the transforms, tiles, timing.

These are settings of a run, not of the networks: a :class:`~evc.codec.Codec` owns one
:class:`Execution` and passes it to every coding call; the model itself is networks plus forward. None
of them changes a file: the transforms' precision does not enter the entropy coder's tables, and tiles
are chosen from the image size alone, the same by encoder and decoder.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn

from evc.nn.tile_policy import TiledNetwork, TilePolicy

# A hook that times a named part of the coding path ("transforms", "entropy networks", "coding"): part ->
# context manager.
Timing = Callable[[str], AbstractContextManager]

TRANSFORM_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def untimed(part: str) -> AbstractContextManager:
    """The default timing hook: measures nothing."""
    return nullcontext()


@dataclass(frozen=True)
class Execution:
    """Settings for running one model's networks; change them with :func:`dataclasses.replace`.

    ``transform_dtype`` / ``channels_last``: precision (float32, float16, bfloat16) and memory layout of
    g_a and g_s while coding (the caller converts the transforms' weights to channels_last once, see
    :meth:`prepare`). ``tile_policy``: when networks run in tiles (:mod:`evc.nn.tile_policy`).
    ``timing``: a hook around the transforms ("transforms"), h_a and the entropy-parameter networks
    ("entropy networks") and the entropy coder ("coding"), for benchmarks. ``deterministic_float_parameters``: run float32 entropy parameters single-threaded so
    that encoder and decoder agree (only a benchmark of what that costs turns it off: its files may
    then fail to decode). Raises ValueError for another transform dtype.
    """

    transform_dtype: torch.dtype = torch.float32
    channels_last: bool = False
    tile_policy: TilePolicy = field(default_factory=TilePolicy)
    timing: Timing = untimed
    deterministic_float_parameters: bool = True

    def __post_init__(self) -> None:
        if self.transform_dtype not in TRANSFORM_DTYPES:
            raise ValueError(f"transform precision must be float32, float16 or bfloat16, got {self.transform_dtype}")

    def prepare(self, *transforms: nn.Module) -> None:
        """Put the transforms' weights in this run's memory layout (channels_last or contiguous)."""
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        for module in transforms:
            module.to(memory_format=layout)

    def run_transform(self, module: nn.Module, x: torch.Tensor, input_pixel: int) -> torch.Tensor:
        """Apply g_a or g_s in this run's precision and layout, tile by tile for large images.

        Tiles carry a halo as wide as the network's receptive field, so the result is the untiled one
        up to float rounding: no seams. Whether to tile depends only on the image size, so encoder and
        decoder make the same choice. Returns float32.
        """
        # Made per call: its plan (scale, halo) is computed only when the image is large enough to tile,
        # and a cache here would keep every network it ever ran alive.
        tiled = TiledNetwork(module, input_pixel)
        plain = self.transform_dtype == torch.float32 and not self.channels_last
        with self.timing("transforms"):
            if plain and not tiled.is_tiled(x, self.tile_policy):
                return module(x)
            return tiled.run(lambda piece: self._transform_piece(module, piece), x, self.tile_policy)

    def _transform_piece(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.transform_dtype == torch.float32:
            return module(x).float().contiguous()
        with torch.autocast(x.device.type, dtype=self.transform_dtype):
            return module(x).float().contiguous()


# What a model runs with when no Execution is given (training, tests): float32, default tiles, untimed.
DEFAULT_EXECUTION = Execution()

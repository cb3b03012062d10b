"""The stream layout of a coded latent and the coding options a file records: one stream for the
hyper-latent z, then each coding step of the dual spatial prior split into ``substreams`` streams; the
latent's geometry, the order of z's tables, which elements each step codes, and the checksum of the
symbols.

Plain data and numpy without torch, so that describing a file (:func:`evc.fileinfo.file_info`, `evc
info`), checking command-line options and decoding on ONNX Runtime (:mod:`evc.onnx.runtime`) do not
load it; :mod:`evc.entropy.latent_codec` codes with them.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from evc.errors import EVCError, FormatError

# Coding steps of the dual spatial prior (evc.entropy.dual_prior): each is coded as its own streams.
NUM_STEPS = 2
# Image pixels per pixel of y and of z (g_a's four stride-2 stages, then h_a's two).
PIXELS_PER_LATENT = 16
PIXELS_PER_HYPER_LATENT = 64
# Symbols are coded as integers; beyond this the latent is broken, not merely unusual.
MAX_ABS_SYMBOL = 2.0**31 - 1
# Each coding step of y may be split into at most this many independent streams.
MAX_SUBSTREAMS = 8
# The exact arithmetics of entropy parameters; evc.entropy.exact_parameters.ARITHMETICS implements each.
ARITHMETIC_NAMES = ("float64", "int8")


@dataclass(frozen=True)
class CodingOptions:
    """How a latent is coded. The file records all of it (header flags, stream count), so the decoder
    follows whatever the encoder chose.

    ``exact``: entropy parameters from fixed-point networks, identical on every CPU, GPU and thread
    count, so the file decodes anywhere; ``arithmetic`` says which: "int8" (:mod:`evc.nn.exact_int8`,
    format version 3) or "float64" (:mod:`evc.nn.exact`, format versions 1-2, slower). Without it they
    come from the float32
    networks, which is faster but decodes only on the kind of device (and CPU type) that encoded it.
    ``substreams``: each coding step of y is split into this many independent streams, which a decoder
    may decode concurrently. ``skip_certain``: symbols whose table is nearly certain are not coded one
    by one; the few that differ from the table's mode are coded apart (:mod:`evc.entropy.coder`).
    """

    exact: bool = True
    substreams: int = 1
    skip_certain: bool = True
    arithmetic: str = "int8"

    def __post_init__(self) -> None:
        if self.arithmetic not in ARITHMETIC_NAMES:
            raise ValueError(f"arithmetic must be one of {', '.join(ARITHMETIC_NAMES)}, got {self.arithmetic!r}")
        if not 1 <= self.substreams <= MAX_SUBSTREAMS:
            raise ValueError(f"substreams must be in 1..{MAX_SUBSTREAMS}, got {self.substreams}")

    @property
    def num_streams(self) -> int:
        return 1 + NUM_STEPS * self.substreams


def decoding_options(num_streams: int, exact: bool, skip_certain: bool, arithmetic: str) -> CodingOptions:
    """The options coded data was made with, from its stream count, flags and (from the format version)
    exact arithmetic; the stream layout's inverse. Raises FormatError if no encoder writes
    ``num_streams`` streams."""
    substreams, remainder = divmod(num_streams - 1, NUM_STEPS)
    if remainder or not 1 <= substreams <= MAX_SUBSTREAMS:
        raise FormatError(
            f"corrupt file: {num_streams} streams; EVC models write 1 + {NUM_STEPS} x (1..{MAX_SUBSTREAMS})"
        )
    return CodingOptions(exact=exact, substreams=substreams, skip_certain=skip_certain, arithmetic=arithmetic)


def symbols_crc(values: np.ndarray, crc: int) -> int:
    """The running CRC-32 of the coded symbols (as little-endian int32) that a file's header checks,
    continued from ``crc`` with ``values``."""
    return zlib.crc32(values.astype("<i4").tobytes(), crc)


def check_encoded_symbols(largest: float) -> None:
    """Raise EVCError unless ``largest``, the largest magnitude of the symbols an encoder is about to
    code, is finite and within +-MAX_ABS_SYMBOL: a latent beyond is broken (unusable weights)."""
    if not math.isfinite(largest) or largest > MAX_ABS_SYMBOL:
        raise EVCError("the model produced a non-finite or out-of-range latent; its weights are unusable")


def checked_symbols(values: np.ndarray) -> np.ndarray:
    """Refuse decoded symbols that no encoder writes (beyond +-MAX_ABS_SYMBOL): the symbols CRC covers
    them as int32, so a value 2^32 away from the true one would pass it and garble the image silently.
    Raises FormatError; returns ``values``."""
    if values.size and max(-int(values.min()), int(values.max())) > MAX_ABS_SYMBOL:
        raise FormatError("corrupt stream: a decoded symbol lies outside the int32 range of the format")
    return values


def z_table_index(z_shape: tuple[int, ...]) -> np.ndarray:
    """The table of each symbol of the hyper-latent (1, C, h, w), in coding order: its channel's."""
    _, c, h, w = z_shape
    return np.repeat(np.arange(c, dtype=np.int64), h * w)


def step_one_mask(channels: int, height: int, width: int) -> np.ndarray:
    """Boolean (1, C, H, W): true for the elements the dual spatial prior codes in its first step (the
    first half of the channels where (i + j) is even, the second half where it is odd)."""
    rows = np.arange(height).reshape(-1, 1)
    cols = np.arange(width).reshape(1, -1)
    m0 = (rows + cols) % 2 == 0
    half = channels // 2
    mask = np.concatenate([np.broadcast_to(m0, (half, height, width)),
                           np.broadcast_to(~m0, (channels - half, height, width))])[None]
    # C order: a tensor made from it keeps this memory layout, and so would what torch computes from it.
    return np.ascontiguousarray(mask)

"""The stream layout of a coded latent and the coding options a file records: one stream for the
hyper-latent z, then each coding step of the dual spatial prior split into ``substreams`` streams.

Plain data without torch, so that describing a file (:func:`evc.fileinfo.file_info`, `evc info`) and
checking command-line options do not load it; :mod:`evc.entropy.latent_codec` codes with them.
"""

from __future__ import annotations

from dataclasses import dataclass

from evc.errors import FormatError

# Coding steps of the dual spatial prior (evc.entropy.dual_prior): each is coded as its own streams.
NUM_STEPS = 2
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

"""Describing an .evc file without decoding it (:func:`file_info`, `evc info`): its header, and its
quality when the weights that made it are known.

Nothing here imports torch: the header is parsed by evc.bitstream, the weights are identified by
evc.models.metadata (numpy), and the rate scale is evc.models.rates, so `evc info` answers in a
fraction of the time that importing torch takes. evc.codec re-exports all of it.
"""

from __future__ import annotations

import functools
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from evc.bitstream.container import Header, parse
from evc.entropy.streams import decoding_options
from evc.errors import ModelError
from evc.models.metadata import Q_SCALE_TENSOR, NeedsTorch, held_model, numpy_identity, read_metadata
from evc.models.rates import qualities_for_q_index, quality_for_q_index
from evc.models.registry import MODELS_BY_ID, ModelSpec
from evc.weights_keys import ANCHORS_KEY

# The model ids this evc knows: a file naming another is refused as malformed (an unknown model).
KNOWN_MODEL_IDS = frozenset(MODELS_BY_ID)


def weights_path(weights: object) -> Path:
    """A weights location given by a caller as a path; TypeError for anything else."""
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights must be a path to a .safetensors file or folder, got a {type(weights).__name__}")
    return Path(weights)


def file_bytes(data: object) -> Any:
    """An evc file's data from what a caller passed: a binary file object is read from its position to
    its end; anything else is returned as is, for :func:`evc.bitstream.container.parse` to check (it
    takes bytes-like data). Raises TypeError, naming what was passed, for a text-mode file object."""
    read = getattr(data, "read", None)
    if callable(read) and not isinstance(data, (bytes, bytearray, memoryview)):
        if isinstance(data, io.TextIOBase):
            raise TypeError(f"the {type(data).__name__} passed is open in text mode; open the .evc file in binary mode ('rb')")
        content = read()
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"reading the {type(data).__name__} passed gave a {type(content).__name__}, not bytes; "
                "open the .evc file in binary mode ('rb')"
            )
        return content
    return data


def parse_file(data: bytes) -> tuple[Header, list[bytes], ModelSpec]:
    """An evc file's header, its streams and the model that made it (``data``: bytes-like, see
    :func:`file_bytes`). Raises FormatError for a malformed file, or one of a model this evc does not
    know, TypeError for data that is not bytes-like."""
    header, streams = parse(data, known_model_ids=KNOWN_MODEL_IDS)
    return header, streams, MODELS_BY_ID[header.model_id]


@dataclass(frozen=True)
class FileInfo:
    """What :func:`file_info` tells about an .evc file: its header, and its quality where known."""

    model: str
    width: int
    height: int
    colour: str
    q_index: int
    # Where the q index lies on the quality scale (0: lowest-rate anchor, 1: highest; not clamped): None
    # unless the weights that made the file are known here (see file_info).
    quality: float | None
    size_bytes: int
    format_version: int
    weights_fingerprint: int
    exact: bool  # entropy parameters in exact arithmetic: decodes on any device
    substreams: int
    icc_profile: bytes | None = None  # the input's ICC colour profile, restored on decoding
    # The quality settings that code to the file's q index (lowest, highest; see
    # evc.models.rates.qualities_for_q_index): the file stores the q index only, so the setting
    # that made it is one of these. None when the weights are unknown or no quality gives the q index.
    quality_range: tuple[float, float] | None = None
    # The exact arithmetic the file's entropy parameters use ("int8", format version 3; "float64",
    # versions 1-2); None for float parameters.
    arithmetic: str | None = None
    exif: bytes | None = None  # the input's EXIF block (format version 4), restored on decoding
    xmp: bytes | None = None  # the input's XMP packet (format version 4), restored on decoding
    # Bytes of the losslessly coded alpha plane (format version 4; part of size_bytes), None when the
    # file has none (the image decodes without alpha).
    alpha_bytes: int | None = None

    @property
    def bpp(self) -> float:
        """Bits per pixel of the whole file (alpha plane and metadata included)."""
        return self.size_bytes * 8 / (self.width * self.height)


def file_info(data: bytes | BinaryIO, weights: str | Path | None = None) -> FileInfo:
    """Describe a file without decoding it (``data``: as :func:`evc.decompress` takes it).

    ``quality`` and ``quality_range`` (the quality settings that give the file's q index) are given
    when the weights that made the file are known: ``weights`` (a .safetensors file or folder), else the
    model's shipped weights, and their fingerprint is the file's; otherwise they are None.
    Raises FormatError for a malformed file, ModelError for unreadable weights or weights of another model.
    """
    data = file_bytes(data)
    header, streams, spec = parse_file(data)
    options = decoding_options(len(streams), header.exact, header.skip_certain, header.exact_arithmetic)
    source: Path | None = None
    if weights is not None:
        source = weights_path(weights)
        held = held_model(weights, read_metadata(source), default=spec.name)
        if held != spec:
            raise ModelError(f"{weights} holds weights for {held.name}; the file was made by {spec.name}")
    elif spec.has_weights():
        source = spec.weights_dir
    quality = quality_range = None
    if source is not None:
        fingerprint, anchors = weights_identity(source)
        if fingerprint == header.weights_fingerprint and anchors is not None:
            quality = quality_for_q_index(header.q_index, anchors)
            quality_range = qualities_for_q_index(header.q_index, anchors)
    return FileInfo(
        spec.name, header.width, header.height, header.colour, header.q_index, quality, len(data),
        header.version, header.weights_fingerprint, options.exact, options.substreams, header.icc_profile,
        quality_range, options.arithmetic if options.exact else None, header.exif, header.xmp,
        None if header.alpha is None else len(header.alpha),
    )


def weights_identity(source: Path) -> tuple[int, list[float] | None]:
    """Fingerprint (:func:`evc.models.weights.state_fingerprint` of the stored tensors) and anchor
    q_scale values (lowest rate first; None if the weights record none) of a weights location; cached
    while its files are unchanged. ModelError for unreadable weights.

    The anchors are the stored q_scale values, which the codec codes with (the metadata's copy is
    rounded to 6 decimals from the unrounded training values, and can map a quality to another q index).
    """
    return _cached_identity(str(source.resolve()), _modified(source))


def _modified(source: Path) -> tuple[int, ...]:
    files = sorted(source.glob("*.safetensors")) if source.is_dir() else [source]
    return tuple(f.stat().st_mtime_ns for f in files if f.exists())


@functools.lru_cache(maxsize=8)
def _cached_identity(source: str, modified: tuple[int, ...]) -> tuple[int, list[float] | None]:
    try:
        fingerprint, anchors = numpy_identity(source)
    except NeedsTorch:  # bfloat16 weights, say: torch reads them (they come from training, not shipped)
        from evc.models.weights import load_state, state_fingerprint

        state, _ = load_state(source)
        fingerprint = state_fingerprint(state)
        anchors = [float(v) for v in state[Q_SCALE_TENSOR].float()] if Q_SCALE_TENSOR in state else None
    if anchors is None:
        anchors = json.loads(read_metadata(source).get(ANCHORS_KEY, "null") or "null")
    return fingerprint, anchors or None

"""Pack and parse .evc files. The layout is specified in docs/format.md; keep the two in step.

Version 4 (written for images with EXIF or XMP metadata or an alpha plane) is version 3 with three more
optional blocks after the ICC profile, each ``length u32 | bytes``: the EXIF block (flag 0x08), the XMP
packet (flag 0x10), then the alpha plane (flag 0x20, coded by evc.alpha). Their flags are unknown
(refused) in earlier versions. Files without them are written as version 3 (or 2), which evc releases
before version 4 also read.
Version 3 (written by default without metadata) has version 2's layout; only the arithmetic of exact entropy parameters
(flag 0x01) differs: 8-bit integer products (evc.nn.exact_int8) instead of float64 fixed point.
Version 2 (written on request, for older readers):
    magic "\\x89EVC" | version u8 | model id u8 | weights fingerprint u32 | colour u8 | q index u16
    | width u32 | height u32 | flags u8 | symbols CRC-32 u32 | stream count u8 | stream lengths u32 x count
    | [ICC profile length u32 | ICC profile, when flag 0x04] | streams | CRC-32 u32
Version 1 (still read) is the same without the flags byte, which then counts as 0.

All integers are big-endian. The CRC-32 (zlib) covers every byte before it. Every size is checked
against the bytes actually present before anything is sliced or allocated.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from evc.errors import FormatError

MAGIC = b"\x89EVC"
FORMAT_VERSION = 4  # the newest version this evc reads and writes
WRITABLE_VERSIONS = (2, 3, 4)
METADATA_SINCE = 4  # the first version with the EXIF, XMP and alpha blocks
# The arithmetic of exact entropy parameters (FLAG_EXACT), by format version: evc.nn.exact's float64
# fixed point up to version 2, evc.nn.exact_int8's 8-bit integer products from version 3.
INT8_ARITHMETIC_SINCE = 3
VERSION_FOR_ARITHMETIC = {"int8": 3, "float64": 2}  # the version an encoder writes for each
COLOUR_CODES = {"RGB": 0, "L": 1}
_COLOURS = {code: name for name, code in COLOUR_CODES.items()}

# Flag bits. A reader refuses a file with a bit it does not know: it could not decode it correctly.
FLAG_EXACT = 0x01  # entropy parameters in exact arithmetic (which one: the version, see exact_arithmetic)
FLAG_SKIP_CERTAIN = 0x02  # nearly certain symbols skipped, exceptions coded apart (evc.entropy.coder)
FLAG_ICC = 0x04  # the image's ICC colour profile follows the stream lengths (restored on decoding)
FLAG_EXIF = 0x08  # version 4: the image's EXIF block follows (after the ICC profile, if any)
FLAG_XMP = 0x10  # version 4: the image's XMP packet follows (after the EXIF block, if any)
FLAG_ALPHA = 0x20  # version 4: the image's alpha plane follows (after the XMP packet, if any; evc.alpha)
KNOWN_FLAGS = FLAG_EXACT | FLAG_SKIP_CERTAIN | FLAG_ICC | FLAG_EXIF | FLAG_XMP | FLAG_ALPHA
_BLOCK_FLAGS = (FLAG_ICC, FLAG_EXIF, FLAG_XMP, FLAG_ALPHA)  # the optional blocks, in file order
_BLOCK_NAMES = {FLAG_ICC: "ICC profile", FLAG_EXIF: "EXIF block", FLAG_XMP: "XMP packet", FLAG_ALPHA: "alpha plane"}


def version_for(arithmetic: str, metadata: bool) -> int | None:
    """The version an encoder writes for files of ``arithmetic`` ("int8" or "float64"), with or without
    version 4's blocks (``metadata``: EXIF, XMP or an alpha plane): the lowest that holds them. None when
    none does (float64 with them: version 4 and later use int8 arithmetic)."""
    version = VERSION_FOR_ARITHMETIC[arithmetic]
    if not metadata:
        return version
    return max(version, METADATA_SINCE) if version >= INT8_ARITHMETIC_SINCE else None


def known_flags(version: int) -> int:
    """The flag bits a file of ``version`` may set."""
    return KNOWN_FLAGS if version >= METADATA_SINCE else FLAG_EXACT | FLAG_SKIP_CERTAIN | FLAG_ICC

_PREFIX = struct.Struct(">4sB")  # magic, version: readable in every version
# model id, weights fingerprint, colour, q index, width, height
_COMMON = struct.Struct(">BIBHII")
_FLAGS = struct.Struct(">B")
# symbols CRC, stream count
_TAIL = struct.Struct(">IB")
_CRC = struct.Struct(">I")
HEADER_BYTES = _PREFIX.size + _COMMON.size + _FLAGS.size + _TAIL.size
_HEADER_BYTES_V1 = HEADER_BYTES - _FLAGS.size
MAX_STREAMS = 255
Q_INDEX_MAX = 0xFFFF  # the q index is a u16; 0 is invalid
MAX_DIMENSION = 2**31 - 1
MAX_ICC_BYTES = 2**32 - 1


@dataclass(frozen=True)
class Header:
    model_id: int
    weights_fingerprint: int
    colour: str
    q_index: int
    width: int
    height: int
    symbols_crc: int  # CRC-32 of the coded symbols, checked by the decoder after entropy decoding
    flags: int = 0
    icc_profile: bytes | None = None  # present exactly when flags has FLAG_ICC
    version: int = 3  # of the file this was parsed from, or to write (WRITABLE_VERSIONS)
    exif: bytes | None = None  # the image's EXIF block as Pillow gives it; exactly when flags has FLAG_EXIF
    xmp: bytes | None = None  # the image's XMP packet; exactly when flags has FLAG_XMP
    alpha: bytes | None = None  # the coded alpha plane (evc.alpha); exactly when flags has FLAG_ALPHA

    def __post_init__(self) -> None:
        if self.colour not in COLOUR_CODES:
            raise ValueError(f"colour must be one of {sorted(COLOUR_CODES)}")
        if not (1 <= self.width <= MAX_DIMENSION and 1 <= self.height <= MAX_DIMENSION):
            raise ValueError(f"image size {self.width}x{self.height} cannot be stored")
        if not 1 <= self.q_index <= Q_INDEX_MAX:
            raise ValueError(f"q index {self.q_index} out of range 1..{Q_INDEX_MAX}")
        if self.flags & ~KNOWN_FLAGS or not 0 <= self.flags <= 0xFF:
            raise ValueError(f"unknown flags 0x{self.flags:02x}")
        if bool(self.flags & FLAG_ICC) != bool(self.icc_profile):
            raise ValueError("an ICC profile is stored exactly when flag 0x04 is set, and is never empty")
        if self.icc_profile is not None and len(self.icc_profile) > MAX_ICC_BYTES:
            raise ValueError(f"ICC profile of {len(self.icc_profile)} bytes is over the {MAX_ICC_BYTES} a file can hold")
        if self.flags & ~known_flags(self.version):
            raise ValueError(
                f"format version {self.version} cannot hold flags 0x{self.flags:02x} (EXIF, XMP and alpha: version 4)"
            )
        for flag, block in ((FLAG_EXIF, self.exif), (FLAG_XMP, self.xmp), (FLAG_ALPHA, self.alpha)):
            name = _BLOCK_NAMES[flag]
            if bool(self.flags & flag) != bool(block):
                raise ValueError(f"an {name} is stored exactly when flag 0x{flag:02x} is set, and is never empty")
            if block is not None and len(block) > MAX_ICC_BYTES:
                raise ValueError(f"{name} of {len(block)} bytes is over the {MAX_ICC_BYTES} a file can hold")

    def blocks(self) -> dict[int, bytes | None]:
        """The optional blocks by flag, in file order."""
        return {FLAG_ICC: self.icc_profile, FLAG_EXIF: self.exif, FLAG_XMP: self.xmp, FLAG_ALPHA: self.alpha}

    @property
    def exact(self) -> bool:
        return bool(self.flags & FLAG_EXACT)

    @property
    def exact_arithmetic(self) -> str:
        """The arithmetic of exact entropy parameters in this version: "int8" or "float64"."""
        return "int8" if self.version >= INT8_ARITHMETIC_SINCE else "float64"

    @property
    def skip_certain(self) -> bool:
        return bool(self.flags & FLAG_SKIP_CERTAIN)


def encoder_header(
    model_id: int, weights_fingerprint: int, colour: str, q_index: int, width: int, height: int, symbols_crc: int,
    *, exact: bool, skip_certain: bool, arithmetic: str, icc_profile: bytes | None = None,
    exif: bytes | None = None, xmp: bytes | None = None, alpha: bytes | None = None,
) -> Header:
    """The header an encoder writes: the flags of its coding options (``exact``, ``skip_certain``) and
    of the blocks it carries (an empty block counts as none), in the lowest version that holds them for
    ``arithmetic`` (:func:`version_for`). Raises ValueError when no version does (float64 arithmetic with
    EXIF, XMP or alpha: the encoder leaves those out first) or for a field :class:`Header` refuses."""
    blocks = {FLAG_ICC: icc_profile or None, FLAG_EXIF: exif or None, FLAG_XMP: xmp or None, FLAG_ALPHA: alpha or None}
    flags = (FLAG_EXACT if exact else 0) | (FLAG_SKIP_CERTAIN if skip_certain else 0)
    for flag, block in blocks.items():
        flags |= flag if block else 0
    version = version_for(arithmetic, metadata=bool(exif or xmp or alpha))
    if version is None:
        raise ValueError(f"no format version holds EXIF, XMP or an alpha plane with {arithmetic} arithmetic")
    return Header(
        model_id, weights_fingerprint, colour, q_index, width, height, symbols_crc, flags, blocks[FLAG_ICC], version,
        blocks[FLAG_EXIF], blocks[FLAG_XMP], blocks[FLAG_ALPHA],
    )


def pack(header: Header, streams: list[bytes]) -> bytes:
    if not 1 <= len(streams) <= MAX_STREAMS:
        raise ValueError(f"between 1 and {MAX_STREAMS} streams, got {len(streams)}")
    if header.version not in WRITABLE_VERSIONS:
        raise ValueError(f"evc writes format versions {WRITABLE_VERSIONS}, not {header.version}")
    body = bytearray(_PREFIX.pack(MAGIC, header.version))
    body += _COMMON.pack(
        header.model_id,
        header.weights_fingerprint,
        COLOUR_CODES[header.colour],
        header.q_index,
        header.width,
        header.height,
    )
    body += _FLAGS.pack(header.flags)
    body += _TAIL.pack(header.symbols_crc, len(streams))
    body += b"".join(struct.pack(">I", len(s)) for s in streams)
    for block in header.blocks().values():
        if block:
            body += struct.pack(">I", len(block)) + block
    for s in streams:
        body += s
    body += _CRC.pack(zlib.crc32(body))
    return bytes(body)


def _unknown_flags_message(flags: int) -> str:
    return f"file uses coding features this evc does not know (flags 0x{flags:02x}); upgrade evc"


def parse(data: bytes, known_model_ids: frozenset[int] | set[int] | None = None) -> tuple[Header, list[bytes]]:
    """Validate and split a file. Every problem raises :class:`FormatError` with a precise message.

    ``data`` must be bytes-like: ``bytes(x)`` of an integer would allocate that many zero bytes.
    """
    try:
        data = bytes(memoryview(data))
    except TypeError:
        raise TypeError(f"an evc file is bytes-like data, not {type(data).__name__}") from None
    if not data:
        raise FormatError("empty file: not an evc file")
    if data[: len(MAGIC)] != MAGIC:
        if MAGIC.startswith(data):
            raise FormatError(f"truncated file: {len(data)} bytes, shorter than the header")
        raise FormatError("not an evc file (wrong magic bytes)")
    if len(data) < _PREFIX.size:
        raise FormatError(f"truncated file: {len(data)} bytes, shorter than the header")
    _, version = _PREFIX.unpack_from(data)
    _check_version(version)
    header_bytes = HEADER_BYTES if version >= 2 else _HEADER_BYTES_V1
    if len(data) < header_bytes:
        raise FormatError(f"truncated file: {len(data)} bytes, shorter than the {header_bytes}-byte header")
    offset = _PREFIX.size
    model_id, fingerprint, colour_code, q_index, width, height = _COMMON.unpack_from(data, offset)
    offset += _COMMON.size
    flags = 0
    if version >= 2:
        (flags,) = _FLAGS.unpack_from(data, offset)
        offset += _FLAGS.size
    known = known_flags(version)
    if flags & ~known and zlib.crc32(data[: -_CRC.size]) == _CRC.unpack_from(data, len(data) - _CRC.size)[0]:
        # An intact file (its checksum holds whatever its layout) from a newer evc: the unknown flags may
        # change the layout, so say so before any layout check could misreport it as corrupt.
        raise FormatError(_unknown_flags_message(flags))
    symbols_crc, count = _TAIL.unpack_from(data, offset)
    if not 1 <= count <= MAX_STREAMS:
        raise FormatError(f"corrupt header: {count} streams (expected 1..{MAX_STREAMS})")
    lengths_end = header_bytes + 4 * count
    if len(data) < lengths_end:
        raise FormatError(f"truncated file: {len(data)} bytes, the header alone needs {lengths_end}")
    lengths = struct.unpack_from(f">{count}I", data, header_bytes)
    streams_start = lengths_end
    block_spans: dict[int, tuple[int, int]] = {}
    if not flags & ~known:
        for flag in _BLOCK_FLAGS:
            if not flags & flag:
                continue
            if len(data) < streams_start + 4:
                raise FormatError(f"truncated file: {len(data)} bytes, the header alone needs {streams_start + 4}")
            (block_length,) = struct.unpack_from(">I", data, streams_start)
            if block_length == 0:
                raise FormatError(f"corrupt header: empty {_BLOCK_NAMES[flag]}")
            block_spans[flag] = (streams_start + 4, streams_start + 4 + block_length)
            streams_start += 4 + block_length
    expected = streams_start + sum(lengths) + _CRC.size
    if len(data) < expected:
        raise FormatError(f"truncated file: {len(data)} bytes of the {expected} its header announces")
    if len(data) > expected:
        raise FormatError(f"corrupt file: {len(data) - expected} unexpected bytes after the end of the data")
    (stored_crc,) = _CRC.unpack_from(data, expected - _CRC.size)
    if zlib.crc32(data[: expected - _CRC.size]) != stored_crc:
        raise FormatError("corrupt file: checksum (CRC-32) mismatch")
    _check_fields(model_id, flags, colour_code, q_index, width, height, known_model_ids, version)
    blocks = {flag: data[start:end] for flag, (start, end) in block_spans.items()}
    streams = []
    offset = streams_start
    for length in lengths:
        streams.append(data[offset : offset + length])
        offset += length
    header = Header(
        model_id, fingerprint, _COLOURS[colour_code], q_index, width, height, symbols_crc, flags,
        blocks.get(FLAG_ICC), version, blocks.get(FLAG_EXIF), blocks.get(FLAG_XMP), blocks.get(FLAG_ALPHA),
    )
    return header, streams


def _check_version(version: int) -> None:
    if version > FORMAT_VERSION:
        raise FormatError(
            f"file uses format version {version}, newer than this evc supports ({FORMAT_VERSION}); upgrade evc"
        )
    if version < 1:
        raise FormatError(f"invalid format version {version}")


def _check_fields(
    model_id: int, flags: int, colour_code: int, q_index: int, width: int, height: int,
    known_model_ids: frozenset[int] | set[int] | None, version: int,
) -> None:
    """Raise FormatError for a header field no valid file has (parse and read_header alike)."""
    if known_model_ids is not None and model_id not in known_model_ids:
        raise FormatError(f"file was made by an unknown model (id {model_id}); a newer evc may know it")
    if flags & ~known_flags(version):
        raise FormatError(_unknown_flags_message(flags))
    if colour_code not in _COLOURS:
        raise FormatError(f"corrupt header: unknown colour mode {colour_code}")
    if q_index == 0:
        raise FormatError("corrupt header: q index 0")
    if width == 0 or height == 0 or width > MAX_DIMENSION or height > MAX_DIMENSION:
        raise FormatError(f"corrupt header: image size {width}x{height}")


def read_header(fp: BinaryIO, known_model_ids: frozenset[int] | set[int] | None = None) -> Header:
    """The header of the evc file at ``fp``'s position, read without its streams (for readers that
    give the size, colour mode, alpha and ICC profile before decoding, such as the Pillow plugin). The fields
    read are checked as :func:`parse` checks them; the checksum is not (it covers the streams), so
    :func:`parse` still checks the whole file before it is decoded. Leaves ``fp`` after the header.
    Raises FormatError for a file that is not evc, truncated inside its header, or has an invalid field.
    """

    def read(count: int) -> bytes:
        data = fp.read(count)
        if len(data) < count:
            raise FormatError("truncated file: it ends inside its header")
        return data

    magic, version = _PREFIX.unpack(read(_PREFIX.size))
    if magic != MAGIC:
        raise FormatError("not an evc file (wrong magic bytes)")
    _check_version(version)
    model_id, fingerprint, colour_code, q_index, width, height = _COMMON.unpack(read(_COMMON.size))
    (flags,) = _FLAGS.unpack(read(_FLAGS.size)) if version >= 2 else (0,)
    symbols_crc, count = _TAIL.unpack(read(_TAIL.size))
    _check_fields(model_id, flags, colour_code, q_index, width, height, known_model_ids, version)
    if not 1 <= count <= MAX_STREAMS:
        raise FormatError(f"corrupt header: {count} streams (expected 1..{MAX_STREAMS})")
    read(4 * count)  # the stream lengths
    blocks: dict[int, bytes] = {}
    for flag in _BLOCK_FLAGS:
        if flags & flag:
            (block_length,) = struct.unpack(">I", read(4))
            if block_length == 0:
                raise FormatError(f"corrupt header: empty {_BLOCK_NAMES[flag]}")
            blocks[flag] = read(block_length)
    return Header(
        model_id, fingerprint, _COLOURS[colour_code], q_index, width, height, symbols_crc, flags,
        blocks.get(FLAG_ICC), version, blocks.get(FLAG_EXIF), blocks.get(FLAG_XMP), blocks.get(FLAG_ALPHA),
    )

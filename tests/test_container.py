"""The .evc container: every malformed file raises FormatError with a precise message."""

from __future__ import annotations

import dataclasses
import io

import struct
import zlib

import numpy as np
import pytest

from evc.bitstream.container import (
    FLAG_ALPHA,
    FLAG_EXACT,
    FLAG_EXIF,
    FLAG_ICC,
    FLAG_SKIP_CERTAIN,
    FORMAT_VERSION,
    HEADER_BYTES,
    MAGIC,
    Header,
    encoder_header,
    pack,
    parse,
    read_header,
)
from evc.errors import FormatError
from evc.models.registry import MODELS_BY_ID

from conftest import random_codec, smooth_image

KNOWN = set(MODELS_BY_ID)


def _with_crc(body: bytes) -> bytes:
    """Re-seal a modified file so that the check under test is not the CRC."""
    return body + struct.pack(">I", zlib.crc32(body))


@pytest.fixture(scope="module")
def valid_file() -> bytes:
    return random_codec("EVC-SS").compress(smooth_image(40, 72), quality=0.5)


def test_pack_parse_round_trip() -> None:
    header = Header(
        model_id=5, weights_fingerprint=0xDEADBEEF, colour="L", q_index=1234, width=1, height=70000, symbols_crc=7
    )
    streams = [b"abc", b"", b"\x00" * 17]
    parsed, out = parse(pack(header, streams), KNOWN)
    assert parsed == header and out == streams


def test_versions_2_and_3_are_written_on_request_and_others_refused() -> None:
    """Version 3 has version 2's layout (only the exact arithmetic differs), so the same header packs to
    the same bytes but for the version byte; evc never writes version 1 or an unknown version."""
    header = Header(model_id=5, weights_fingerprint=1, colour="RGB", q_index=9, width=3, height=4, symbols_crc=2,
                    flags=FLAG_EXACT)
    streams = [b"z", b"y1", b"y2"]
    v3 = pack(header, streams)
    v2 = pack(dataclasses.replace(header, version=2), streams)
    assert v3[4] == 3 and v2[4] == 2 and v2[5:-4] == v3[5:-4]
    assert parse(v2, KNOWN)[0].exact_arithmetic == "float64" and parse(v3, KNOWN)[0].exact_arithmetic == "int8"
    v4 = pack(dataclasses.replace(header, version=4), streams)  # version 4 without metadata: 3's bytes
    assert v4[4] == 4 and v4[5:-4] == v3[5:-4] and parse(v4, KNOWN)[0].exact_arithmetic == "int8"
    for version in (1, FORMAT_VERSION + 1):
        with pytest.raises(ValueError, match="writes format versions"):
            pack(dataclasses.replace(header, version=version), streams)


def test_layout_is_as_documented(valid_file: bytes) -> None:
    assert valid_file[:4] == MAGIC and valid_file[4] == 3  # no metadata: the version older readers read
    model_id, _, colour, q_index, width, height, flags, _, count = struct.unpack_from(">BIBHIIBIB", valid_file, 5)
    assert (model_id, colour, width, height) == (8, 0, 72, 40)
    assert HEADER_BYTES == 27 and flags & ~(FLAG_EXACT | FLAG_SKIP_CERTAIN) == 0
    assert count >= 3 and count % 2 == 1  # z, then the same number of sub-streams for each y step
    lengths = struct.unpack_from(f">{count}I", valid_file, HEADER_BYTES)
    assert len(valid_file) == HEADER_BYTES + 4 * count + sum(lengths) + 4
    assert struct.unpack(">I", valid_file[-4:])[0] == zlib.crc32(valid_file[:-4])


def test_every_truncation_is_reported(valid_file: bytes) -> None:
    for cut in range(len(valid_file)):
        with pytest.raises(FormatError, match="truncated|empty"):
            parse(valid_file[:cut], KNOWN)


def test_every_single_bit_flip_is_detected(valid_file: bytes) -> None:
    rng = np.random.default_rng(0)
    positions = range(len(valid_file)) if len(valid_file) < 3000 else rng.choice(len(valid_file), 3000, replace=False)
    for pos in positions:
        for bit in (0, 7):
            data = bytearray(valid_file)
            data[pos] ^= 1 << bit
            with pytest.raises(FormatError):
                random_codec("EVC-SS").decompress(bytes(data))


def test_wrong_magic(valid_file: bytes) -> None:
    for data in (b"\x89PNG\r\n\x1a\n" + valid_file[8:], b"hello world, not an image", b"EVC1" + valid_file[4:]):
        with pytest.raises(FormatError, match="not an evc file"):
            parse(data, KNOWN)


def test_empty_file() -> None:
    with pytest.raises(FormatError, match="empty"):
        parse(b"", KNOWN)


def test_future_version(valid_file: bytes) -> None:
    data = bytearray(valid_file)
    data[4] = FORMAT_VERSION + 1
    with pytest.raises(FormatError, match="newer than this evc supports"):
        parse(bytes(data), KNOWN)
    # Even if the rest of a future file is laid out differently (here: cut short), the version is what
    # the user is told about.
    with pytest.raises(FormatError, match="newer"):
        parse(bytes(data[:6]), KNOWN)


def test_unknown_model(valid_file: bytes) -> None:
    body = bytearray(valid_file[:-4])
    body[5] = 200
    with pytest.raises(FormatError, match="unknown model"):
        parse(_with_crc(bytes(body)), KNOWN)


def test_trailing_bytes(valid_file: bytes) -> None:
    with pytest.raises(FormatError, match="unexpected bytes after the end"):
        parse(valid_file + b"\x00", KNOWN)


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [(10, 7, "colour"), (11, 0, "q index 0"), (13, 0, "image size"), (21, 0x80, "flags 0x80"), (26, 0, "streams")],
)
def test_invalid_header_fields(valid_file: bytes, offset: int, value: int, message: str) -> None:
    body = bytearray(valid_file[:-4])
    field = {10: 1, 11: 2, 13: 4, 21: 1, 26: 1}[offset]
    body[offset : offset + field] = value.to_bytes(field, "big")
    with pytest.raises(FormatError, match=message):
        parse(_with_crc(bytes(body)), KNOWN)


def test_header_refuses_unstorable_values() -> None:
    with pytest.raises(ValueError):
        Header(1, 0, "RGB", 0, 10, 10, 0)
    with pytest.raises(ValueError):
        Header(1, 0, "CMYK", 5, 10, 10, 0)
    with pytest.raises(ValueError):
        Header(1, 0, "RGB", 5, 0, 10, 0)


def test_an_encoder_header_takes_its_flags_and_the_lowest_version_from_what_it_holds() -> None:
    def header(**kwargs) -> Header:
        options = dict(exact=True, skip_certain=True, arithmetic="int8") | kwargs
        return encoder_header(8, 0xABCDEF01, "RGB", 40, 33, 17, 5, **options)

    plain = header(icc_profile=b"", exif=b"", xmp=None)  # empty blocks are none
    assert (plain.version, plain.flags) == (3, FLAG_EXACT | FLAG_SKIP_CERTAIN)
    assert plain.icc_profile is plain.exif is plain.xmp is plain.alpha is None
    assert header(icc_profile=b"icc").flags == FLAG_EXACT | FLAG_SKIP_CERTAIN | FLAG_ICC
    full = header(exact=False, exif=b"exif", alpha=b"alpha")
    assert (full.version, full.flags, full.exif) == (4, FLAG_SKIP_CERTAIN | FLAG_EXIF | FLAG_ALPHA, b"exif")
    assert header(arithmetic="float64", icc_profile=b"icc").version == 2
    with pytest.raises(ValueError, match="no format version holds"):
        header(arithmetic="float64", alpha=b"alpha")


def test_flags_round_trip() -> None:
    header = Header(3, 1, "RGB", 77, 640, 480, 9, flags=FLAG_EXACT | FLAG_SKIP_CERTAIN)
    parsed, _ = parse(pack(header, [b"", b"abcd"]), KNOWN)
    assert parsed == header and parsed.exact and parsed.skip_certain
    with pytest.raises(ValueError, match="flags"):
        Header(3, 1, "RGB", 77, 640, 480, 9, flags=0x08)


def test_icc_profile_round_trip_and_layout() -> None:
    profile = b"an ICC profile's bytes"
    header = Header(3, 1, "RGB", 77, 640, 480, 9, flags=FLAG_EXACT | FLAG_ICC, icc_profile=profile)
    streams = [b"abcd", b"", b"xy"]
    data = pack(header, streams)
    assert parse(data, KNOWN) == (header, streams)
    lengths_end = HEADER_BYTES + 4 * len(streams)
    assert data[lengths_end : lengths_end + 4 + len(profile)] == struct.pack(">I", len(profile)) + profile
    assert data[lengths_end + 4 + len(profile) :] == b"abcdxy" + data[-4:]
    without = Header(3, 1, "RGB", 77, 640, 480, 9, flags=FLAG_EXACT)
    assert len(data) == len(pack(without, streams)) + 4 + len(profile)
    for flags, icc in ((FLAG_ICC, None), (FLAG_ICC, b""), (0, profile)):
        with pytest.raises(ValueError, match="ICC profile"):
            Header(3, 1, "RGB", 77, 640, 480, 9, flags=flags, icc_profile=icc)


def test_malformed_icc_blocks_are_refused() -> None:
    header = Header(3, 1, "RGB", 77, 64, 48, 9, flags=FLAG_ICC, icc_profile=b"profile")
    data = pack(header, [b"abcd"])
    lengths_end = HEADER_BYTES + 4
    body = bytearray(data[:-4])
    body[lengths_end : lengths_end + 4] = struct.pack(">I", 0)
    with pytest.raises(FormatError, match="empty ICC profile"):
        parse(_with_crc(bytes(body)), KNOWN)
    body[lengths_end : lengths_end + 4] = struct.pack(">I", 2**32 - 1)
    with pytest.raises(FormatError, match="truncated"):
        parse(_with_crc(bytes(body)), KNOWN)
    with pytest.raises(FormatError, match="truncated"):
        parse(data[: lengths_end + 2], KNOWN)


def test_newer_flags_are_refused_before_layout_checks() -> None:
    """A future flag may add data, as the ICC flag did: an intact file is told "upgrade evc", not "corrupt"."""
    data = pack(Header(3, 1, "RGB", 77, 64, 48, 9), [b"abcd"])
    body = bytearray(data[:-4])
    body[21] = 0x08
    body += b"data a newer evc adds"
    with pytest.raises(FormatError, match="flags 0x08.*upgrade evc"):
        parse(_with_crc(bytes(body)), KNOWN)
    with pytest.raises(FormatError, match="unexpected bytes"):  # damaged, not newer: the CRC says so
        parse(bytes(body) + b"\0\0\0\0", KNOWN)


def test_version_1_files_are_still_read() -> None:
    """Version 1 had no flags byte; its files read as flags 0."""
    streams = [b"\x01\x02\x03\x04", b""]
    body = MAGIC + bytes([1]) + struct.pack(">BIBHIIIB", 8, 0xABCDEF01, 0, 150, 33, 17, 5, len(streams))
    body += b"".join(struct.pack(">I", len(s)) for s in streams) + b"".join(streams)
    header, out = parse(_with_crc(body), KNOWN)
    assert header == Header(8, 0xABCDEF01, "RGB", 150, 33, 17, 5, flags=0, version=1) and out == streams
    with pytest.raises(FormatError, match="truncated"):
        parse(body[:20], KNOWN)


def test_read_header_gives_the_header_without_the_streams(valid_file: bytes) -> None:
    """The Pillow plugin opens files lazily with read_header: the header parse gives, read from a file
    object that stops right after it; every invalid field is refused as parse refuses it."""
    header, streams = parse(valid_file, KNOWN)
    assert read_header(io.BytesIO(valid_file), KNOWN) == header
    icc = Header(3, 1, "L", 77, 64, 48, 9, flags=FLAG_ICC, icc_profile=b"profile")
    data = pack(icc, [b"abcd", b"ef"])
    stream = io.BytesIO(data)
    assert read_header(stream, KNOWN) == icc
    assert data[stream.tell() :] == b"abcdef" + data[-4:]
    for end in range(HEADER_BYTES + 8 + 4 + len(b"profile")):  # cut inside the header
        with pytest.raises(FormatError, match="^truncated file"):
            read_header(io.BytesIO(data[:end]), KNOWN)
    with pytest.raises(FormatError, match="wrong magic"):
        read_header(io.BytesIO(b"\x89PNG" + valid_file[4:]), KNOWN)
    for offset, value, message in [(4, 9, "newer than"), (5, 250, "unknown model"), (10, 7, "colour"),
                                   (11, 0, "q index 0"), (13, 0, "image size"), (21, 0x80, "flags 0x80"),
                                   (26, 0, "streams")]:
        body = bytearray(valid_file)
        field = {4: 1, 5: 1, 10: 1, 11: 2, 13: 4, 21: 1, 26: 1}[offset]
        body[offset : offset + field] = value.to_bytes(field, "big")
        with pytest.raises(FormatError, match=message):
            read_header(io.BytesIO(bytes(body)), KNOWN)
    version_1 = MAGIC + bytes([1]) + struct.pack(">BIBHIIIB", 8, 0xABCDEF01, 1, 150, 33, 17, 5, 1) + bytes(4)
    assert read_header(io.BytesIO(version_1), KNOWN) == Header(8, 0xABCDEF01, "L", 150, 33, 17, 5, version=1)

"""Structure-aware fuzzer of evc's decoder: container parser, header checks, entropy decoder, networks.

The contract it checks: for any input bytes, ``evc.file_info`` and ``Codec.decompress`` return the
right answer or raise :class:`evc.EVCError` with a message, within a CPU-time bound; never another
exception, a hang, a runaway allocation or a wrong image.

Why structure-aware: every file carries a CRC-32 over the whole file and one over its decoded symbols,
so blind byte mutations stop at the first checksum. Cases start from valid seeds (corpus/seeds), whose
fields (:class:`RawFile`) and streams are mutated and written back with any values, also those
``pack`` refuses, under a fresh container CRC. Some cases also forge the symbols CRC (the decoder is
run up to its symbol check to learn the CRC its symbols give), so damaged streams reach the synthesis
transform.

Targets: ``decoder`` (a mutated file through ``file_info`` and ``Codec.decompress``) and ``container``
(the same mutations plus blind byte edits through ``parse``; an accepted file must re-pack to its
bytes). The entropy coder alone is fuzzed by the hypothesis tests in tests/test_fuzz.py.

Oracles besides "only EVCError": the image has the size, colour mode (with "A" when the file holds an
alpha plane) and ICC profile ``file_info`` gives; a file with a seed's decoding-relevant header fields and symbols CRC decodes to that seed's
pixels (the same CRC means the same symbols); decoding twice gives the same pixels. Each execution
runs under a CPU-time budget (SIGPROF) with a wall-clock backstop (faulthandler) for hangs inside C
code, and long runs under an address-space limit. Codecs use seeded random weights, one thread and
a small ``max_pixels``, which bounds every execution's work. fuzz/README.md has the commands.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import hashlib
import itertools
import random
import re
import resource
import signal
import struct
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

import evc
import evc.alpha
from evc.bitstream.container import (
    COLOUR_CODES,
    FLAG_ALPHA,
    FLAG_EXIF,
    FLAG_ICC,
    FLAG_XMP,
    HEADER_BYTES,
    MAGIC,
    WRITABLE_VERSIONS,
    pack,
    parse,
)
from evc.entropy.coder import decode_substreams, encode_substreams
from evc.errors import EVCError
from evc.models.registry import MODELS_BY_ID, get_spec

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "corpus" / "seeds"
REGRESSIONS = HERE / "corpus" / "regressions"
FINDINGS = HERE / "findings"

FUZZ_MODELS = ("EVC-SS", "EVC-MS", "EVC-LL", "Scale-SS")  # the seeds' models
# Padded 128 x 128, the largest seed: an execution stays well under a second at one thread, and
# files declaring more must be refused before anything of that size exists.
FUZZ_MAX_PIXELS = 1 << 14
# At that limit the slowest legitimate execution (EVC-LL, forged CRC, decoded twice) takes ~1 s of CPU.
CPU_BUDGET_S = 5.0
WALL_BACKSTOP_S = 300.0  # a hang inside C code never returns to Python to see the CPU timer
EMPTY_ANS = b"\x00\x00\x00\x00"
M32 = 0xFFFFFFFF
TARGETS = {"decoder": 0.7, "container": 0.3}


# -- the file as fields ------------------------------------------------------------------------------
@dataclass
class RawFile:
    """An .evc file as field values, written back verbatim (unchecked) by :meth:`to_bytes`.

    ``count`` and ``lengths`` override the stream count and length fields (None: the true ones), and
    ``icc`` is written after the lengths whatever the flags say, so a file can lie about its layout.
    """

    version: int
    model_id: int
    fingerprint: int
    colour: int
    q_index: int
    width: int
    height: int
    flags: int
    symbols_crc: int
    streams: list[bytes]
    icc: bytes | None = None
    count: int | None = None
    lengths: list[int] | None = None
    exif: bytes | None = None  # version 4: written after the ICC profile, whatever the flags say
    xmp: bytes | None = None  # version 4: written after the EXIF block, whatever the flags say
    alpha: bytes | None = None  # version 4: written after the XMP packet, whatever the flags say

    def to_bytes(self) -> bytes:
        """The file under a valid container CRC (the layout of docs/format.md; unknown versions as 2)."""
        body = bytearray(MAGIC + bytes([self.version & 0xFF]))
        body += struct.pack(">BIBHII", self.model_id & 0xFF, self.fingerprint & M32, self.colour & 0xFF,
                            self.q_index & 0xFFFF, self.width & M32, self.height & M32)
        if self.version >= 2:
            body.append(self.flags & 0xFF)
        count = len(self.streams) if self.count is None else self.count
        body += struct.pack(">IB", self.symbols_crc & M32, count & 0xFF)
        lengths = [len(s) for s in self.streams] if self.lengths is None else self.lengths
        body += b"".join(struct.pack(">I", n & M32) for n in lengths)
        for block in (self.icc, self.exif, self.xmp, self.alpha):
            if block is not None:
                body += struct.pack(">I", len(block)) + block
        body += b"".join(self.streams)
        return bytes(body + struct.pack(">I", zlib.crc32(body)))

    @classmethod
    def from_bytes(cls, data: bytes) -> RawFile | None:
        """The fields of a file ``parse`` accepts; None for any other."""
        try:
            header, streams = parse(data)
        except EVCError:
            return None
        return cls(data[len(MAGIC)], header.model_id, header.weights_fingerprint, COLOUR_CODES[header.colour],
                   header.q_index, header.width, header.height, header.flags, header.symbols_crc, streams,
                   header.icc_profile, exif=header.exif, xmp=header.xmp, alpha=header.alpha)

    def copy(self) -> RawFile:
        return replace(self, streams=list(self.streams), lengths=None if self.lengths is None else list(self.lengths))


def reseal(data: bytes) -> bytes:
    """``data`` with its last 4 bytes replaced by the CRC-32 of the rest."""
    return data[:-4] + struct.pack(">I", zlib.crc32(data[:-4]))


# -- mutations ---------------------------------------------------------------------------------------
# Sizes around the 64-pixel padding and the harness's limit, then far over it and over the format's.
_SIZES = (1, 2, 3, 15, 16, 17, 31, 33, 63, 64, 65, 90, 127, 128, 0, 129, 256, 4096, 16384, 65536,
          2**31 - 1, 2**31, 2**32 - 1)
_INTERESTING_WORDS = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x0000FFFF)
_STREAM_OPS = ("bitflip", "word", "zero_words", "truncate", "truncate_odd", "extend", "delete_words",
               "insert_words", "splice", "zero_last_word", "empty", "empty_ans")
_FIELD_OPS = ("size", "size", "q", "colour", "flags", "icc", "metadata", "alpha", "alpha", "model", "fingerprint", "version",
              "symbols_crc", "count_field", "length_field", "move_boundary", "drop_stream", "insert_stream",
              "foreign_stream", "foreign_streams", "regroup")


def _random_words(rng: random.Random, count: int) -> bytes:
    return rng.getrandbits(32 * count).to_bytes(4 * count, "little") if count else b""


def mutate_stream(stream: bytes, rng: random.Random, pool: list[bytes]) -> tuple[bytes, str]:
    """One edit of a stream's bytes: ANS words damaged, cut, extended or spliced with another stream."""
    data = bytearray(stream)
    words = len(data) // 4
    op = rng.choice(_STREAM_OPS)
    if op == "bitflip" and data:
        for _ in range(rng.choice((1, 1, 2, 8))):
            bit = rng.randrange(len(data) * 8)
            data[bit // 8] ^= 1 << (bit % 8)
    elif op == "word" and words:
        at = 4 * rng.randrange(words)
        value = rng.getrandbits(32) if rng.random() < 0.5 else rng.choice(_INTERESTING_WORDS)
        data[at : at + 4] = struct.pack("<I", value)
    elif op == "zero_words" and words:
        start = rng.randrange(words)
        end = min(words, start + rng.randint(1, 8))
        data[4 * start : 4 * end] = bytes(4 * (end - start))
    elif op == "truncate":
        data = data[: 4 * rng.randint(0, max(words - 1, 0))]
    elif op == "truncate_odd" and data:
        data = data[: rng.randrange(len(data))]
    elif op == "extend":
        data += _random_words(rng, rng.randint(1, 16)) if rng.random() < 0.7 else bytes(4 * rng.randint(1, 4))
    elif op == "delete_words" and words:
        start = rng.randrange(words)
        del data[4 * start : 4 * (start + rng.randint(1, 4))]
    elif op == "insert_words":
        at = 4 * rng.randint(0, words)
        data[at:at] = _random_words(rng, rng.randint(1, 4))
    elif op == "splice" and pool:
        other = rng.choice(pool)
        data = data[: 4 * rng.randint(0, words)] + other[4 * rng.randint(0, len(other) // 4) :]
    elif op == "zero_last_word" and words:
        data[-4:] = bytes(4)
    elif op == "empty":
        data = bytearray()
    elif op == "empty_ans":
        data = bytearray(EMPTY_ANS)
    return bytes(data), op


def mutate(
    raw: RawFile, rng: random.Random, pool: list[RawFile], fingerprints: dict[int, int]
) -> tuple[RawFile, list[str]]:
    """Apply 1-5 mutations of fields and streams; returns the new file and the mutations' names.

    ``pool``: files whose streams may be spliced or swapped in; ``fingerprints``: model id ->
    fingerprint of the harness's codecs, so a file re-labelled as another model reaches its decoder.
    """
    out = raw.copy()
    ops: list[str] = []
    streams_pool = [s for f in pool for s in f.streams]
    for _ in range(min(5, 1 + int(rng.expovariate(0.9)))):
        if rng.random() < 0.45 and out.streams:  # stream content: what reaches the entropy decoder
            i = rng.randrange(len(out.streams))
            out.streams[i], op = mutate_stream(out.streams[i], rng, streams_pool)
            ops.append(f"stream[{i}].{op}")
            continue
        op = rng.choice(_FIELD_OPS)
        if op == "size":  # padding boundaries, the pixel limit, the format's limit
            size = rng.choice(_SIZES) if rng.random() < 0.8 else rng.randint(1, 140)
            if rng.random() < 0.5:
                out.width = size
            else:
                out.height = size
        elif op == "q":
            out.q_index = rng.choice((0, 1, 2, 50, 94, 255, 40000, 65535, rng.randrange(65536)))
        elif op == "colour":
            out.colour = rng.choice((0, 1, 2, 255))
        elif op == "flags":  # exact / skip_certain read otherwise than written, ICC, unknown bits
            out.flags = rng.choice((0, 1, 2, 3, 0x80, 0xFF, out.flags ^ (1 << rng.randrange(8))))
        elif op == "icc":  # a profile with or without its flag, possibly empty
            out.icc = rng.choice((b"", b"\x00" * 4, rng.randbytes(rng.randint(1, 64))))
            if rng.random() < 0.8:
                out.flags |= FLAG_ICC
        elif op == "metadata":  # version 4's EXIF / XMP blocks, with or without their flags and version
            block = rng.choice((b"", b"\x00" * 4, rng.randbytes(rng.randint(1, 64))))
            if rng.random() < 0.5:
                out.exif = block
            else:
                out.xmp = block
            if rng.random() < 0.8:
                out.flags |= FLAG_EXIF if out.exif is not None else 0
                out.flags |= FLAG_XMP if out.xmp is not None else 0
            if rng.random() < 0.8:
                out.version = 4
        elif op == "alpha":  # version 4's alpha plane (a WebP file): damaged, foreign, or without its flag
            block = out.alpha or b""
            choice = rng.randrange(5)
            if choice == 0:
                out.alpha = rng.choice((b"", b"\x00" * 4, rng.randbytes(rng.randint(1, 64))))
            elif choice == 1 and block:  # flipped bits inside the WebP (libwebp's parser and decoder)
                data = bytearray(block)
                for _ in range(rng.randint(1, 4)):
                    i = rng.randrange(len(data))
                    data[i] ^= 1 << rng.randrange(8)
                out.alpha = bytes(data)
            elif choice == 2 and block:
                out.alpha = block[: rng.randrange(len(block))]
            else:  # a valid lossless WebP of the file's size (decodes, with alpha), or of another size
                fits = 1 <= out.width <= 256 and 1 <= out.height <= 256 and rng.random() < 0.6
                height, width = (out.height, out.width) if fits else (rng.randint(1, 40), rng.randint(1, 40))
                plane = np.frombuffer(rng.randbytes(width * height), np.uint8).reshape(height, width)
                out.alpha = evc.alpha.encode_alpha(plane)
            if rng.random() < 0.8:
                out.flags |= FLAG_ALPHA
            if rng.random() < 0.8:
                out.version = 4
        elif op == "model":
            out.model_id = rng.choice([*MODELS_BY_ID, 0, 255])  # also known models the harness lacks
            if out.model_id in fingerprints and rng.random() < 0.8:
                out.fingerprint = fingerprints[out.model_id]  # reach the other model's decoder
        elif op == "fingerprint":
            out.fingerprint ^= 1 << rng.randrange(32)
        elif op == "version":
            out.version = rng.choice((0, 1, 1, 3, 4, 255))
        elif op == "symbols_crc":
            out.symbols_crc ^= 1 << rng.randrange(32)
        elif op == "count_field":
            out.count = rng.choice((0, 1, 2, 4, 255, len(out.streams) + 1, len(out.streams) - 1))
        elif op == "length_field" and out.streams:
            lengths = [len(s) for s in out.streams] if out.lengths is None else out.lengths
            i = rng.randrange(len(lengths))
            lengths[i] = rng.choice((0, lengths[i] + 1, lengths[i] - 1, lengths[i] + 4, 2**31, M32))
            out.lengths = lengths
        elif op == "move_boundary" and len(out.streams) >= 2:  # consistent lengths, other stream ends
            i = rng.randrange(len(out.streams) - 1)
            joined = out.streams[i] + out.streams[i + 1]
            cut = rng.randint(0, len(joined)) if rng.random() < 0.3 else 4 * rng.randint(0, len(joined) // 4)
            out.streams[i], out.streams[i + 1] = joined[:cut], joined[cut:]
        elif op == "drop_stream" and out.streams:
            del out.streams[rng.randrange(len(out.streams))]
        elif op == "insert_stream":
            stream = rng.choice((b"", EMPTY_ANS, _random_words(rng, 3), *out.streams[:1]))
            out.streams.insert(rng.randint(0, len(out.streams)), stream)
        elif op == "foreign_stream" and out.streams and streams_pool:  # valid ANS data, wrong symbols
            out.streams[rng.randrange(len(out.streams))] = rng.choice(streams_pool)
        elif op == "foreign_streams" and pool:
            out.streams = list(rng.choice(pool).streams)  # another file's streams under this header
        elif op == "regroup" and out.streams:  # the y streams re-split into another sub-stream count
            y = b"".join(out.streams[1:])
            parts = rng.choice((1, 2, 3, 4, 8, 9))
            cuts = sorted(4 * rng.randint(0, len(y) // 4) for _ in range(2 * parts - 1))
            out.streams = out.streams[:1] + [y[a:b] for a, b in itertools.pairwise([0, *cuts, len(y)])]
        else:
            continue
        ops.append(op)
    return out, ops


def havoc(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A blind byte edit (container target), re-sealed most of the time."""
    buf = bytearray(data)
    op = rng.choice(("flip", "set", "insert", "delete", "truncate", "header_byte"))
    if op == "flip" and buf:
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    elif op == "set" and buf:
        buf[rng.randrange(len(buf))] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
    elif op == "insert":
        at = rng.randint(0, len(buf))
        buf[at:at] = rng.randbytes(rng.randint(1, 8))
    elif op == "delete" and buf:
        at = rng.randrange(len(buf))
        del buf[at : at + rng.randint(1, 8)]
    elif op == "truncate":
        buf = buf[: rng.randint(0, len(buf))]
    elif op == "header_byte" and len(buf) > HEADER_BYTES:
        buf[rng.randrange(HEADER_BYTES)] = rng.randrange(256)
    if len(buf) >= 8 and rng.random() < 0.85:
        return reseal(bytes(buf)), op + "+reseal"
    return bytes(buf), op


# -- the harness -------------------------------------------------------------------------------------
class Finding(Exception):
    """An execution broke the decoder's contract (raised by the oracles)."""


class Hang(BaseException):
    """An execution outlived its CPU-time budget (a BaseException: no ``except Exception`` swallows it)."""


class _Captured(BaseException):  # passes any ``except Exception`` on its way out of the decoder
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value


class _CrcProbe:
    """Stands in for the header's symbols CRC: the decoder's comparison hands it the CRC it computed."""

    def __eq__(self, other: object) -> bool:
        raise _Captured(int(other))  # type: ignore[call-overload]

    __ne__ = __eq__
    __hash__ = None  # type: ignore[assignment]


@contextlib.contextmanager
def _patched(original: Any, replacement: Any) -> Iterator[None]:
    """Replace a function in every loaded evc module that imported it, wherever the decoder calls it from."""
    users = [m for name, m in list(sys.modules.items())
             if name.split(".")[0] == "evc" and getattr(m, original.__name__, None) is original]
    for module in users:
        setattr(module, original.__name__, replacement)
    try:
        yield
    finally:
        for module in users:
            setattr(module, original.__name__, original)


@contextlib.contextmanager
def cpu_budget(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` in this (main) thread once the process has used ``seconds`` more CPU time."""

    def expire(signum: int, frame: Any) -> None:
        raise Hang(f"execution used over {seconds:g} s of CPU time")

    previous = signal.signal(signal.SIGPROF, expire)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    faulthandler.dump_traceback_later(WALL_BACKSTOP_S, exit=True)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGPROF, previous)


def load_corpus(folder: Path) -> dict[str, bytes]:
    """The .evc files of a corpus folder by name."""
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.evc"))}


def pixel_digest(image: Any) -> str:
    return hashlib.sha256(image.mode.encode() + repr(image.size).encode() + image.tobytes()).hexdigest()


def decoding_key(data: bytes) -> tuple:
    """The header fields that, with the symbols (their CRC), determine the decoded image."""
    header, _ = parse(data)
    return (header.model_id, header.weights_fingerprint, header.colour, header.q_index, header.width,
            header.height, header.exact, header.symbols_crc)


@dataclass
class Harness:
    """The codecs (seeded random weights, one per model id), the seeds and their decoded pixels."""

    max_pixels: int = FUZZ_MAX_PIXELS
    codecs: dict[int, evc.Codec] = field(default_factory=dict)
    raw_seeds: list[RawFile] = field(default_factory=list)
    expected: dict[tuple, str] = field(default_factory=dict)  # decoding key -> pixel digest

    def setup(self, seed_folder: Path = SEEDS) -> Harness:
        torch.set_num_threads(1)  # the seeds' pixels were taken at one thread
        for name in FUZZ_MODELS:
            codec = evc.Codec(evc.create_model(name, seed=0), name, device="cpu")
            codec.max_pixels = self.max_pixels
            self.codecs[get_spec(name).model_id] = codec
        for name, data in load_corpus(seed_folder).items():
            raw = RawFile.from_bytes(data)
            if raw is None:
                raise RuntimeError(f"seed {name} is not a valid evc file")
            self.raw_seeds.append(raw)
            try:
                self.expected[decoding_key(data)] = pixel_digest(self.codec_for(data).decompress(data))
            except evc.FormatError:
                pass  # a float-arithmetic seed on another kind of CPU: refused, which is allowed
        return self

    @property
    def fingerprints(self) -> dict[int, int]:
        return {model_id: codec.fingerprint for model_id, codec in self.codecs.items()}

    def codec_for(self, data: bytes) -> evc.Codec:
        """The codec the header's model id names (after magic and version); the first one otherwise."""
        model_id = data[len(MAGIC) + 1] if len(data) > len(MAGIC) + 1 else -1
        return self.codecs.get(model_id, next(iter(self.codecs.values())))

    # -- decoder target ------------------------------------------------------------------------------
    def forge_symbols_crc(self, data: bytes) -> bytes:
        """``data`` with the symbols CRC its streams decode to; unchanged where decoding stops before
        the symbol check (then it stops there for the unforged file too)."""

        def probing_parse(*args: Any, **kwargs: Any) -> tuple:
            header, streams = parse(*args, **kwargs)
            return replace(header, symbols_crc=_CrcProbe()), streams

        try:
            with _patched(parse, probing_parse):
                self.codec_for(data).decompress(data)
        except _Captured as captured:
            raw = RawFile.from_bytes(data)
            assert raw is not None
            raw.symbols_crc = captured.value
            return raw.to_bytes()
        except EVCError:
            pass
        return data

    def check_decode(self, data: bytes, *, repeat: bool = False) -> str:
        """``file_info`` and ``decompress`` on ``data``: returns "decoded" or the error's message; raises
        :class:`Finding` (or lets the unexpected exception out) where the contract is broken."""
        try:
            info = evc.file_info(data)
        except EVCError:
            info = None
        codec = self.codec_for(data)
        try:
            image = codec.decompress(data)
        except EVCError as exc:
            if not str(exc):
                raise Finding(f"{type(exc).__name__} without a message") from exc
            return str(exc)
        if info is None:
            raise Finding("decompress returned an image for a file that file_info refuses")
        got = (image.size, image.mode, image.info.get("icc_profile"))
        mode = info.colour + ("A" if info.alpha_bytes is not None else "")
        if got != ((info.width, info.height), mode, info.icc_profile):
            raise Finding(f"decoded {got[:2]}, file_info says {info}")
        digest = pixel_digest(image)
        # The seeds have no alpha plane: their colours are what the header fields and symbols determine.
        colours = digest if info.alpha_bytes is None else pixel_digest(image.convert(info.colour))
        expected = self.expected.get(decoding_key(data))
        if expected is not None and colours != expected:
            raise Finding("decoded colours differ from the seed whose header fields and symbols CRC this file has")
        if repeat and pixel_digest(codec.decompress(data)) != digest:
            raise Finding("decoding the same file twice gave different pixels")
        return "decoded"

    def decoded_groups(self, data: bytes) -> list[dict[str, Any]] | None:
        """A valid file's symbols, one group per ``decode_substreams`` call (z, y step 1, y step 2) with
        the table indices and tables it used; None where decoding stops before the symbol check."""
        groups: list[dict[str, Any]] = []

        def recording(streams, table_index, tables, *, skip_certain=False, executor=None):  # noqa: ANN001, ANN202
            values = decode_substreams(streams, table_index, tables, skip_certain=skip_certain)
            groups.append({"count": len(streams), "index": table_index, "tables": tables,
                           "skip_certain": skip_certain, "values": values})
            return values

        with _patched(decode_substreams, recording):
            if self.forge_symbols_crc(data) is data:
                return None
        return groups

    def mutate_symbols(self, data: bytes, rng: random.Random) -> tuple[bytes, list[str]]:
        """Decode a file to its symbols, change a few and code them again: valid streams carrying a
        latent no encoder wrote (table edges, escapes, int32 extremes, values 2^32 away, which leave
        the int32 symbols CRC unchanged)."""
        groups = self.decoded_groups(data)
        if not groups:
            return data, ["symbols:undecodable"]
        # Mostly the last group: earlier ones change the tables the later groups are decoded with.
        g = len(groups) - 1 if rng.random() < 0.7 else rng.randrange(len(groups))
        group = groups[g]
        values = np.array(group["values"], dtype=np.int64)
        if values.size == 0:
            return data, ["symbols:empty"]
        tables = group["tables"]
        index = np.asarray(group["index"]).astype(np.int64).ravel()
        op = rng.choice(("plus_minus_one", "table_edge", "escape", "int32_extreme", "wrap_2_32"))
        at = np.array([rng.randrange(values.size) for _ in range(rng.randint(1, 4))])
        if op == "plus_minus_one":
            values[at] += np.array([rng.choice((-1, 1)) for _ in at])
        elif op == "table_edge":
            values[at] = tables.offsets[index[at]] + rng.choice((0, 1)) * (tables.sizes[index[at]] - 1)
        elif op == "escape":
            beyond = np.array([rng.randint(0, 1000) for _ in at])
            values[at] = tables.offsets[index[at]] + tables.sizes[index[at]] + beyond
        elif op == "int32_extreme":
            values[at] = np.array([rng.choice((2**31 - 1, -(2**31))) for _ in at])
        else:
            values[at] += np.array([rng.choice((-1, 1)) * 2**32 for _ in at])
        try:
            streams = encode_substreams(values, index, tables, group["count"], skip_certain=group["skip_certain"])
        except ValueError:
            return data, [f"symbols[{g}].{op}:uncodable"]
        raw = RawFile.from_bytes(data)
        assert raw is not None
        first = sum(previous["count"] for previous in groups[:g])
        raw.streams[first : first + group["count"]] = streams
        return raw.to_bytes(), [f"symbols[{g}].{op}"]

    def decoder_case(self, rng: random.Random) -> tuple[bytes, list[str], bool]:
        """(file, mutations, whether to forge its symbols CRC) for one decoder execution."""
        seed = rng.choice(self.raw_seeds)
        if rng.random() < 0.2:
            data, ops = self.mutate_symbols(seed.to_bytes(), rng)
            return data, ops, rng.random() < 0.5
        mutated, ops = mutate(seed, rng, self.raw_seeds, self.fingerprints)
        return mutated.to_bytes(), ops, rng.random() < 0.35

    # -- container target ----------------------------------------------------------------------------
    def container_case(self, rng: random.Random) -> tuple[bytes, list[str]]:
        mutated, ops = mutate(rng.choice(self.raw_seeds), rng, self.raw_seeds, self.fingerprints)
        data = mutated.to_bytes()
        for _ in range(rng.randint(0, 3)):
            data, op = havoc(data, rng)
            ops.append(op)
        return data, ops

    def check_container(self, data: bytes) -> str:
        """``file_info`` and ``parse`` on ``data``: an accepted file must be written back to its bytes
        by ``pack`` (current version) and by :class:`RawFile` (every version)."""
        with contextlib.suppress(EVCError):
            evc.file_info(data)
        try:
            header, streams = parse(data)
        except EVCError as exc:
            return str(exc)
        if data[len(MAGIC)] in WRITABLE_VERSIONS and pack(header, streams) != data:
            raise Finding("parse accepted a file that does not re-pack to the same bytes")
        raw = RawFile.from_bytes(data)
        if raw is None or raw.to_bytes() != data:
            raise Finding("parse read other fields than the file holds")
        return "parsed"


# -- running -----------------------------------------------------------------------------------------
def outcome_class(outcome: str) -> str:
    """An outcome without its numbers, to count how far executions get."""
    return re.sub(r"0x[0-9a-f]+|[0-9a-f]*[0-9][0-9a-f]*", "#", outcome.split(";")[0])[:90]


def _where(exc: BaseException) -> str:
    """The innermost evc frame of a traceback: findings with the same one are counted as one bug."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if ("/evc/" in f.filename or "evcfuzz" in f.filename) and f.name != "expire"]
    return f"{Path(frames[-1].filename).name}:{frames[-1].name}" if frames else "?"


def run(harness: Harness, seed: int, *, executions: int | None = None, seconds: float | None = None,
        targets: dict[str, float] | None = None, findings: Path | None = None) -> Counter:
    """Generate and check ``executions`` cases, or cases for ``seconds``. Returns how many ended in each
    (target, outcome class). ``findings`` None: raise AssertionError at the first contract breach (the
    tests); otherwise save each distinct one there (input and traceback) and go on."""
    rng = random.Random(seed)
    targets = targets or TARGETS
    names, weights = list(targets), list(targets.values())
    seen: Counter = Counter()
    found: set[str] = set()
    end = time.monotonic() + seconds if seconds is not None else float("inf")
    last_report = time.monotonic()
    for count in itertools.count(1):
        if (executions is not None and count > executions) or time.monotonic() > end:
            break
        target = rng.choices(names, weights)[0]
        if target == "decoder":
            data, ops, forge = harness.decoder_case(rng)
        else:
            (data, ops), forge = harness.container_case(rng), False
        if findings is not None:  # what a crash of this process leaves behind
            findings.mkdir(parents=True, exist_ok=True)
            (findings / "current.evc").write_bytes(data)
        try:
            with cpu_budget(CPU_BUDGET_S):
                if forge:
                    data = harness.forge_symbols_crc(data)
                if target == "decoder":
                    outcome = harness.check_decode(data, repeat=rng.random() < 0.05)
                else:
                    outcome = harness.check_container(data)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - anything else breaks the contract
            name = hashlib.sha1(data).hexdigest()[:12]
            if findings is None:
                saved = Path(tempfile.gettempdir()) / f"evcfuzz-{name}.evc"
                saved.write_bytes(data)
                raise AssertionError(f"{target} execution broke the contract ({type(exc).__name__}: {exc}); "
                                     f"ops {ops}; input saved to {saved} (fuzz/evcfuzz.py --replay {saved})") from exc
            signature = f"{type(exc).__name__} in {_where(exc)}"
            seen[(target, f"FINDING {signature}")] += 1
            if signature not in found:
                found.add(signature)
                (findings / f"{name}.evc").write_bytes(data)
                detail = "".join(traceback.format_exception(exc))
                (findings / f"{name}.txt").write_text(f"{signature}\ntarget: {target}\nops: {ops}\n\n{detail}")
                print(f"[finding] {signature} -> {findings / name}.evc", flush=True)
            continue
        seen[(target, outcome_class(outcome))] += 1
        if findings is not None and time.monotonic() - last_report > 60:
            last_report = time.monotonic()
            print(f"{count} executions, {len(found)} findings", flush=True)
    return seen


def replay(paths: list[Path], max_pixels: int) -> int:
    """Run saved inputs through both targets and print each outcome; returns how many broke the contract."""
    harness = Harness(max_pixels=max_pixels).setup()
    breaches = 0
    for path in paths:
        data = path.read_bytes()
        try:
            with cpu_budget(CPU_BUDGET_S + 2e-6 * max_pixels):
                harness.check_container(data)
                print(f"{path}: {harness.check_decode(data, repeat=True)}")
        except BaseException:  # noqa: BLE001 - report every kind of breach
            breaches += 1
            print(f"{path}: CONTRACT BROKEN\n{traceback.format_exc()}")
    return breaches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="how long to fuzz")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--targets", default="decoder=0.7,container=0.3", help="target weights, e.g. decoder=1")
    parser.add_argument("--memory-mb", type=int, default=2048, help="address-space headroom (0: no limit)")
    parser.add_argument("--out", type=Path, default=FINDINGS, help="where findings go")
    parser.add_argument("--replay", type=Path, nargs="+", metavar="FILE", help="check these inputs once and stop")
    parser.add_argument("--max-pixels", type=int, default=FUZZ_MAX_PIXELS, help="the codecs' limit for --replay")
    args = parser.parse_args(argv)
    if args.replay:
        return 1 if replay(args.replay, args.max_pixels) else 0
    targets = {k: float(v) for k, v in (item.split("=") for item in args.targets.split(","))}
    if set(targets) - set(TARGETS):
        parser.error(f"targets are {sorted(TARGETS)}")
    harness = Harness().setup()
    if args.memory_mb:  # headroom above what torch and the models already map
        with open("/proc/self/status") as status:
            mapped = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
        limit = mapped + args.memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    started = time.monotonic()
    seen = run(harness, args.seed, seconds=args.minutes * 60, targets=targets, findings=args.out)
    total = sum(seen.values())
    print(f"{total} executions in {time.monotonic() - started:.0f} s; outcomes:")
    for (target, outcome), n in seen.most_common():
        print(f"{n:8d}  {target}: {outcome}")
    (args.out / "current.evc").unlink(missing_ok=True)
    return 1 if any(outcome.startswith("FINDING") for _, outcome in seen) else 0


if __name__ == "__main__":
    sys.exit(main())

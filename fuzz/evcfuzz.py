"""Structure-aware fuzzer for evc's decoder: the container parser, the entropy coder and the full decoder.

The decoder's contract: for any input bytes, ``Codec.decompress`` and ``evc.file_info`` either return the
correct result or raise :class:`evc.EVCError` with a clear message; never another exception type, never
a hang, never a huge allocation, never a wrong image.

Why structure-aware: every .evc file carries a CRC-32 over the whole file and a CRC-32 of every decoded
symbol, so blind byte mutations stop at the first checksum. The mutator here parses a valid file into
its fields (:class:`RawFile`), mutates fields and streams, writes it back with any field values (also
those :func:`evc.bitstream.container.pack` refuses) and re-seals the container CRC, so the mutated
content reaches the entropy decoder and the networks. Some executions also *forge* the symbols CRC: the
decoder is run once to learn the CRC its symbols give, the value is written into the header, and the
re-sealed file then reaches the synthesis transform.

Targets (one execution = one generated case):
- ``decoder``: a mutated seed through ``file_info`` and ``Codec.decompress`` (codecs with seeded random
  weights, a small ``max_pixels`` so executions stay fast).
- ``container``: raw byte mutations (plus the structural ones) through ``parse`` and ``file_info``;
  an accepted file must re-pack to the same bytes.
- ``coder``: ``decode_symbols`` / ``decode_substreams`` directly: random words and mutated valid
  streams with random table indices, ``skip_certain`` on and off; valid streams must round-trip.

Oracles besides "only EVCError": the image has the size and colour mode the header declares and agrees
with ``file_info``; a file whose decoding-relevant header fields and symbols CRC equal a seed's decodes
to that seed's pixels (a CRC match means the same symbols); decoding is deterministic.

Watchdogs: each execution runs in a worker process under an address-space limit (``RLIMIT_AS``, so a
runaway allocation raises MemoryError or kills the worker) while the parent kills a worker whose
execution outlives a deadline that grows with the file's declared (padded) pixel count: a hang.

Run ``python fuzz/evcfuzz.py --help``; fuzz/README.md has the commands.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import random
import resource
import signal
import struct
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
SEEDS = CORPUS / "seeds"
REGRESSIONS = CORPUS / "regressions"
FINDINGS = HERE / "findings"

# Seeds come from these models; the decoder target decodes each file with the codec its header names.
FUZZ_MODELS = ("EVC-SS", "EVC-MS", "EVC-LL", "Scale-SS")
# Decoding limit in the harness: padded 128 x 128, the largest seed. Keeps an execution under ~0.2 s
# while files declaring more must be refused before anything of that size exists.
FUZZ_MAX_PIXELS = 1 << 14
MAGIC = b"\x89EVC"
M32 = 0xFFFFFFFF
EMPTY_ANS = b"\x00\x00\x00\x00"
# Per-execution deadline: a fixed allowance (process noise, a shared CPU) plus a bound per padded pixel
# the decoder may process (measured ~2 us/pixel for EVC-LL at one thread; 50 leaves room for a loaded machine).
DEADLINE_BASE_S = 20.0
DEADLINE_PER_PIXEL_S = 50e-6
# An execution that finishes but takes longer than this is reported as "slow": at the harness's limit
# the slowest legitimate one (EVC-LL at 128 x 128, forged CRC: two decodes) takes ~0.6 s at one thread.
SLOW_S = 3.0


# -- the file as fields ------------------------------------------------------------------------------
@dataclass
class RawFile:
    """An .evc file as raw field values, written back verbatim (no validation) by :meth:`to_bytes`.

    ``count`` and ``lengths`` override the stream count and length fields (None: the true ones), so a
    file can lie about its streams; ``crc`` None re-seals the container CRC.
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
    count: int | None = None
    lengths: list[int] | None = None
    magic: bytes = MAGIC
    extra: bytes = b""
    crc: int | None = None

    def to_bytes(self) -> bytes:
        body = bytearray(self.magic + bytes([self.version & 0xFF]))
        body += struct.pack(
            ">BIBHII", self.model_id & 0xFF, self.fingerprint & M32, self.colour & 0xFF,
            self.q_index & 0xFFFF, self.width & M32, self.height & M32,
        )
        if self.version >= 2:  # version 1 has no flags byte; unknown versions are written like 2
            body.append(self.flags & 0xFF)
        count = len(self.streams) if self.count is None else self.count
        body += struct.pack(">IB", self.symbols_crc & M32, count & 0xFF)
        lengths = [len(s) for s in self.streams] if self.lengths is None else self.lengths
        body += b"".join(struct.pack(">I", n & M32) for n in lengths)
        for stream in self.streams:
            body += stream
        body += self.extra
        body += struct.pack(">I", zlib.crc32(body) if self.crc is None else self.crc & M32)
        return bytes(body)

    @classmethod
    def from_bytes(cls, data: bytes) -> RawFile | None:
        """Leniently split a file whose header and stream lengths fit in ``data`` (CRC not checked)."""
        if len(data) < 5:
            return None
        version = data[4]
        flags_size = 1 if version >= 2 else 0
        header = 5 + 16 + flags_size + 5
        if len(data) < header:
            return None
        model_id, fingerprint, colour, q_index, width, height = struct.unpack_from(">BIBHII", data, 5)
        flags = data[21] if flags_size else 0
        symbols_crc, count = struct.unpack_from(">IB", data, 21 + flags_size)
        if len(data) < header + 4 * count + 4:
            return None
        lengths = struct.unpack_from(f">{count}I", data, header)
        offset = header + 4 * count
        if offset + sum(lengths) + 4 > len(data):
            return None
        streams = []
        for n in lengths:
            streams.append(data[offset : offset + n])
            offset += n
        return cls(
            version, model_id, fingerprint, colour, q_index, width, height, flags, symbols_crc, streams,
            magic=data[:4], extra=data[offset:-4],
        )

    def copy(self) -> RawFile:
        return replace(self, streams=list(self.streams), lengths=None if self.lengths is None else list(self.lengths))


def symbols_crc_offset(data: bytes) -> int:
    """Offset of the symbols CRC field (the flags byte moves it in version 2)."""
    return 22 if data[4] >= 2 else 21


def reseal(body_and_crc: bytes) -> bytes:
    """Replace the last 4 bytes by the CRC-32 of the rest."""
    body = body_and_crc[:-4]
    return body + struct.pack(">I", zlib.crc32(body))


# -- mutations ---------------------------------------------------------------------------------------
_SMALL_SIZES = (1, 2, 3, 15, 16, 17, 31, 33, 63, 64, 65, 90, 127, 128)
_LARGE_SIZES = (0, 129, 255, 256, 1000, 4096, 16383, 16384, 65535, 65536, 1 << 20, 2**31 - 1, 2**31, 2**32 - 1)
_INTERESTING_WORDS = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x00010000, 0x0000FFFF)


def _random_words(rng: random.Random, count: int) -> bytes:
    return b"".join(struct.pack("<I", rng.getrandbits(32)) for _ in range(count))


def _pick_size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(_SMALL_SIZES)
    if roll < 0.8:
        return rng.randint(1, 140)
    return rng.choice(_LARGE_SIZES)


def _mutate_stream(stream: bytes, rng: random.Random, pool: list[bytes]) -> tuple[bytes, str]:
    """One content mutation of a stream's bytes."""
    data = bytearray(stream)
    words = len(data) // 4
    op = rng.choice(
        ("bitflip", "bitflips", "byte", "word", "interesting_word", "zero_words", "truncate", "truncate_odd",
         "extend", "delete_words", "insert_words", "splice", "random_same_length", "reverse_words",
         "zero_last_word", "empty", "empty_ans", "duplicate_half")
    )
    if op in ("bitflip", "bitflips") and data:
        for _ in range(1 if op == "bitflip" else rng.randint(2, 16)):
            bit = rng.randrange(len(data) * 8)
            data[bit // 8] ^= 1 << (bit % 8)
    elif op == "byte" and data:
        data[rng.randrange(len(data))] = rng.randrange(256)
    elif op in ("word", "interesting_word") and words:
        at = 4 * rng.randrange(words)
        value = rng.getrandbits(32) if op == "word" else rng.choice(_INTERESTING_WORDS)
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
        del data[4 * start : 4 * min(words, start + rng.randint(1, 4))]
    elif op == "insert_words":
        at = 4 * rng.randint(0, words)
        data[at:at] = _random_words(rng, rng.randint(1, 4))
    elif op == "splice" and pool:
        other = rng.choice(pool)
        cut = 4 * rng.randint(0, words)
        data = data[:cut] + other[4 * rng.randint(0, len(other) // 4) :]
    elif op == "random_same_length":
        data = bytearray(_random_words(rng, max(words, 1)))
    elif op == "reverse_words" and words:
        data = bytearray(b"".join(data[4 * i : 4 * i + 4] for i in reversed(range(words))))
    elif op == "zero_last_word" and words:
        data[-4:] = bytes(4)
    elif op == "empty":
        data = bytearray()
    elif op == "empty_ans":
        data = bytearray(EMPTY_ANS)
    elif op == "duplicate_half" and words:
        data += data[: 4 * (words // 2)]
    return bytes(data), op


def mutate(
    raw: RawFile, rng: random.Random, pool: list[RawFile], fingerprints: dict[int, int]
) -> tuple[RawFile, list[str]]:
    """Apply 1-5 structure-aware mutations; returns the new file and the names of the mutations.

    ``pool``: other files (streams to splice or swap in); ``fingerprints``: model id -> fingerprint of
    the harness's codec, so a file can be re-labelled as another model and still reach its decoder.
    """
    out = raw.copy()
    ops: list[str] = []
    streams_pool = [s for f in pool for s in f.streams]
    for _ in range(min(5, 1 + int(rng.expovariate(0.9)))):
        roll = rng.random()
        if roll < 0.45 and out.streams:  # stream content: the most productive by far
            i = rng.randrange(len(out.streams))
            out.streams[i], op = _mutate_stream(out.streams[i], rng, streams_pool)
            ops.append(f"stream[{i}].{op}")
            continue
        op = rng.choice(
            ("size", "size", "swap_size", "q", "colour", "flags", "model", "fingerprint", "version",
             "symbols_crc", "count_field", "length_field", "move_boundary", "drop_stream", "duplicate_stream",
             "insert_stream", "swap_streams", "foreign_stream", "foreign_streams", "regroup", "extra", "magic",
             "container_crc")
        )
        if op == "size":
            if rng.random() < 0.5:
                out.width = _pick_size(rng)
            else:
                out.height = _pick_size(rng)
        elif op == "swap_size":
            out.width, out.height = out.height, out.width
        elif op == "q":
            out.q_index = rng.choice((0, 1, 2, 10, 50, 94, 100, 255, 1000, 40000, 65535, rng.randrange(65536)))
        elif op == "colour":
            out.colour = rng.choice((0, 1, 2, 255))
        elif op == "flags":
            out.flags = rng.choice((0, 1, 2, 3, 4, 8, 0x80, 0xFF, out.flags ^ (1 << rng.randrange(8))))
        elif op == "model":
            out.model_id = rng.choice(list(fingerprints) + [0, 2, 11, 255])
            if out.model_id in fingerprints and rng.random() < 0.8:
                out.fingerprint = fingerprints[out.model_id]  # reach the other model's decoder
        elif op == "fingerprint":
            out.fingerprint = rng.choice((0, M32, out.fingerprint ^ 1, rng.getrandbits(32)))
        elif op == "version":
            out.version = rng.choice((0, 1, 1, 2, 3, 255))
        elif op == "symbols_crc":
            out.symbols_crc = rng.choice((0, out.symbols_crc ^ 1, rng.getrandbits(32)))
        elif op == "count_field":
            out.count = rng.choice((0, 1, 2, 3, 4, 5, 7, 17, 255, len(out.streams) + 1, len(out.streams) - 1))
        elif op == "length_field" and out.streams:
            lengths = [len(s) for s in out.streams] if out.lengths is None else out.lengths
            i = rng.randrange(len(lengths))
            lengths[i] = rng.choice((0, 1, lengths[i] + 1, lengths[i] - 1, lengths[i] + 4, 2**31, M32))
            out.lengths = lengths
        elif op == "move_boundary" and len(out.streams) >= 2:
            i = rng.randrange(len(out.streams) - 1)
            joined = out.streams[i] + out.streams[i + 1]
            cut = rng.randint(0, len(joined)) if rng.random() < 0.3 else 4 * rng.randint(0, len(joined) // 4)
            out.streams[i], out.streams[i + 1] = joined[:cut], joined[cut:]
        elif op == "drop_stream" and out.streams:
            del out.streams[rng.randrange(len(out.streams))]
        elif op == "duplicate_stream" and out.streams:
            i = rng.randrange(len(out.streams))
            out.streams.insert(i, out.streams[i])
        elif op == "insert_stream":
            out.streams.insert(rng.randint(0, len(out.streams)), rng.choice((b"", EMPTY_ANS, _random_words(rng, 3))))
        elif op == "swap_streams" and len(out.streams) >= 2:
            i, j = rng.sample(range(len(out.streams)), 2)
            out.streams[i], out.streams[j] = out.streams[j], out.streams[i]
        elif op == "foreign_stream" and out.streams and streams_pool:
            out.streams[rng.randrange(len(out.streams))] = rng.choice(streams_pool)
        elif op == "foreign_streams" and pool:
            out.streams = list(rng.choice(pool).streams)  # another file's streams under this header
        elif op == "regroup" and out.streams:
            # Re-split the y streams into another sub-stream count: same bytes, other boundaries.
            y = b"".join(out.streams[1:])
            parts = rng.choice((1, 2, 3, 4, 8, 9))
            cuts = sorted(4 * rng.randint(0, len(y) // 4) for _ in range(2 * parts - 1))
            bounds = [0, *cuts, len(y)]
            out.streams = out.streams[:1] + [y[a:b] for a, b in itertools.pairwise(bounds)]
        elif op == "extra":
            out.extra = bytes(rng.randint(1, 8))
        elif op == "magic":
            out.magic = rng.choice((b"\x89EVc", b"EVC\x89", b"\x00\x00\x00\x00", b"\x89PNG"))
        elif op == "container_crc":
            out.crc = rng.getrandbits(32)
        else:
            continue
        ops.append(op)
    return out, ops


def havoc(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Blind byte mutations (for the container target), re-sealed most of the time."""
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
        buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif op == "delete" and buf:
        at = rng.randrange(len(buf))
        del buf[at : at + rng.randint(1, 8)]
    elif op == "truncate":
        buf = buf[: rng.randint(0, len(buf))]
    elif op == "header_byte" and len(buf) > 40:
        buf[rng.randrange(40)] = rng.randrange(256)
    if len(buf) >= 8 and rng.random() < 0.85:
        return reseal(bytes(buf)), op + "+reseal"
    return bytes(buf), op


# -- seeds -------------------------------------------------------------------------------------------
def load_corpus(folder: Path) -> dict[str, bytes]:
    """Every file of a corpus folder by name (manifests and notes excluded)."""
    if not folder.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix == ".evc"}


# -- executing one case ------------------------------------------------------------------------------
class Finding(Exception):
    """An execution broke the decoder's contract (raised by the oracles, reported by the harness)."""


class _Captured(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value


class _CrcProbe:
    """Stands in for the header's symbols CRC: the decoder's comparison hands it the CRC it computed."""

    def __ne__(self, other: object) -> bool:
        raise _Captured(int(other))  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        raise _Captured(int(other))  # type: ignore[arg-type]

    __hash__ = None  # type: ignore[assignment]


def padded_pixels(width: int, height: int) -> int:
    return (-(-width // 64) * 64) * (-(-height // 64) * 64)


def deadline_for(data: bytes) -> float:
    """Wall-clock budget of one execution: base plus a bound per declared padded pixel (capped by the
    harness's max_pixels, since larger files must be refused at once)."""
    pixels = 0
    if len(data) >= 21:
        width, height = struct.unpack_from(">II", data, 13)
        pixels = min(padded_pixels(width, height), FUZZ_MAX_PIXELS)
    return DEADLINE_BASE_S + DEADLINE_PER_PIXEL_S * pixels


@dataclass
class Harness:
    """The codecs, seeds and per-seed expected pixels one process needs to run cases."""

    max_pixels: int = FUZZ_MAX_PIXELS
    models: tuple[str, ...] = FUZZ_MODELS
    codecs: dict[int, Any] = field(default_factory=dict)  # model id -> Codec
    seeds: dict[str, bytes] = field(default_factory=dict)
    raw_seeds: list[RawFile] = field(default_factory=list)
    expected: dict[tuple, str] = field(default_factory=dict)  # decoding key -> sha256 of the pixels
    _tables: list[Any] = field(default_factory=list)

    def setup(self, seed_folder: Path = SEEDS) -> Harness:
        import torch

        import evc
        from evc.models.registry import get_spec

        torch.set_num_threads(1)  # one thread: no oversubscription on a shared CPU, stable timings
        for name in self.models:
            codec = evc.Codec(evc.create_model(name, seed=0), name, device="cpu")
            codec.max_pixels = self.max_pixels
            self.codecs[get_spec(name).model_id] = codec
        self.seeds = load_corpus(seed_folder)
        for name, data in self.seeds.items():
            raw = RawFile.from_bytes(data)
            if raw is None:
                raise RuntimeError(f"seed {name} is not a parseable evc file")
            self.raw_seeds.append(raw)
            try:
                image = self.codec_for(data).decompress(data)
            except evc.FormatError:
                continue  # a float-arithmetic seed on another kind of CPU: refused, which is allowed
            self.expected[self.decoding_key(data)] = pixel_digest(image)
        return self

    @property
    def fingerprints(self) -> dict[int, int]:
        return {model_id: codec.fingerprint for model_id, codec in self.codecs.items()}

    def codec_for(self, data: bytes) -> Any:
        """The harness codec the header names; the first one for an unknown or missing model id (its
        decoder must then refuse the file)."""
        if len(data) > 5 and data[5] in self.codecs:
            return self.codecs[data[5]]
        return next(iter(self.codecs.values()))

    @staticmethod
    def decoding_key(data: bytes) -> tuple:
        """The header fields that, with the symbols, determine the decoded image."""
        from evc.bitstream.container import parse

        header, _ = parse(data)
        return (header.model_id, header.weights_fingerprint, header.colour, header.q_index, header.width,
                header.height, header.exact, header.symbols_crc)

    # -- decoder target ------------------------------------------------------------------------------
    def forge_symbols_crc(self, data: bytes) -> bytes:
        """``data`` with the symbols CRC its streams decode to, or unchanged where decoding stops earlier.

        Runs the decoder up to its symbol check (the probe raises there), so anything that breaks
        before it breaks for the unforged file too."""
        from evc.bitstream.container import parse
        from evc.errors import EVCError
        from evc.models.evc import CodedLatent, CodingOptions
        from evc.models.registry import MODELS_BY_ID
        from evc.models.variable_rate import q_index_to_scale

        try:
            header, streams = parse(data, known_model_ids=set(MODELS_BY_ID))
        except EVCError:
            return data
        codec = self.codec_for(data)
        if (header.model_id != codec.spec.model_id or header.weights_fingerprint != codec.fingerprint
                or padded_pixels(header.width, header.height) > codec.max_pixels):
            return data
        try:
            options = CodingOptions.for_streams(len(streams), header.exact, header.skip_certain)
            codec.model.decompress_latent(
                CodedLatent(streams, _CrcProbe()),  # type: ignore[arg-type]
                -(-header.height // 64) * 64, -(-header.width // 64) * 64, q_index_to_scale(header.q_index), options,
            )
        except _Captured as captured:
            at = symbols_crc_offset(data)
            return reseal(data[:at] + struct.pack(">I", captured.value) + data[at + 4 :])
        except EVCError:
            return data
        return data

    def check_decode(self, data: bytes, *, repeat: bool = False) -> str:
        """Run file_info and decompress on ``data``; returns the outcome ("decoded" or the error's
        message) and raises :class:`Finding` (or lets an unexpected exception out) on a contract breach."""
        import evc
        from evc.errors import EVCError

        try:
            info = evc.file_info(data)
        except EVCError:
            info = None
        codec = self.codec_for(data)
        try:
            image = codec.decompress(data)
        except EVCError as exc:
            message = str(exc)
            if not message:
                raise Finding(f"{type(exc).__name__} without a message") from exc
            return message
        if info is None:
            raise Finding("decompress returned an image for a file that file_info refuses")
        if image.size != (info.width, info.height) or image.mode != info.colour:
            raise Finding(f"decoded {image.mode} {image.size}, header says {info.colour} {info.width}x{info.height}")
        digest = pixel_digest(image)
        expected = self.expected.get(self.decoding_key(data))
        if expected is not None and digest != expected:
            raise Finding("decoded pixels differ from the seed whose header fields and symbols CRC this file has")
        if repeat and pixel_digest(codec.decompress(data)) != digest:
            raise Finding("decoding the same file twice gave different pixels")
        return "decoded"

    def decoder_case(self, rng: random.Random) -> tuple[bytes, list[str], bool]:
        """(file, mutations, forge symbols CRC) for one decoder execution."""
        seed = rng.choice(self.raw_seeds)
        if rng.random() < 0.2:
            data, ops = self.mutate_symbols(seed.to_bytes(), rng)
            return data, ops, rng.random() < 0.5
        mutated, ops = mutate(seed, rng, self.raw_seeds, self.fingerprints)
        return mutated.to_bytes(), ops, rng.random() < 0.35

    def decoded_groups(self, data: bytes) -> list[dict[str, Any]] | None:
        """Decode a valid file's streams into their symbols, one group per ``decode_substreams`` call
        (z, y step 1, y step 2), with the table indices and tables each used; None where it fails."""
        from unittest import mock

        import evc.models.evc as evc_model

        groups: list[dict[str, Any]] = []
        original = evc_model.decode_substreams

        def recording(streams, table_index, tables, *, skip_certain=False, executor=None):
            values = original(streams, table_index, tables, skip_certain=skip_certain)
            groups.append({"count": len(streams), "index": table_index, "tables": tables,
                           "skip_certain": skip_certain, "values": values})
            return values

        with mock.patch.object(evc_model, "decode_substreams", recording):
            if self.forge_symbols_crc(data) is data:  # stopped before the symbol check: not decodable
                return None
        return groups

    def mutate_symbols(self, data: bytes, rng: random.Random) -> tuple[bytes, list[str]]:
        """Decode a file to its symbols, change some, and code them again: valid streams carrying a
        latent no encoder wrote (values at and beyond the tables' edges, int32 extremes, and values
        2^32 away from the true ones, which leave the int32 symbols CRC unchanged)."""
        import numpy as np

        from evc.entropy.coder import encode_substreams

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
        op = rng.choice(("plus_minus_one", "table_edge", "escape", "int32_extreme", "wrap_2_32", "zero_all", "random"))
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
        elif op == "wrap_2_32":
            values[at] += np.array([rng.choice((-1, 1)) * 2**32 for _ in at])
        elif op == "zero_all":
            values[:] = 0
        else:
            values[at] = np.array([rng.randint(-300, 300) for _ in at])
        try:
            streams = encode_substreams(values, index, tables, group["count"], skip_certain=group["skip_certain"])
        except ValueError:
            return data, [f"symbols[{g}].{op}:uncodable"]
        raw = RawFile.from_bytes(data)
        assert raw is not None
        first = sum(previous["count"] for previous in groups[:g])
        raw.streams[first : first + group["count"]] = streams
        return raw.to_bytes(), [f"symbols[{g}].{op}"]

    # -- container target ----------------------------------------------------------------------------
    def container_case(self, rng: random.Random) -> tuple[bytes, list[str]]:
        data, ops = self.decoder_case(rng)[:2]
        for _ in range(rng.randint(0, 3)):
            data, op = havoc(data, rng)
            ops.append(op)
        return data, ops

    def check_container(self, data: bytes) -> str:
        import evc
        from evc.bitstream.container import FORMAT_VERSION, pack, parse
        from evc.errors import EVCError

        try:
            evc.file_info(data)
        except EVCError:
            pass
        try:
            header, streams = parse(data)
        except EVCError as exc:
            return str(exc)
        if data[4] == FORMAT_VERSION and pack(header, streams) != data:
            raise Finding("parse accepted a file that does not re-pack to the same bytes")
        if data[4] != FORMAT_VERSION:
            raw = RawFile.from_bytes(data)
            if raw is None or raw.streams != streams or (raw.width, raw.height, raw.q_index) != (
                header.width, header.height, header.q_index
            ):
                raise Finding("a version-1 file parsed into other fields than its bytes hold")
        return "parsed"

    # -- coder target --------------------------------------------------------------------------------
    def tables(self) -> list[Any]:
        """Table sets for the coder target: the Gaussian tables, a model's z tables, small random ones."""
        if not self._tables:
            import numpy as np

            from evc.entropy.coder import SymbolTables
            from evc.models.evc import gaussian_tables

            rng = np.random.default_rng(1)
            pmfs = []
            for _ in range(12):
                size = int(rng.integers(1, 9))
                pmf = rng.dirichlet(np.full(size, 0.3)) * (1 - float(rng.choice([1e-9, 1e-5, 1e-2])))
                pmfs.append((pmf, int(rng.integers(-5, 5))))
            pmfs.append((np.array([1.0 - 1e-6]), 0))  # a certain one-entry table: only the escape differs
            pmfs.append((np.array([1e-7, 1 - 2e-7, 1e-7]), -3))
            self._tables = [gaussian_tables(), next(iter(self.codecs.values())).model.z_tables(), SymbolTables(pmfs)]
        return self._tables

    def coder_case(self, rng: random.Random) -> dict[str, Any]:
        """A stream (or sub-streams), table indices and flags for one coder execution."""
        import numpy as np

        from evc.entropy.coder import encode_substreams

        tables_id = rng.randrange(3)
        tables = self.tables()[tables_id]
        nrng = np.random.default_rng(rng.getrandbits(64))
        size = rng.choice((0, 1, 2, 5, 64, 300, 2000, rng.randint(0, 5000)))
        if rng.random() < 0.5:
            index = nrng.integers(0, len(tables), size)
        else:  # few tables, like a real latent
            index = nrng.choice(nrng.integers(0, len(tables), rng.randint(1, 4)), size)
        skip = rng.random() < 0.5
        count = rng.choice((1, 1, 2, 3, 8))
        ops: list[str] = []
        if rng.random() < 0.25:
            streams = [_random_words(rng, rng.choice((0, 1, 2, 5, 50))) for _ in range(count)]
            ops.append("random_words")
            symbols = None
        else:
            symbols = _plausible_symbols(tables, index, nrng)
            streams = encode_substreams(symbols, index, tables, count, skip_certain=skip)
            if rng.random() < 0.8:
                pool = list(streams)
                for _ in range(rng.randint(1, 3)):
                    if rng.random() < 0.85 and streams:
                        i = rng.randrange(len(streams))
                        streams[i], op = _mutate_stream(streams[i], rng, pool)
                        ops.append(f"stream[{i}].{op}")
                    else:
                        streams = rng.choice((streams[:-1], streams + [EMPTY_ANS], streams[::-1], streams * 2))
                        ops.append("stream_list")
        if rng.random() < 0.1:
            skip = not skip  # the decoder told the other setting than the encoder used
            ops.append("skip_mismatch")
        return {"tables": tables_id, "index": index.astype(np.uint8).tobytes(), "skip_certain": skip,
                "streams": streams, "symbols": None if symbols is None or ops else symbols.tolist(), "ops": ops}

    def check_coder(self, case: dict[str, Any]) -> str:
        import numpy as np

        from evc.entropy.coder import decode_substreams, encode_substreams
        from evc.errors import FormatError

        tables = self.tables()[case["tables"]]
        index = np.frombuffer(case["index"], dtype=np.uint8)
        try:
            values = decode_substreams(case["streams"], index, tables, skip_certain=case["skip_certain"])
        except FormatError as exc:
            if case["symbols"] is not None:
                raise Finding(f"a valid stream was refused: {exc}") from exc
            return str(exc)
        if values.shape != index.shape or values.dtype != np.int64:
            raise Finding(f"decoded {values.dtype} {values.shape} for {index.size} symbols")
        if case["symbols"] is not None and values.tolist() != case["symbols"]:
            raise Finding("a valid stream decoded to other symbols")
        # Whatever is accepted must be codable: the decoded symbols round-trip through the encoder.
        streams = encode_substreams(values, index, tables, len(case["streams"]), skip_certain=case["skip_certain"])
        again = decode_substreams(streams, index, tables, skip_certain=case["skip_certain"])
        if not np.array_equal(again, values):
            raise Finding("decoded symbols do not round-trip through the encoder")
        return "decoded"


def _plausible_symbols(tables: Any, index: Any, nrng: Any) -> Any:
    """Symbols mostly inside their tables (near the mode), some escapes, a few extreme values."""
    import numpy as np

    offsets, sizes, modes = tables.offsets[index], tables.sizes[index], tables.modes[index]
    symbols = offsets + np.where(nrng.random(index.size) < 0.6, modes, nrng.integers(0, 2**31, index.size) % sizes)
    escapes = nrng.random(index.size) < 0.03
    symbols[escapes] += nrng.integers(-40, 40, int(escapes.sum())) * sizes[escapes]
    extreme = nrng.random(index.size) < 0.002
    symbols[extreme] = nrng.choice([2**31 - 1, -(2**31), 1 << 20, -(1 << 20)], int(extreme.sum()))
    return symbols.astype(np.int64)


def pixel_digest(image: Any) -> str:
    return hashlib.sha256(image.mode.encode() + repr(image.size).encode() + image.tobytes()).hexdigest()


# -- one execution, for the worker and the in-process runner -----------------------------------------
@dataclass
class Execution:
    target: str
    data: bytes  # the input as saved with a finding (the forged file for a forged decoder case)
    ops: list[str]
    deadline: float
    case: dict[str, Any] | None = None  # the coder target's case
    forge: bool = False


def generate(harness: Harness, target: str, rng: random.Random) -> Execution:
    if target == "decoder":
        data, ops, forge = harness.decoder_case(rng)
        return Execution(target, data, ops, deadline_for(data), forge=forge)
    if target == "container":
        data, ops = harness.container_case(rng)
        return Execution(target, data, ops, DEADLINE_BASE_S)
    case = harness.coder_case(rng)
    return Execution(target, _coder_case_bytes(case), case["ops"], DEADLINE_BASE_S, case=case)


def execute(harness: Harness, execution: Execution, rng: random.Random) -> str:
    """Run one execution; returns its outcome, raises on a contract breach."""
    if execution.target == "decoder":
        if execution.forge:
            execution.data = harness.forge_symbols_crc(execution.data)
        return harness.check_decode(execution.data, repeat=rng.random() < 0.05)
    if execution.target == "container":
        return harness.check_container(execution.data)
    assert execution.case is not None
    return harness.check_coder(execution.case)


def _coder_case_bytes(case: dict[str, Any]) -> bytes:
    """A coder case as one JSON document (what a finding saves and the regression test replays)."""
    return json.dumps({
        "tables": case["tables"], "index": case["index"].hex(), "skip_certain": case["skip_certain"],
        "streams": [s.hex() for s in case["streams"]], "symbols": case["symbols"],
    }).encode()


def coder_case_from_bytes(data: bytes) -> dict[str, Any]:
    doc = json.loads(data)
    return {"tables": doc["tables"], "index": bytes.fromhex(doc["index"]), "skip_certain": doc["skip_certain"],
            "streams": [bytes.fromhex(s) for s in doc["streams"]], "symbols": doc["symbols"], "ops": []}


def outcome_class(outcome: str) -> str:
    """An outcome without its numbers, to count how far executions get."""
    text = "".join("#" if c.isdigit() else c for c in outcome.split(";")[0])
    while "##" in text:
        text = text.replace("##", "#")
    return text[:90]


def signature(kind: str, exc: BaseException | None, message: str) -> str:
    """Findings with the same signature are one bug: kind, exception type and the innermost evc frame."""
    where = ""
    if exc is not None:
        for frame in traceback.extract_tb(exc.__traceback__):
            if "/evc/" in frame.filename or "evcfuzz" in frame.filename:
                where = f"{Path(frame.filename).name}:{frame.name}"
        return f"{kind}:{type(exc).__name__}:{where}:{outcome_class(str(exc))[:40] if isinstance(exc, Finding) else ''}"
    return f"{kind}:{outcome_class(message)[:60]}"


# -- the worker process ------------------------------------------------------------------------------
TARGET_WEIGHTS = {"decoder": 0.6, "container": 0.25, "coder": 0.15}


# --selftest: executions that break the contract on purpose, one of each kind the watchdogs must catch,
# by the execution number in the first and second worker started (a hang and a crash end a worker).
_SELFTEST = {1: {3: "hang"}, 2: {3: "allocation", 6: "exception", 9: "crash"}}


def _sabotage(kind: str) -> None:
    if kind == "hang":
        time.sleep(3600)
    elif kind == "allocation":
        bytearray(1 << 40)  # 1 TiB: MemoryError under the address-space limit
    elif kind == "crash":
        os.abort()
    else:
        raise KeyError("an exception that is not an EVCError")


def _worker(conn: Connection, worker_seed: int, memory_mb: int, targets: dict[str, float], selftest: int = 0) -> None:
    """Generate and run cases forever: report each input before running it (so the parent can save it
    if the worker hangs or dies) and its outcome after."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    harness = Harness().setup()
    if memory_mb:
        # Counted from what the worker already maps (torch, models): the limit is the headroom.
        limit = _vm_size() + memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    rng = random.Random(worker_seed)
    names, weights = list(targets), list(targets.values())
    conn.send(("ready", len(harness.seeds)))
    count = 0
    while True:
        count += 1
        target = rng.choices(names, weights)[0]
        execution = generate(harness, target, rng)
        sabotage = _SELFTEST.get(selftest, {}).get(count)
        if sabotage == "hang":
            execution.deadline = 3.0
        conn.send(("start", execution.target, execution.data, execution.ops, execution.deadline))
        started = time.perf_counter()
        try:
            if sabotage:
                _sabotage(sabotage)
            outcome = execute(harness, execution, rng)
            elapsed = time.perf_counter() - started
            if elapsed > SLOW_S:  # finished, but slower than the pixel limit allows: time is not bounded
                raise Finding(f"slow: {elapsed:.1f} s ({outcome_class(outcome)})")
            result: tuple = ("done", "ok", outcome, None, elapsed)
        except BaseException as exc:  # noqa: BLE001 - anything else is a finding, PanicException included
            kind = "oracle" if isinstance(exc, Finding) else ("memory" if isinstance(exc, MemoryError) else "exception")
            if str(exc).startswith("slow:"):
                kind = "slow"
            detail = "".join(traceback.format_exception(exc))
            result = ("done", kind, signature(kind, exc, str(exc)), detail, time.perf_counter() - started)
            if execution.forge:  # the forged file is what reproduces it
                conn.send(("input", execution.data))
        conn.send(result)


def _vm_size() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class _Slot:
    process: Any
    conn: Connection
    current: tuple | None = None
    started: float = 0.0


class Fuzzer:
    """The parent: starts workers, watches each execution's deadline, records findings and statistics."""

    def __init__(self, workers: int, seed: int, memory_mb: int, targets: dict[str, float], out: Path,
                 selftest: bool = False) -> None:
        self.ctx = get_context("spawn")  # a fresh interpreter: no torch state shared with the parent
        self.workers, self.seed, self.memory_mb, self.targets, self.out = workers, seed, memory_mb, targets, out
        self.selftest = selftest
        self.slots: list[_Slot] = []
        self.execs = Counter()
        self.outcomes: Counter = Counter()
        self.findings: dict[str, dict[str, Any]] = {}
        self.finding_count = 0
        self.exec_seconds = 0.0
        self.slowest: dict[str, float] = {}
        self.restarts = 0

    def _start(self) -> _Slot:
        parent, child = self.ctx.Pipe()
        seed = self.seed * 1000 + self.restarts * 7 + len(self.slots)
        self.restarts += 1
        process = self.ctx.Process(
            target=_worker, args=(child, seed, self.memory_mb, self.targets, self.restarts if self.selftest else 0),
            daemon=True,
        )
        process.start()
        child.close()
        message = parent.recv()
        assert message[0] == "ready", message
        return _Slot(process, parent)

    def _record(self, kind: str, sig: str, slot: _Slot, detail: str, seconds: float) -> None:
        self.finding_count += 1
        target, data, ops, _ = slot.current  # type: ignore[misc]
        entry = self.findings.setdefault(sig, {"kind": kind, "target": target, "count": 0, "seconds": seconds})
        entry["count"] += 1
        if entry["count"] == 1:
            name = hashlib.sha1(sig.encode()).hexdigest()[:12]
            self.out.mkdir(parents=True, exist_ok=True)
            suffix = ".json" if target == "coder" else ".evc"
            (self.out / f"{name}{suffix}").write_bytes(data)
            note = f"{sig}\ntarget: {target}\nops: {ops}\nseconds: {seconds:.2f}\n\n{detail}\n"
            (self.out / f"{name}.txt").write_text(note)
            entry["file"] = f"{name}{suffix}"
            print(f"\n[finding] {sig} -> {self.out / name}{suffix}", flush=True)

    def _kill(self, slot: _Slot) -> None:
        if slot.process.is_alive():
            os.kill(slot.process.pid, signal.SIGKILL)
        slot.process.join()
        slot.conn.close()

    def run(self, seconds: float, report_every: float = 60.0) -> dict[str, Any]:
        began = time.monotonic()
        self.slots = [self._start() for _ in range(self.workers)]
        ready = time.monotonic()
        last_report = ready
        try:
            while time.monotonic() - ready < seconds:
                now = time.monotonic()
                for i, slot in enumerate(self.slots):
                    if slot.current is not None and now - slot.started > slot.current[3]:
                        self._record("hang", f"hang:{slot.current[0]}", slot, "deadline exceeded", now - slot.started)
                        self._kill(slot)
                        self.execs[slot.current[0]] += 1
                        self.slots[i] = self._start()
                for conn in wait([s.conn for s in self.slots], timeout=1.0):
                    slot = next(s for s in self.slots if s.conn is conn)
                    try:
                        message = conn.recv()
                    except (EOFError, ConnectionResetError):
                        slot.process.join(5)
                        code = slot.process.exitcode  # negative: killed by that signal (-6 abort, -9 OOM killer)
                        if slot.current is not None:
                            sig = f"crash:{slot.current[0]}:exit {code}"
                            self._record("crash", sig, slot, f"worker died, exit {code}", 0.0)
                            self.execs[slot.current[0]] += 1
                        self._kill(slot)
                        self.slots[self.slots.index(slot)] = self._start()
                        continue
                    if message[0] == "start":
                        slot.current, slot.started = message[1:], time.monotonic()
                    elif message[0] == "input":
                        slot.current = (slot.current[0], message[1], *slot.current[2:])  # type: ignore[index]
                    elif message[0] == "done":
                        _, kind, outcome, detail, elapsed = message
                        target = slot.current[0]  # type: ignore[index]
                        self.execs[target] += 1
                        self.exec_seconds += elapsed
                        self.slowest[target] = max(self.slowest.get(target, 0.0), elapsed)
                        if kind == "ok":
                            self.outcomes[(target, outcome_class(outcome))] += 1
                        else:
                            self._record(kind, outcome, slot, detail, elapsed)
                        slot.current = None
                if time.monotonic() - last_report >= report_every:
                    last_report = time.monotonic()
                    self._print_progress(last_report - ready)
        except KeyboardInterrupt:
            pass
        finally:
            for slot in self.slots:
                self._kill(slot)
        wall = time.monotonic() - ready
        total = sum(self.execs.values())
        summary = {
            "seed": self.seed, "workers": self.workers, "startup_s": round(ready - began, 1), "seconds": round(wall, 1),
            "executions": total, "exec_per_s": round(total / wall, 2) if wall else 0.0, "by_target": dict(self.execs),
            "slowest_s": {k: round(v, 3) for k, v in self.slowest.items()}, "findings": self.findings,
            "finding_executions": self.finding_count,
            "outcomes": {f"{t}: {o}": n for (t, o), n in self.outcomes.most_common()},
        }
        self._print_progress(wall)
        return summary

    def _print_progress(self, elapsed: float) -> None:
        total = sum(self.execs.values())
        print(f"[{elapsed:7.0f}s] {total} execs ({total / max(elapsed, 1e-9):.1f}/s) {dict(self.execs)} "
              f"findings: {len(self.findings)} unique / {self.finding_count}", flush=True)


# -- in-process runs (the tests) ---------------------------------------------------------------------
def run_inprocess(harness: Harness, seed: int, executions: int, targets: dict[str, float] | None = None,
                  on_outcome: Callable[[Execution, str], None] | None = None) -> Counter:
    """A short seeded run in this process (no watchdog: the caller bounds it); raises on the first
    finding with the input attached. Returns the outcome classes seen."""
    targets = targets or TARGET_WEIGHTS
    rng = random.Random(seed)
    names, weights = list(targets), list(targets.values())
    seen: Counter = Counter()
    for _ in range(executions):
        execution = generate(harness, rng.choices(names, weights)[0], rng)
        try:
            outcome = execute(harness, execution, rng)
        except BaseException as exc:
            saved = Path(tempfile.gettempdir()) / f"evcfuzz-{hashlib.sha1(execution.data).hexdigest()[:12]}"
            saved = saved.with_suffix(".json" if execution.target == "coder" else ".evc")
            saved.write_bytes(execution.data)
            raise AssertionError(
                f"{execution.target} execution broke the contract ({type(exc).__name__}: {exc}); ops {execution.ops}; "
                f"input saved to {saved} (python fuzz/evcfuzz.py --replay {saved})"
            ) from exc
        seen[(execution.target, outcome_class(outcome))] += 1
        if on_outcome is not None:
            on_outcome(execution, outcome)
    return seen


def replay(paths: list[Path], max_pixels: int) -> int:
    """Run saved inputs (findings or corpus files) through their target in this process; prints each
    outcome or the traceback of a contract breach. Returns the number of breaches."""
    harness = Harness(max_pixels=max_pixels).setup()
    breaches = 0
    for path in paths:
        data = path.read_bytes()
        try:
            if path.suffix == ".json":
                outcome = harness.check_coder(coder_case_from_bytes(data))
            else:
                harness.check_container(data)
                outcome = harness.check_decode(data, repeat=True)
            print(f"{path}: {outcome}")
        except BaseException:  # noqa: BLE001 - report every kind of breach
            breaches += 1
            print(f"{path}: CONTRACT BROKEN\n{traceback.format_exc()}")
    return breaches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replay", type=Path, nargs="+", metavar="FILE",
                        help="run these saved inputs once, in this process, and report (no fuzzing)")
    parser.add_argument("--max-pixels", type=int, default=FUZZ_MAX_PIXELS, help="the codecs' limit for --replay")
    parser.add_argument("--minutes", type=float, default=15.0, help="how long to fuzz (after start-up)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (one execution each at a time)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-mb", type=int, default=2048, help="address-space headroom per worker (0: none)")
    parser.add_argument("--targets", default="decoder=0.6,container=0.25,coder=0.15",
                        help="target weights, e.g. decoder=1 or coder=1,container=1")
    parser.add_argument("--out", type=Path, default=FINDINGS, help="where findings and the summary go")
    parser.add_argument("--report-every", type=float, default=60.0, help="seconds between progress lines")
    parser.add_argument("--selftest", action="store_true",
                        help="make the workers hang, over-allocate, crash and raise once each: all must be found")
    args = parser.parse_args(argv)
    if args.replay:
        return 1 if replay(args.replay, args.max_pixels) else 0
    targets = {k: float(v) for k, v in (item.split("=") for item in args.targets.split(","))}
    unknown = set(targets) - set(TARGET_WEIGHTS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; choose from {sorted(TARGET_WEIGHTS)}")
    if not load_corpus(SEEDS):
        parser.error(f"no seeds in {SEEDS}: run python fuzz/make_seeds.py first")
    fuzzer = Fuzzer(args.workers, args.seed, args.memory_mb, targets, args.out, args.selftest)
    summary = fuzzer.run(args.minutes * 60, args.report_every)
    if args.selftest:
        kinds = {entry["kind"] for entry in summary["findings"].values()}
        missed = {"hang", "memory", "crash", "exception"} - kinds
        print("selftest:", "every sabotage was caught" if not missed else f"MISSED {sorted(missed)}")
        return 1 if missed else 0
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"summary-seed{args.seed}-{int(time.time())}.json"
    path.write_text(json.dumps(summary, indent=1))
    print(f"summary: {path}")
    return 1 if summary["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())

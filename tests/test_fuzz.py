"""The fuzzing corpus and harness (fuzz/): every corpus file decodes correctly or raises EVCError, a short
seeded fuzz run finds nothing, and one test per class of hostile input the fuzzer found or targets.

The harness's long runs (``python fuzz/evcfuzz.py``) watch each execution with a deadline and an
address-space limit in a worker process; here the runs are short and in-process, and the tests that
guard against allocations and hangs bound time and traced memory themselves.
"""

from __future__ import annotations

import json
import resource
import struct
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import evc
from evc.bitstream.container import parse
from evc.entropy.coder import SymbolTables, decode_substreams, decode_symbols, encode_substreams, encode_symbols
from evc.errors import EVCError, FormatError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
import evcfuzz
from evcfuzz import EMPTY_ANS, REGRESSIONS, SEEDS, Harness, RawFile

SEED_MANIFEST = json.loads((SEEDS / "manifest.json").read_text())
REGRESSION_MANIFEST = json.loads((REGRESSIONS / "manifest.json").read_text())


# Time bounds here are on this process's CPU time (time.process_time), not the wall clock: they bound
# the work a hostile file causes, and stay true when other processes share the cores.


def _vm_bytes() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))


@pytest.fixture(scope="module", autouse=True)
def address_space_guard():
    """While these tests run, allocating more than 4 GiB beyond what the process maps raises
    MemoryError: a decoder that regresses into a runaway allocation fails its test instead of
    bringing the OOM killer down on the machine."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _vm_bytes() + (4 << 30)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture(scope="module")
def harness() -> Harness:
    """The fuzzer's codecs (seeded random weights, small max_pixels) with the seeds decoded, at one
    thread: the manifest's pixel digests were taken at one thread (the synthesis transform's last bit
    can depend on the thread count)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield Harness().setup()
    finally:
        torch.set_num_threads(previous)


def seed_raw(name: str) -> RawFile:
    raw = RawFile.from_bytes((SEEDS / name).read_bytes())
    assert raw is not None
    return raw


SS_SEED = "evc-ss-64x64-rgb-float-s1-q50.evc"
SS_EXACT_SEED = "evc-ss-90x70-rgb-exact-s3-q94.evc"


# -- the corpus --------------------------------------------------------------------------------------
def test_seed_corpus_is_small_and_varied() -> None:
    files = sorted(p for p in (SEEDS.parent).rglob("*") if p.is_file())
    assert sum(p.stat().st_size for p in files) < 1_000_000
    entries = SEED_MANIFEST.values()
    assert {e["model"] for e in entries} >= {"EVC-SS", "EVC-MS", "EVC-LL", "Scale-SS"}
    assert {e["colour"] for e in entries} == {"RGB", "L"} and {e["exact"] for e in entries} == {True, False}
    assert {e["substreams"] for e in entries} == {1, 3} and {e["version"] for e in entries} == {1, 2, 3}
    assert {(e["width"], e["height"]) for e in entries} >= {(1, 1), (3, 17), (64, 64), (90, 70)}
    assert set(SEED_MANIFEST) == set(evcfuzz.load_corpus(SEEDS))


@pytest.mark.parametrize("name", sorted(SEED_MANIFEST))
def test_seeds_decode_to_their_recorded_pixels(harness: Harness, name: str) -> None:
    """The seeds are valid files of the harness's codecs: if model initialisation changes, their weights
    fingerprints no longer match and the fuzzer would only test the fingerprint check. Regenerate them
    with ``python fuzz/make_seeds.py``."""
    entry = SEED_MANIFEST[name]
    data = (SEEDS / name).read_bytes()
    info = evc.file_info(data)
    described = (entry["model"], entry["width"], entry["height"], entry["colour"])
    assert (info.model, info.width, info.height, info.colour) == described
    assert (info.exact, info.substreams, info.format_version) == (entry["exact"], entry["substreams"], entry["version"])
    try:
        image = harness.codec_for(data).decompress(data)
    except FormatError as exc:
        # Float entropy parameters decode only on the kind of CPU that encoded them (elsewhere the checksum
        # differs, or the coder derails before it: both say so); anything else is stale.
        assert not entry["exact"] and "decode it where it was encoded" in str(exc), f"{name}: {exc} (rerun fuzz/make_seeds.py)"
        return
    assert evcfuzz.pixel_digest(image) == entry["pixels_sha256"]


def regression_files() -> list[str]:
    return sorted(p.name for p in REGRESSIONS.iterdir() if p.suffix in (".evc", ".json") and p.name != "manifest.json")


def test_every_regression_file_is_described() -> None:
    assert set(regression_files()) == set(REGRESSION_MANIFEST)


@pytest.mark.parametrize("name", regression_files())
def test_regression_corpus_replays(harness: Harness, name: str) -> None:
    """Each minimised finding: decoded (all oracles) or refused with EVCError, with its expected outcome."""
    entry = REGRESSION_MANIFEST[name]
    data = (REGRESSIONS / name).read_bytes()
    codec = harness.codec_for(data)
    previous = codec.max_pixels
    codec.max_pixels = entry.get("max_pixels", previous)
    start = time.process_time()
    try:
        outcome = harness.check_decode(data, repeat=True)
    finally:
        codec.max_pixels = previous
    assert time.process_time() - start < entry.get("seconds", 10.0)
    harness.check_container(data)
    assert entry["outcome"] in outcome, f"{name}: {outcome!r}"


def test_whole_corpus_meets_the_contract(harness: Harness) -> None:
    """Seeds and regressions through both file targets (file_info, parse, re-pack, decode)."""
    for folder in (SEEDS, REGRESSIONS):
        for data in evcfuzz.load_corpus(folder).values():
            harness.check_container(data)
            harness.check_decode(data)


# -- a short seeded fuzz run ---------------------------------------------------------------------------
def test_short_fuzz_run_finds_nothing_and_reaches_the_decoder(harness: Harness) -> None:
    """A few seconds of the fuzzer (the same cases each time: seeded). It must also get past the
    checksums: mutated files decode to an image, fail inside the entropy decoder, at the symbols CRC
    and at the int32 check; a mutator that only hit the container CRC would test nothing."""
    start = time.process_time()
    seen = evcfuzz.run(harness, seed=2024, executions=150, targets={"decoder": 1.0})
    seen += evcfuzz.run(harness, seed=7, executions=3000, targets={"container": 1.0})
    assert time.process_time() - start < 40
    outcomes = {outcome for (target, outcome) in seen if target == "decoder"}
    assert "decoded" in outcomes
    assert any(o.startswith("corrupt stream") for o in outcomes)
    assert any("checksum mismatch" in o and "symbols" in o for o in outcomes)
    assert any("int# range" in o for o in outcomes)
    assert sum(n for (target, o), n in seen.items() if target == "container" and o == "parsed") > 500


def test_cpu_budget_stops_a_hang() -> None:
    """The watchdog of every fuzz execution: a busy loop is interrupted once it has used its CPU time."""
    start = time.process_time()
    with pytest.raises(evcfuzz.Hang), evcfuzz.cpu_budget(0.2):
        while True:
            pass
    assert time.process_time() - start < 2.0


# -- sizes, the pixel limit and allocation ---------------------------------------------------------------
def with_size(name: str, width: int, height: int) -> bytes:
    raw = seed_raw(name)
    raw.width, raw.height = width, height
    return raw.to_bytes()


@pytest.mark.parametrize(
    ("width", "height"),
    [(2**31 - 1, 2**31 - 1), (1, 2**27), (2**27, 1), (16384, 8193), (1 << 20, 1 << 20), (65, 2**21)],
)
def test_declared_sizes_over_the_limit_are_refused_before_allocating(width: int, height: int) -> None:
    """At the default limit (2^27 pixels): thin images count with their padding (a 1 x 2^27 file
    decodes as 64 x 2^27, and once allocated ~3 GiB before failing)."""
    codec = evc.Codec(evc.create_model("EVC-SS", seed=0), "EVC-SS", device="cpu")
    data = with_size("evc-ss-1x1-rgb-exact-s1-q94.evc", width, height)
    tracemalloc.start()
    start = time.process_time()
    try:
        with pytest.raises(FormatError, match=r"over the limit of 134217728 \(Codec.max_pixels\)"):
            codec.decompress(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.process_time() - start < 0.5 and peak < 1 << 20
    info = evc.file_info(data)  # describing a file allocates nothing for its size: no limit
    assert (info.width, info.height) == (width, height)


def test_pixel_limit_counts_padded_pixels(harness: Harness) -> None:
    codec = harness.codecs[8]  # EVC-SS, max_pixels = 128 x 128
    assert codec.max_pixels == 128 * 128
    for width, height in [(128, 128), (65, 128), (1, 256), (128, 100)]:  # padded 128 x 128 or 64 x 256
        with pytest.raises(EVCError) as refused:
            codec.decompress(with_size(SS_SEED, width, height))  # the 64 x 64 seed's streams: too short
        assert "limit" not in str(refused.value)
    for width, height in [(129, 65), (1, 257), (1, 16384), (16384, 1), (128, 129)]:
        with pytest.raises(FormatError, match="once padded to multiples of 64"):
            codec.decompress(with_size(SS_SEED, width, height))


def test_decoding_time_is_bounded_by_the_declared_size(harness: Harness) -> None:
    """Tiny streams under a header declaring the largest image the limit allows: the decoder runs every
    network at that size before the symbols CRC refuses the file, in time proportional to it."""
    codec = harness.codecs[1]  # EVC-LL: the slowest decoder
    for streams in ([EMPTY_ANS] * 3, [b"\x01\x00\x00\x00"] * 3):
        raw = seed_raw("evc-ll-3x17-rgb-exact-s1-q94.evc")
        raw.width, raw.height, raw.streams = 128, 128, streams
        start = time.process_time()
        with pytest.raises(FormatError):
            codec.decompress(raw.to_bytes())
        assert time.process_time() - start < 5.0


# -- hostile stream counts and lengths ---------------------------------------------------------------------
@pytest.mark.parametrize("count", [1, 2, 4, 6, 19, 255])
def test_stream_counts_no_model_writes_are_refused(harness: Harness, count: int) -> None:
    raw = seed_raw(SS_SEED)
    raw.streams = (raw.streams * 255)[:count]
    with pytest.raises(FormatError, match="streams"):
        harness.codec_for(raw.to_bytes()).decompress(raw.to_bytes())


@pytest.mark.parametrize("lengths", [[2**32 - 1] * 3, [2**31, 2**31, 8], [0, 0, 2**32 - 1], [4, 4, 4]])
def test_lying_stream_lengths_are_refused_at_once(lengths: list[int]) -> None:
    raw = seed_raw(SS_SEED)
    raw.lengths = lengths
    start = time.process_time()
    with pytest.raises(FormatError, match="truncated|unexpected bytes"):
        parse(raw.to_bytes())
    assert time.process_time() - start < 0.1


def test_a_count_field_that_lies_about_the_streams_is_refused() -> None:
    for count in (0, 2, 4, 255):
        raw = seed_raw(SS_SEED)
        raw.count = count
        with pytest.raises(FormatError):
            parse(raw.to_bytes())


# -- flags ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags", [0x08, 0x10, 0x20, 0x40, 0x80, 0xFF, 0x0F, 0x0C])
def test_unknown_flags_are_refused_with_an_upgrade_hint(harness: Harness, flags: int) -> None:
    raw = seed_raw(SS_EXACT_SEED)
    raw.flags = flags
    with pytest.raises(FormatError, match="upgrade evc"):
        harness.codec_for(raw.to_bytes()).decompress(raw.to_bytes())


@pytest.mark.parametrize("flags", [0, 1, 2])
def test_other_known_flags_than_the_encoders_fail_cleanly(harness: Harness, flags: int) -> None:
    """A file read with the other arithmetic or skipping setting decodes other symbols: refused."""
    raw = seed_raw(SS_EXACT_SEED)
    raw.flags = flags
    with pytest.raises(FormatError, match="corrupt stream|checksum mismatch"):
        harness.codec_for(raw.to_bytes()).decompress(raw.to_bytes())


@pytest.mark.parametrize("flags", [0x04, 0x07])
def test_icc_flag_without_a_profile_fails_cleanly(harness: Harness, flags: int) -> None:
    """The ICC flag makes the first stream's first word the profile length: the layout no longer adds up."""
    raw = seed_raw(SS_EXACT_SEED)
    raw.flags = flags
    with pytest.raises(FormatError, match="truncated|unexpected bytes|empty ICC"):
        harness.codec_for(raw.to_bytes()).decompress(raw.to_bytes())


# -- truncated and garbage streams ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["evc-ss-3x17-l-exact-s3-q175.evc", "evc-ss-24x40-rgb-float-s1-q120-v1.evc"])
def test_truncated_and_garbage_streams_fail_cleanly(harness: Harness, name: str) -> None:
    rng = np.random.default_rng(5)
    seed = seed_raw(name)
    for stream in range(len(seed.streams)):
        original = seed.streams[stream]
        words = rng.integers(1, 2**32, max(len(original) // 4, 1), dtype=np.uint64).astype("<u4").tobytes()
        damaged = (original[:-4], original[:-1], original[4:], original + words, bytes(len(original)))
        for broken in (*damaged, b"", EMPTY_ANS, words):
            raw = seed.copy()
            raw.streams[stream] = broken
            outcome = harness.check_decode(raw.to_bytes())
            assert outcome != "decoded" or broken == original


# -- forged symbols CRC ----------------------------------------------------------------------------------------
def test_forged_symbols_crc_reaches_the_synthesis_and_gives_an_image_or_an_error(harness: Harness) -> None:
    """With the symbols CRC forged to match, damaged streams reach the synthesis transform: the decoder
    still returns an image of the declared size and mode (or refuses), never anything else."""
    rng = np.random.default_rng(3)
    decoded = 0
    for name in (SS_EXACT_SEED, "evc-ll-3x17-rgb-exact-s1-q94.evc", "scale-ss-3x17-l-exact-s3-q57.evc"):
        seed = seed_raw(name)
        # Most flips break the escape codes and are refused; few decode (about one in 40 here), so up to
        # 16 flips a seed, stopping at the first that decodes: not a handful that one seed's bytes decide.
        for _ in range(16):
            raw = seed.copy()
            i = int(rng.integers(1, len(raw.streams)))
            stream = bytearray(raw.streams[i])
            stream[int(rng.integers(0, len(stream)))] ^= 1 << int(rng.integers(0, 8))
            raw.streams[i] = bytes(stream)
            forged = harness.forge_symbols_crc(raw.to_bytes())
            if harness.check_decode(forged) == "decoded":
                decoded += 1
                break
    assert decoded > 0


def wrapped_file(harness: Harness, name: str, group: int, shift: int) -> bytes:
    """A seed with one symbol of a group (0 z, 1 and 2 the y steps) moved by ``shift`` and re-coded,
    its symbols CRC left as it was."""
    data = (SEEDS / name).read_bytes()
    groups = harness.decoded_groups(data)
    assert groups is not None
    g = groups[group]
    values = np.array(g["values"], dtype=np.int64)
    index = np.asarray(g["index"]).astype(np.int64)
    low, high = g["tables"].offsets[index], g["tables"].offsets[index] + g["tables"].sizes[index]
    inside = np.flatnonzero((values > low) & (values < high - 1))  # 2^32 away is then within the escape code
    values[inside[len(inside) // 2]] += shift
    streams = encode_substreams(values, g["index"], g["tables"], g["count"], skip_certain=g["skip_certain"])
    raw = RawFile.from_bytes(data)
    first = sum(previous["count"] for previous in groups[:group])
    raw.streams[first : first + g["count"]] = streams
    return raw.to_bytes()


@pytest.mark.parametrize("group", [0, 1, 2])
def test_symbols_beyond_int32_cannot_pass_the_symbols_crc(harness: Harness, group: int) -> None:
    """The symbols CRC covers int32 values; a symbol 2^32 away from the true one gives the same CRC,
    so the decoder must refuse symbols no encoder writes (found by the fuzzer: a wrong image)."""
    for name in (SS_EXACT_SEED, "evc-ms-64x64-rgb-exact-s3-q120.evc"):
        for shift in (2**32, -(2**32)):
            data = wrapped_file(harness, name, group, shift)
            assert data != (SEEDS / name).read_bytes()
            with pytest.raises(FormatError, match="outside the int32 range"):
                harness.codec_for(data).decompress(data)
        # One step short of the wrap is just another symbol, which the CRC catches.
        data = wrapped_file(harness, name, group, 2**31)
        with pytest.raises(FormatError, match="int32|checksum mismatch"):
            harness.codec_for(data).decompress(data)


# -- the entropy coder directly (hypothesis) --------------------------------------------------------------
@pytest.fixture(scope="module")
def tables() -> list[SymbolTables]:
    rng = np.random.default_rng(1)
    small = [(rng.dirichlet(np.full(int(rng.integers(1, 6)), 0.4)) * 0.999, int(rng.integers(-4, 4))) for _ in range(6)]
    small.append((np.array([1.0 - 1e-6]), 0))
    from evc.entropy.latent_codec import gaussian_tables

    return [gaussian_tables(), SymbolTables(small)]


def plausible_symbols(tables: SymbolTables, index: np.ndarray, nrng: np.random.Generator) -> np.ndarray:
    """Symbols mostly inside their tables (near the mode), some escapes, a few extreme values."""
    offsets, sizes, modes = tables.offsets[index], tables.sizes[index], tables.modes[index]
    symbols = offsets + np.where(nrng.random(index.size) < 0.6, modes, nrng.integers(0, 2**31, index.size) % sizes)
    escapes = nrng.random(index.size) < 0.03
    symbols[escapes] += nrng.integers(-40, 40, int(escapes.sum())) * sizes[escapes]
    extreme = nrng.random(index.size) < 0.002
    symbols[extreme] = nrng.choice([2**31 - 1, -(2**31), 1 << 20, -(1 << 20)], int(extreme.sum()))
    return symbols.astype(np.int64)


# No example database: the runs are seeded by the test, and nothing is written into the repository.
CODER_SETTINGS = settings(
    max_examples=150, deadline=None, database=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@CODER_SETTINGS
@given(data=st.binary(max_size=256), size=st.integers(0, 3000), table_seed=st.integers(0, 2**32 - 1),
       which=st.integers(0, 1), skip_certain=st.booleans(), whole_words=st.booleans())
def test_random_bytes_decode_to_symbols_or_format_error(
    tables, data, size, table_seed, which, skip_certain, whole_words
) -> None:
    table = tables[which]
    index = np.random.default_rng(table_seed).integers(0, len(table), size)
    if whole_words:
        data = data[: len(data) // 4 * 4]
    try:
        values = decode_symbols(data, index, table, skip_certain=skip_certain)
    except FormatError as exc:
        assert str(exc).startswith("corrupt stream")
        return
    assert values.shape == (size,) and values.dtype == np.int64
    again = encode_symbols(values, index, table, skip_certain=skip_certain)
    np.testing.assert_array_equal(decode_symbols(again, index, table, skip_certain=skip_certain), values)


@CODER_SETTINGS
@given(symbols_seed=st.integers(0, 2**32 - 1), size=st.integers(0, 2000), count=st.integers(1, 9),
       which=st.integers(0, 1), skip_certain=st.booleans(), flips=st.lists(st.integers(0, 2**20), max_size=3),
       cut=st.integers(0, 8), order=st.permutations(range(3)))
def test_damaged_substreams_decode_or_raise_format_error(
    tables, symbols_seed, size, count, which, skip_certain, flips, cut, order
) -> None:
    table = tables[which]
    nrng = np.random.default_rng(symbols_seed)
    index = nrng.integers(0, len(table), size)
    symbols = plausible_symbols(table, index, nrng)
    streams = encode_substreams(symbols, index, table, min(count, 8), skip_certain=skip_certain)
    np.testing.assert_array_equal(decode_substreams(streams, index, table, skip_certain=skip_certain), symbols)
    damaged = [bytearray(s) for s in streams]
    for flip in flips:
        stream = damaged[flip % len(damaged)]
        if stream:
            stream[flip % len(stream)] ^= 1 << (flip % 8)
    damaged[0] = damaged[0][: max(len(damaged[0]) - cut, 0)]
    if len(damaged) >= 3:
        damaged[:3] = [damaged[i] for i in order]
    if count == 9:
        damaged.append(bytearray(EMPTY_ANS))  # more sub-streams than the encoder wrote
    try:
        values = decode_substreams([bytes(s) for s in damaged], index, table, skip_certain=skip_certain)
    except FormatError:
        return
    assert values.shape == (size,)
    # Whatever decodes must be codable: the symbols round-trip through the encoder.
    again = encode_substreams(values, index, table, len(damaged), skip_certain=skip_certain)
    np.testing.assert_array_equal(decode_substreams(again, index, table, skip_certain=skip_certain), values)


# -- not bytes at all --------------------------------------------------------------------------------------
def test_non_bytes_input_is_a_type_error_not_an_allocation(harness: Harness) -> None:
    codec = harness.codecs[8]
    start = time.process_time()
    for bad in (10**12, "\x89EVC", None, 3.5):
        with pytest.raises(TypeError, match="bytes-like"):
            codec.decompress(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="bytes-like"):
            evc.file_info(bad)  # type: ignore[arg-type]
    assert time.process_time() - start < 0.5
    data = (SEEDS / SS_SEED).read_bytes()
    for view in (bytearray(data), memoryview(data), np.frombuffer(data, dtype=np.uint8)):
        assert codec.decompress(view).size == (64, 64)


def test_version_1_files_keep_their_layout(harness: Harness) -> None:
    """The version-1 seed (no flags byte) decodes; moved to version 2 without a flags byte it is refused."""
    data = (SEEDS / "evc-ss-24x40-rgb-float-s1-q120-v1.evc").read_bytes()
    assert harness.check_decode(data) == "decoded"
    as_v2 = evcfuzz.reseal(data[:4] + b"\x02" + data[5:])
    assert harness.check_decode(as_v2) != "decoded"
    assert struct.unpack(">I", data[21:25])[0] == parse(data)[0].symbols_crc

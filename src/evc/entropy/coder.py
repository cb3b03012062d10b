"""Entropy coding of integer symbols with ANS (constriction), one discrete table per symbol.

A stream codes symbols that each name the table they use. Symbols are grouped by table (ascending
table, original order within a table) and each group is coded with that table's precomputed
categorical model, which is much faster than a model per symbol. Each table has one extra "escape"
entry; a symbol outside the table's range codes the escape, and its value is then coded exactly with
an Elias-gamma code on uniform models, so any integer within the escape limit round-trips.

With ``skip_certain``, the groups of "certain" tables (most likely symbol at probability
>= 1 - CERTAIN_EPSILON) are not coded symbol by symbol. The stream codes instead how many of those
skipped symbols differ from their table's most likely symbol (the exceptions), the position of each
as a gap in the skipped subsequence (the certain groups in table order), and its code under the
table's model with the most likely entry removed. Skipping is part of the format: encoder and decoder
must agree on it and on CERTAIN_EPSILON.

Stream layout: the ANS words (little-endian uint32), nothing else (a single zero word where the ANS
data is empty); the symbol count and table indices are known to the decoder from the context. The
decoder reads, in order: the coded groups; if symbols were skipped, the exception count, gaps and
codes; then the escaped values in original symbol order. With ``skip_certain=False`` (or nothing to
skip) a stream is byte-identical to what this coder wrote before skipping existed, except where the
ANS data is empty: that was written as b"", which no decoder accepted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import Executor

import constriction
import numpy as np

from evc.errors import FormatError

# Chosen by measurement (benchmarks/coder_speed.py --epsilons): with 1e-4 the Gaussian tables with
# sigma <= 0.128 are certain. An exception costs ~3.5 bits more than ANS coding it (measured 3.2-3.9)
# and occurs at most once in 10^4 skipped symbols, so skipping adds at most ~3.5e-4 bits per skipped
# symbol: under 0.1% of the rate of a latent averaging 0.35 bits/symbol or more even if every skipped
# symbol sat at the threshold. 1e-3 allows 10x that and skipped few more symbols on trained-like
# latents. Changing it changes the format of streams coded with skip_certain.
CERTAIN_EPSILON = 1e-4
# The most pieces the coder splits one symbol sequence into (a container holds at most 255 streams).
# A model uses fewer: evc.entropy.streams.MAX_SUBSTREAMS per coding step.
CODER_MAX_SPLIT = 255

_ESCAPE_MIN_PROB = 1e-9
_MAX_ESCAPE_BITS = 32  # an escaped offset w satisfies w + 1 < 2**(_MAX_ESCAPE_BITS + 1)
_LOW_BITS = 16
_INT32 = np.iinfo(np.int32)
# ANS data never ends in a zero word, so one zero word can stand for the empty ANS state, which the
# coder reaches when every coded value is its model's first entry (e.g. only skipped symbols, none an
# exception). A stream of symbols is thus never empty, and an empty one is rejected as truncated.
_EMPTY_ANS = b"\x00\x00\x00\x00"


class SymbolTables:
    """Discrete distributions over integer ranges [offset, offset + size), each with an escape entry.

    ``certain[t]``: table t's most likely symbol, ``offsets[t] + modes[t]``, has probability
    >= 1 - ``certain_epsilon``; only those tables' symbols are skipped by ``skip_certain``.
    """

    def __init__(self, pmfs: Sequence[tuple[np.ndarray, int]], *, certain_epsilon: float = CERTAIN_EPSILON) -> None:
        if not pmfs:
            raise ValueError("at least one table is needed")
        self._pmfs = tuple((np.array(pmf, dtype=np.float64), int(offset)) for pmf, offset in pmfs)  # to pickle
        self._digest: bytes | None = None
        self.certain_epsilon = float(certain_epsilon)
        self.offsets = np.array([offset for _, offset in self._pmfs], dtype=np.int64)
        self.sizes = np.array([len(pmf) for pmf, _ in self._pmfs], dtype=np.int64)
        self.modes = np.zeros(len(self._pmfs), dtype=np.int64)
        self.certain = np.zeros(len(self._pmfs), dtype=bool)
        self.models = []
        # For certain tables: the model of an exception's code (the mode removed); None where the
        # only possible exception code is the escape, so nothing needs coding.
        self.exception_models: list = []
        for t, (pmf, _) in enumerate(self._pmfs):
            pmf = np.clip(np.asarray(pmf, dtype=np.float64), 0.0, None)
            escape = max(1.0 - float(pmf.sum()), _ESCAPE_MIN_PROB)
            probabilities = np.append(pmf, escape)
            self.models.append(constriction.stream.model.Categorical(probabilities, perfect=False))
            self.exception_models.append(None)
            self.modes[t] = int(np.argmax(pmf))
            self.certain[t] = pmf[self.modes[t]] / probabilities.sum() >= 1.0 - self.certain_epsilon
            if self.certain[t] and len(pmf) > 1:
                rest = np.delete(probabilities, self.modes[t])
                self.exception_models[t] = constriction.stream.model.Categorical(rest, perfect=False)
        # Table indices are sorted as uint8/uint16 where possible: numpy radix-sorts those.
        if len(self._pmfs) <= 1 << 8:
            self.index_dtype = np.dtype(np.uint8)
        elif len(self._pmfs) <= 1 << 16:
            self.index_dtype = np.dtype(np.uint16)
        else:
            self.index_dtype = np.dtype(np.int64)
        # Decoded values are assembled in int32 when every in-table value fits (half the memory traffic).
        in_table_max = (self.offsets + self.sizes).max()  # an escape's placeholder value included
        self.values_fit_int32 = bool(self.offsets.min() >= _INT32.min and in_table_max <= _INT32.max)

    def __len__(self) -> int:
        return len(self.models)

    def __reduce__(self):
        # constriction models do not pickle; worker processes rebuild (and cache) the tables instead.
        if self._digest is None:
            digest = hashlib.blake2b(repr(self.certain_epsilon).encode(), digest_size=16)
            for pmf, offset in self._pmfs:
                digest.update(pmf.tobytes())
                digest.update(np.int64([len(pmf), offset]).tobytes())
            self._digest = digest.digest()
        return _rebuilt_tables, (self._digest, self._pmfs, self.certain_epsilon)


_REBUILT_TABLES: dict[bytes, SymbolTables] = {}


def _rebuilt_tables(digest: bytes, pmfs: Sequence[tuple[np.ndarray, int]], certain_epsilon: float) -> SymbolTables:
    tables = _REBUILT_TABLES.get(digest)
    if tables is None:
        if len(_REBUILT_TABLES) >= 8:
            _REBUILT_TABLES.clear()
        tables = _REBUILT_TABLES[digest] = SymbolTables(pmfs, certain_epsilon=certain_epsilon)
        tables._digest = digest
    return tables


def _table_index(table_index: np.ndarray, tables: SymbolTables) -> np.ndarray:
    """``table_index`` flattened, range-checked and in ``tables.index_dtype``."""
    index = np.asarray(table_index)
    if index.dtype.kind not in "iu":
        index = index.astype(np.int64)
    index = index.ravel()
    unsigned_fits = index.dtype.kind == "u" and np.iinfo(index.dtype).max < len(tables)
    if index.size and not unsigned_fits and (index.min() < 0 or index.max() >= len(tables)):
        raise ValueError(f"table indices must be in 0..{len(tables) - 1}")
    return index.astype(tables.index_dtype, copy=False)


def _group(index: np.ndarray, tables: SymbolTables) -> tuple[np.ndarray, np.ndarray]:
    """(order, counts): the stable permutation that sorts ``index`` and the count of each table."""
    return np.argsort(index, kind="stable"), np.bincount(index, minlength=len(tables))


def _skipped_tables(counts: np.ndarray, tables: SymbolTables, skip_certain: bool) -> np.ndarray:
    return np.flatnonzero(tables.certain & (counts > 0)) if skip_certain else np.zeros(0, dtype=np.intp)


def encode_symbols(
    symbols: np.ndarray, table_index: np.ndarray, tables: SymbolTables, *, skip_certain: bool = False
) -> bytes:
    """Code integer ``symbols`` (any shape), each with the table named by ``table_index``.

    ``skip_certain``: symbols of certain tables are not coded one by one (see the module docstring);
    the decoder must be told the same.
    """
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    index = _table_index(table_index, tables)
    if symbols.shape != index.shape:
        raise ValueError("symbols and table_index must have the same number of elements")
    if symbols.size == 0:
        return b""
    order, counts = _group(index, tables)
    ends = np.cumsum(counts)
    starts = ends - counts
    relative, codes, escaped_rows = _grouped_codes(symbols, order, counts, starts, tables)

    skipped = _skipped_tables(counts, tables, skip_certain)
    coder = constriction.stream.stack.AnsCoder()
    # The coder is a stack: push what the decoder reads last (escape values) first.
    if escaped_rows.size:
        escaped_rows = escaped_rows[np.argsort(order[escaped_rows])]  # escapes are coded in symbol order
        escaped_symbols = symbols[order[escaped_rows]]
        if ((escaped_symbols > 1 << 62) | (escaped_symbols < -(1 << 62))).any():  # int64 arithmetic would wrap
            raise ValueError("symbol too far outside its table to be coded (latent values out of range)")
        offset = relative[escaped_rows]
        below = offset < 0
        offset = np.where(below, -offset - 1, offset - codes[escaped_rows])  # an escape's code is its table size
        _encode_escapes(coder, 2 * offset + below)
    if skipped.size:
        _encode_exceptions(coder, codes, skipped, starts, counts, tables)
    coded = np.flatnonzero(counts)
    if skipped.size:
        coded = coded[~tables.certain[coded]]
    for table in coded[::-1]:
        coder.encode_reverse(codes[starts[table] : ends[table]], tables.models[table])
    return coder.get_compressed().astype("<u4").tobytes() or _EMPTY_ANS


# From about this many symbols, whole-array temporaries outgrow the CPU caches (and fresh ones cost
# page faults), so working through the groups one by one, each while it is in cache, is faster
# despite the per-group call overhead (measured: ~0.8 ms slower at 74k symbols, ~0.5 ms faster at 295k).
_GROUPWISE_MIN_SYMBOLS = 1 << 18


def _grouped_codes(
    symbols: np.ndarray, order: np.ndarray, counts: np.ndarray, starts: np.ndarray, tables: SymbolTables
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(symbol - table offset (int64), code (int32, the table size for an escape), escaped rows), all
    in grouped order.

    A value below its table wraps to a huge unsigned offset, so one unsigned comparison with the table
    size finds the escapes on both sides.
    """
    relative = np.take(symbols, order)
    codes = np.empty(symbols.size, dtype=np.int32)
    if symbols.size < _GROUPWISE_MIN_SYMBOLS:
        relative -= np.repeat(tables.offsets, counts)
        sizes = np.repeat(tables.sizes.astype(np.uint64), counts)
        np.minimum(relative.view(np.uint64), sizes, out=codes, casting="unsafe")  # values <= table size
        return relative, codes, np.flatnonzero(relative.view(np.uint64) >= sizes)
    escaped_rows = []
    for table in np.flatnonzero(counts):
        start, end, size = starts[table], starts[table] + counts[table], tables.sizes[table]
        segment = relative[start:end]
        segment -= tables.offsets[table]
        np.minimum(segment.view(np.uint64), np.uint64(size), out=codes[start:end], casting="unsafe")
        if codes[start:end].max() == size:
            escaped_rows.append(start + np.flatnonzero(codes[start:end] == size))
    return relative, codes, np.concatenate(escaped_rows) if escaped_rows else np.zeros(0, dtype=np.intp)


def _encode_exceptions(
    coder, codes: np.ndarray, skipped: np.ndarray, starts: np.ndarray, counts: np.ndarray, tables: SymbolTables
) -> None:
    """Push the exceptions among the skipped groups, for the decoder to read: count, gaps, codes."""
    positions, exception_codes, exception_tables = [], [], []
    skipped_before = exceptions = 0
    for table in skipped:
        segment = codes[starts[table] : starts[table] + counts[table]]
        rows = np.flatnonzero(segment != tables.modes[table])
        if rows.size:
            positions.append(rows + skipped_before)
            exception_codes.append(segment[rows])
            exception_tables.append(table)
            exceptions += rows.size
        skipped_before += int(counts[table])
    for table, table_codes in zip(exception_tables[::-1], exception_codes[::-1]):
        if tables.exception_models[table] is not None:
            reduced = table_codes - (table_codes > tables.modes[table])  # the mode's entry is removed
            coder.encode_reverse(reduced.astype(np.int32), tables.exception_models[table])
    if exceptions:
        _encode_escapes(coder, np.diff(np.concatenate(positions), prepend=-1) - 1)  # gaps >= 0
    _encode_escapes(coder, np.array([exceptions], dtype=np.int64))


def decode_symbols(
    data: bytes, table_index: np.ndarray, tables: SymbolTables, *, skip_certain: bool = False
) -> np.ndarray:
    """Inverse of :func:`encode_symbols`; returns int64 symbols in the order of ``table_index``."""
    index = _table_index(table_index, tables)
    if index.size == 0:
        if data:
            raise FormatError("corrupt stream: data where no symbols are expected")
        return np.zeros(0, dtype=np.int64)
    if len(data) % 4 != 0 or not data:
        raise FormatError("corrupt stream: its length is not a whole number of 32-bit words")
    try:
        words = np.frombuffer(b"" if data == _EMPTY_ANS else data, dtype="<u4").astype(np.uint32)
        coder = constriction.stream.stack.AnsCoder(words)
        order, counts = _group(index, tables)
        ends = np.cumsum(counts)
        starts = ends - counts
        skipped = _skipped_tables(counts, tables, skip_certain)
        # Values in grouped order, formed as each group is decoded (while it is in cache); escapes hold
        # offset + size until their values are read.
        values = np.empty(index.size, dtype=np.int32 if tables.values_fit_int32 else np.int64)
        offsets = tables.offsets.astype(values.dtype)  # scalars of the values' type keep the adds in it
        escaped_rows = []
        for table in np.flatnonzero(counts):
            start, end, offset = starts[table], ends[table], offsets[table]
            if skip_certain and tables.certain[table]:
                values[start:end] = offset + tables.modes[table]
                continue
            group_codes = coder.decode(tables.models[table], int(counts[table]))
            np.add(group_codes, offset, out=values[start:end])
            if group_codes.max() == tables.sizes[table]:  # the escape is the largest code
                escaped_rows.append(start + np.flatnonzero(group_codes == tables.sizes[table]))
        if skipped.size:
            escaped_rows.append(_decode_exceptions(coder, values, skipped, starts, counts, tables))
        escaped_rows = np.concatenate(escaped_rows) if escaped_rows else np.zeros(0, dtype=np.intp)

        symbols = np.empty(index.size, dtype=values.dtype)
        symbols[order] = values
        symbols = symbols.astype(np.int64, copy=False)
        if escaped_rows.size:
            positions = np.sort(order[escaped_rows])  # escapes are coded in symbol order
            values = _decode_escapes(coder, positions.size)
            below = (values & 1).astype(bool)
            offset = values >> 1
            table = index[positions]
            symbols[positions] = np.where(
                below,
                tables.offsets[table] - 1 - offset,
                tables.offsets[table] + tables.sizes[table] + offset,
            )
        if not coder.is_empty():
            raise FormatError("corrupt stream: data left over after the last symbol")
    except ValueError as exc:  # constriction rejects malformed ANS data with ValueError
        raise FormatError(f"corrupt stream: {exc}") from None
    return symbols


def _decode_exceptions(
    coder, values: np.ndarray, skipped: np.ndarray, starts: np.ndarray, counts: np.ndarray, tables: SymbolTables
) -> np.ndarray:
    """Read the exceptions among the skipped groups into ``values`` (grouped order, escapes as offset +
    size); returns the rows of those that are escapes."""
    skipped_counts = counts[skipped]
    skipped_ends = np.cumsum(skipped_counts)
    total = int(skipped_ends[-1])
    # Check each value read before it sizes anything: a corrupt count or gap must not allocate or loop.
    count = int(_decode_escapes(coder, 1)[0])
    if count > total:
        raise FormatError(f"corrupt stream: {count} exceptions among only {total} skipped symbols")
    if count == 0:
        return np.zeros(0, dtype=np.intp)
    gaps = _decode_escapes(coder, count)
    if gaps.max() >= total:
        raise FormatError("corrupt stream: an exception gap runs past the skipped symbols")
    positions = np.cumsum(gaps + 1) - 1
    if positions[-1] >= total:
        raise FormatError("corrupt stream: exception positions run past the skipped symbols")
    group = np.searchsorted(skipped_ends, positions, side="right")
    rows = starts[skipped[group]] + positions - (skipped_ends[group] - skipped_counts[group])
    per_group = np.bincount(group, minlength=skipped.size)
    escaped_rows = []
    first = 0
    for table, n in zip(skipped, per_group):
        if n == 0:
            continue
        table_rows = rows[first : first + n]
        first += n
        if tables.exception_models[table] is None:
            table_codes = np.full(n, tables.sizes[table])  # the escape is the only code besides the mode
        else:
            reduced = coder.decode(tables.exception_models[table], int(n))
            table_codes = reduced + (reduced >= tables.modes[table])
        values[table_rows] = tables.offsets[table] + table_codes
        escaped_rows.append(table_rows[table_codes == tables.sizes[table]])
    return np.concatenate(escaped_rows)


def _encode_escapes(coder, values: np.ndarray) -> None:
    """Elias-gamma code of values >= 0: exponent n, then the n bits below the leading one."""
    v = values.astype(np.int64) + 1
    if (v >= 1 << (_MAX_ESCAPE_BITS + 1)).any():
        raise ValueError("symbol too far outside its table to be coded (latent values out of range)")
    n = np.floor(np.log2(v.astype(np.float64))).astype(np.int64)
    # float log2 can be off by one near powers of two; correct it exactly.
    n -= (np.left_shift(1, n) > v).astype(np.int64)
    n += (np.left_shift(1, n + 1) <= v).astype(np.int64)
    rest = v - np.left_shift(1, n)
    low_bits = np.clip(n, 1, _LOW_BITS)
    high_bits = np.clip(n - _LOW_BITS, 1, None)
    uniform = constriction.stream.model.Uniform()
    coder.encode_reverse((rest >> _LOW_BITS).astype(np.int32), uniform, np.left_shift(1, high_bits).astype(np.int32))
    coder.encode_reverse((rest & ((1 << _LOW_BITS) - 1)).astype(np.int32), uniform, np.left_shift(1, low_bits).astype(np.int32))
    coder.encode_reverse(n.astype(np.int32), constriction.stream.model.Uniform(_MAX_ESCAPE_BITS + 1))


def _decode_escapes(coder, count: int) -> np.ndarray:
    n = coder.decode(constriction.stream.model.Uniform(_MAX_ESCAPE_BITS + 1), count).astype(np.int64)
    uniform = constriction.stream.model.Uniform()
    low_bits = np.clip(n, 1, _LOW_BITS)
    high_bits = np.clip(n - _LOW_BITS, 1, None)
    low = coder.decode(uniform, np.left_shift(1, low_bits).astype(np.int32)).astype(np.int64)
    high = coder.decode(uniform, np.left_shift(1, high_bits).astype(np.int32)).astype(np.int64)
    rest = (high << _LOW_BITS) | low
    if ((n <= _LOW_BITS) & (high != 0)).any() or (rest >= np.left_shift(1, n)).any():
        raise FormatError("corrupt stream: invalid escape code")
    return np.left_shift(1, n) + rest - 1


def encode_substreams(
    symbols: np.ndarray,
    table_index: np.ndarray,
    tables: SymbolTables,
    count: int,
    *,
    skip_certain: bool = False,
    executor: Executor | None = None,
) -> list[bytes]:
    """Split the symbols (in their given order) into ``count`` contiguous near-equal parts, as
    ``np.array_split`` does, and code each as an independent :func:`encode_symbols` stream.

    ``executor`` (optional) codes the parts concurrently. constriction holds the GIL while it codes (two
    threads coding at once take as long as one after the other); a thread pool gains only where work
    that releases the GIL overlaps with it: torch ops on other threads, or this module's own numpy
    sorting and gathering on large parts (measured on 2 CPUs, 2 parts: +30% at 4M symbols, within
    +-10% at a Kodak latent's 295k). A ProcessPoolExecutor codes in parallel but pickles every part,
    the tables and the result between processes: no faster than serial at either size on 2 CPUs
    (benchmarks/coder_speed.py --process-pool).
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 1 <= count <= CODER_MAX_SPLIT:
        raise ValueError(f"the substream count must be an integer in 1..{CODER_MAX_SPLIT}, got {count!r}")
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    index = _table_index(table_index, tables)
    if symbols.shape != index.shape:
        raise ValueError("symbols and table_index must have the same number of elements")
    parts = np.array_split(symbols, int(count))
    indices = np.array_split(index, int(count))
    if executor is None:
        return [encode_symbols(s, i, tables, skip_certain=skip_certain) for s, i in zip(parts, indices)]
    skips = [skip_certain] * len(parts)
    return list(executor.map(_encode_part, parts, indices, [tables] * len(parts), skips))


def decode_substreams(
    streams: Sequence[bytes],
    table_index: np.ndarray,
    tables: SymbolTables,
    *,
    skip_certain: bool = False,
    executor: Executor | None = None,
) -> np.ndarray:
    """Inverse of :func:`encode_substreams`: the split follows from ``len(streams)`` and the number of
    table indices. ``executor`` decodes the parts concurrently (see :func:`encode_substreams`)."""
    if not streams:
        raise FormatError("corrupt stream: no substreams")
    if len(streams) > CODER_MAX_SPLIT:
        raise FormatError(f"corrupt stream: {len(streams)} substreams, at most {CODER_MAX_SPLIT} are allowed")
    index = _table_index(table_index, tables)
    indices = np.array_split(index, len(streams))
    if executor is None:
        parts = [decode_symbols(d, i, tables, skip_certain=skip_certain) for d, i in zip(streams, indices)]
    else:
        skips = [skip_certain] * len(indices)
        parts = list(executor.map(_decode_part, streams, indices, [tables] * len(indices), skips))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


# Module-level functions, so that process pools can pickle them.
def _encode_part(symbols: np.ndarray, index: np.ndarray, tables: SymbolTables, skip_certain: bool) -> bytes:
    return encode_symbols(symbols, index, tables, skip_certain=skip_certain)


def _decode_part(data: bytes, index: np.ndarray, tables: SymbolTables, skip_certain: bool) -> np.ndarray:
    return decode_symbols(data, index, tables, skip_certain=skip_certain)

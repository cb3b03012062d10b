"""Entropy coding of integer symbols with ANS (constriction), one discrete table per symbol.

A stream codes symbols that each name the table they use. Symbols are grouped by table and each group
is coded with that table's precomputed categorical model, which is much faster than a model per symbol.
Each table has one extra "escape" entry; a symbol outside the table's range codes the escape, and its
value is then coded exactly with an Elias-gamma code on uniform models, so any integer round-trips.

Stream layout: the ANS words (little-endian uint32), nothing else; the symbol count and table indices
are known to the decoder from the context.
"""

from __future__ import annotations

from collections.abc import Sequence

import constriction
import numpy as np

from evc.errors import FormatError

_ESCAPE_MIN_PROB = 1e-9
_MAX_ESCAPE_BITS = 32  # an escaped offset w satisfies w + 1 < 2**(_MAX_ESCAPE_BITS + 1)
_LOW_BITS = 16


class SymbolTables:
    """Discrete distributions over integer ranges [offset, offset + size), each with an escape entry."""

    def __init__(self, pmfs: Sequence[tuple[np.ndarray, int]]) -> None:
        if not pmfs:
            raise ValueError("at least one table is needed")
        self.offsets = np.array([offset for _, offset in pmfs], dtype=np.int64)
        self.sizes = np.array([len(pmf) for pmf, _ in pmfs], dtype=np.int64)
        self.models = []
        for pmf, _ in pmfs:
            pmf = np.clip(np.asarray(pmf, dtype=np.float64), 0.0, None)
            escape = max(1.0 - float(pmf.sum()), _ESCAPE_MIN_PROB)
            probabilities = np.append(pmf, escape)
            self.models.append(constriction.stream.model.Categorical(probabilities, perfect=False))

    def __len__(self) -> int:
        return len(self.models)


def _group(table_index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(table_index, kind="stable")
    tables, counts = np.unique(table_index[order], return_counts=True)
    return order, tables, counts


def encode_symbols(symbols: np.ndarray, table_index: np.ndarray, tables: SymbolTables) -> bytes:
    """Code integer ``symbols`` (any shape), each with the table named by ``table_index``."""
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    table_index = np.asarray(table_index, dtype=np.int64).ravel()
    if symbols.shape != table_index.shape:
        raise ValueError("symbols and table_index must have the same number of elements")
    if symbols.size == 0:
        return b""
    relative = symbols - tables.offsets[table_index]
    sizes = tables.sizes[table_index]
    escaped = (relative < 0) | (relative >= sizes)
    codes = np.where(escaped, sizes, relative).astype(np.int32)

    coder = constriction.stream.stack.AnsCoder()
    # The coder is a stack: push what the decoder reads last (escape values) first.
    if escaped.any():
        below = relative[escaped] < 0
        offset = np.where(below, -relative[escaped] - 1, relative[escaped] - sizes[escaped])
        _encode_escapes(coder, 2 * offset + below)
    order, group_tables, counts = _group(table_index)
    sorted_codes = codes[order]
    ends = np.cumsum(counts)
    for table, end, count in zip(group_tables[::-1], ends[::-1], counts[::-1]):
        coder.encode_reverse(sorted_codes[end - count : end], tables.models[table])
    return coder.get_compressed().astype("<u4").tobytes()


def decode_symbols(data: bytes, table_index: np.ndarray, tables: SymbolTables) -> np.ndarray:
    """Inverse of :func:`encode_symbols`; returns int64 symbols in the order of ``table_index``."""
    table_index = np.asarray(table_index, dtype=np.int64).ravel()
    if table_index.size == 0:
        if data:
            raise FormatError("corrupt stream: data where no symbols are expected")
        return np.zeros(0, dtype=np.int64)
    if len(data) % 4 != 0 or not data:
        raise FormatError("corrupt stream: its length is not a whole number of 32-bit words")
    try:
        coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        order, group_tables, counts = _group(table_index)
        sorted_codes = np.concatenate(
            [coder.decode(tables.models[t], int(n)) for t, n in zip(group_tables, counts)]
        ).astype(np.int64)
        codes = np.empty_like(sorted_codes)
        codes[order] = sorted_codes
        sizes = tables.sizes[table_index]
        escaped = codes == sizes
        symbols = codes + tables.offsets[table_index]
        if escaped.any():
            values = _decode_escapes(coder, int(escaped.sum()))
            below = (values & 1).astype(bool)
            offset = values >> 1
            symbols[escaped] = np.where(
                below,
                tables.offsets[table_index[escaped]] - 1 - offset,
                tables.offsets[table_index[escaped]] + sizes[escaped] + offset,
            )
        if not coder.is_empty():
            raise FormatError("corrupt stream: data left over after the last symbol")
    except ValueError as exc:  # constriction rejects malformed ANS data with ValueError
        raise FormatError(f"corrupt stream: {exc}") from None
    return symbols


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

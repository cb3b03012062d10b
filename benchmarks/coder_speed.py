"""ANS coder throughput and rate on a synthetic latent with trained-like statistics, variants side by side.

    python benchmarks/coder_speed.py [--symbols 294912] [--repeat 5] [--certain-share 0.45]
                                     [--epsilons 1e-5 1e-4 1e-3 1e-2] [--process-pool]

Rows: the coder, the coder skipping certain symbols, and 2 / 4 substreams coded one after the other
and with a thread pool (optionally a process pool). Every variant's output is checked to decode exactly.
``--epsilons`` also sweeps the threshold that makes a table certain (what CERTAIN_EPSILON was
chosen from). The default size is a Kodak image's latent (192 x 32 x 48).

The latent: ``--certain-share`` of the elements at scale indices 0-5 (sigma 0.11-0.125, where a
trained model puts many elements), the rest at 6 + Gamma(2, 25) (clipped to the table), each value
drawn from its scale's Gaussian and rounded.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np

from evc.entropy.coder import (
    CERTAIN_EPSILON,
    SymbolTables,
    decode_substreams,
    decode_symbols,
    encode_substreams,
    encode_symbols,
)
from evc.entropy.gaussian import NUM_SCALES, scale_pmfs, scale_table


# -- the benchmark -------------------------------------------------------------------------------
def synthetic_latent(size: int, certain_share: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(symbols int64, scale index int32, as the codec passes it) with trained-like statistics."""
    rng = np.random.default_rng(seed)
    smallest = rng.random(size) < certain_share
    spread = np.clip(6 + rng.gamma(2.0, 25.0, size).astype(np.int64), 0, NUM_SCALES - 1)
    index = np.where(smallest, rng.integers(0, 6, size), spread).astype(np.int32)
    symbols = np.round(rng.normal(0.0, scale_table().numpy().astype(np.float64)[index])).astype(np.int64)
    return symbols, index


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(
    encode: Callable[[], object], decode: Callable[[object], np.ndarray], symbols: np.ndarray, repeat: int
) -> tuple[float, float, int]:
    """(encode M symbols/s, decode M symbols/s, bits) of one variant, after checking it round-trips."""
    coded = encode()
    if not np.array_equal(decode(coded), symbols):
        raise AssertionError("a coder variant failed to round-trip")
    bits = 8 * (len(coded) if isinstance(coded, bytes) else sum(len(part) for part in coded))
    encode_s = median_seconds(encode, repeat)
    decode_s = median_seconds(lambda: decode(coded), repeat)
    return symbols.size / encode_s / 1e6, symbols.size / decode_s / 1e6, bits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=192 * 32 * 48, help="latent elements (default: Kodak size)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (median)")
    parser.add_argument("--certain-share", type=float, default=0.45, help="share of elements at scale index 0-5")
    parser.add_argument("--epsilons", type=float, nargs="*", default=[], help="certain thresholds to sweep")
    parser.add_argument("--process-pool", action="store_true", help="also time substreams on a process pool")
    args = parser.parse_args()

    symbols, index = synthetic_latent(args.symbols, args.certain_share)
    tables = SymbolTables(scale_pmfs())
    skipped_share = float(tables.certain[index].mean())
    print(
        f"{args.symbols} symbols, {args.certain_share:.0%} at scale index 0-5, CERTAIN_EPSILON={CERTAIN_EPSILON:g} "
        f"({int(tables.certain.sum())} certain tables, {skipped_share:.1%} of the symbols), median of "
        f"{args.repeat}, {os.cpu_count()} CPUs"
    )
    thread_pool = ThreadPoolExecutor(max_workers=4)
    process_pool = ProcessPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) if args.process_pool else None
    variants: list[tuple[str, Callable[[], object], Callable[[object], np.ndarray]]] = [
        ("one stream", lambda: encode_symbols(symbols, index, tables), lambda d: decode_symbols(d, index, tables)),
        ("one stream + skip", lambda: encode_symbols(symbols, index, tables, skip_certain=True),
         lambda d: decode_symbols(d, index, tables, skip_certain=True)),
    ]

    def substreams(count: int, skip: bool, executor: Executor | None) -> tuple:
        return (
            lambda: encode_substreams(symbols, index, tables, count, skip_certain=skip, executor=executor),
            lambda d: decode_substreams(d, index, tables, skip_certain=skip, executor=executor),
        )

    pools: list[tuple[str, Executor | None]] = [("serial", None), ("threads", thread_pool)]
    if process_pool is not None:
        pools.append(("processes", process_pool))
    for skip in (False, True):
        for count in (2, 4):
            for pool_name, pool in pools:
                name = f"{count} substreams{' + skip' if skip else ''}, {pool_name}"
                variants.append((name, *substreams(count, skip, pool)))

    print(f"{'variant':40s} {'encode M/s':>11s} {'decode M/s':>11s} {'bits/symbol':>12s} {'vs one stream':>14s}")
    reference_bits = None
    for name, encode, decode in variants:
        encode_rate, decode_rate, bits = measure(encode, decode, symbols, args.repeat)
        reference_bits = reference_bits or bits  # the first row's
        change = f"{100 * (bits / reference_bits - 1):+.3f}%"
        print(f"{name:40s} {encode_rate:11.1f} {decode_rate:11.1f} {bits / symbols.size:12.5f} {change:>14s}")
    thread_pool.shutdown()
    if process_pool is not None:
        process_pool.shutdown()

    if args.epsilons:
        print("\ncertain threshold sweep (single stream, skip_certain=True vs False with the same tables)")
        print(f"{'epsilon':>8s} {'tables':>7s} {'max sigma':>10s} {'skipped':>8s} {'exceptions':>11s} "
              f"{'encode M/s':>11s} {'decode M/s':>11s} {'bits/symbol':>12s} {'bits vs no skip':>16s}")
        sigmas = scale_table().numpy()
        for epsilon in args.epsilons:
            swept = SymbolTables(scale_pmfs(), certain_epsilon=epsilon)
            certain = swept.certain[index]
            exceptions = int((symbols[certain] != (swept.offsets + swept.modes)[index[certain]]).sum())
            encode_rate, decode_rate, bits = measure(
                lambda: encode_symbols(symbols, index, swept, skip_certain=True),
                lambda d: decode_symbols(d, index, swept, skip_certain=True), symbols, args.repeat,
            )
            plain_bits = 8 * len(encode_symbols(symbols, index, swept))
            top = f"{sigmas[swept.certain].max():.3f}" if swept.certain.any() else "-"
            print(f"{epsilon:8g} {int(swept.certain.sum()):7d} {top:>10s} {certain.mean():8.1%} {exceptions:11d} "
                  f"{encode_rate:11.1f} {decode_rate:11.1f} {bits / symbols.size:12.5f} "
                  f"{100 * (bits / plain_bits - 1):+15.3f}%")


if __name__ == "__main__":
    main()

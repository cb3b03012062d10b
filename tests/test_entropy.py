"""Entropy models and the ANS symbol coder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evc.entropy.coder import SymbolTables, decode_symbols, encode_symbols
from evc.entropy.dual_prior import step_one_mask
from evc.entropy.factorized import FactorizedDensity
from evc.entropy.gaussian import NUM_SCALES, SIGMA_MAX, SIGMA_MIN, gaussian_bits, scale_index, scale_pmfs, scale_table
from evc.errors import FormatError
from evc.entropy.latent_codec import gaussian_tables


def test_scale_table_is_log_spaced() -> None:
    table = scale_table()
    assert len(table) == NUM_SCALES
    assert table[0].item() == pytest.approx(SIGMA_MIN) and table[-1].item() == pytest.approx(SIGMA_MAX)
    ratios = table[1:] / table[:-1]
    assert torch.allclose(ratios, ratios.mean().expand_as(ratios), rtol=1e-5)


def test_scale_index_picks_the_smallest_entry_not_below_sigma() -> None:
    table = scale_table()
    sigma = torch.tensor([0.0, 0.05, 0.11, table[10].item(), table[10].item() * 1.0001, 64.0, 1000.0])
    index = scale_index(sigma)
    assert index.tolist() == [0, 0, 0, 10, 11, 255, 255]
    assert index.dtype == torch.int32


def test_gaussian_bits_match_the_discretised_density() -> None:
    sigma = torch.tensor([0.5, 2.0, 10.0])
    residual = torch.tensor([0.0, 3.0, -7.0])
    p = [
        0.5 * (math.erf((r + 0.5) / (s * math.sqrt(2))) - math.erf((r - 0.5) / (s * math.sqrt(2))))
        for r, s in zip(residual.tolist(), sigma.tolist())
    ]
    expected = torch.tensor([-math.log2(v + 1e-5) for v in p])
    assert torch.allclose(gaussian_bits(residual, sigma), expected, rtol=1e-4)
    assert (gaussian_bits(torch.zeros(3), torch.full((3,), 1e-3)) >= 0).all()  # sigma floor, bits >= 0


def test_coder_round_trip_including_escapes() -> None:
    tables = gaussian_tables()
    rng = np.random.default_rng(0)
    index = rng.integers(0, NUM_SCALES, 20_000)
    sigma = scale_table()[index].numpy()
    symbols = np.round(rng.normal(0, sigma)).astype(np.int64)
    # Far outside every table: exercise every escape code length, both signs, near powers of two.
    extremes = [2**k + d for k in range(0, 31) for d in (-1, 0, 1)]
    symbols[: len(extremes)] = extremes
    symbols[len(extremes) : 2 * len(extremes)] = [-v for v in extremes]
    data = encode_symbols(symbols, index, tables)
    assert np.array_equal(decode_symbols(data, index, tables), symbols)


def test_coder_rate_is_close_to_the_information_content() -> None:
    tables = gaussian_tables()
    rng = np.random.default_rng(1)
    index = rng.integers(0, NUM_SCALES, 200_000)
    symbols = np.empty_like(index)
    ideal_bits = 0.0
    for k in np.unique(index):
        pmf, lowest = scale_pmfs()[k]
        chosen = index == k
        draws = rng.choice(len(pmf), size=chosen.sum(), p=pmf / pmf.sum())
        symbols[chosen] = draws + lowest
        ideal_bits += -np.log2(pmf[draws]).sum()
    real_bits = len(encode_symbols(symbols, index, tables)) * 8
    assert ideal_bits < real_bits < ideal_bits * 1.01 + 64


def test_coder_empty_and_deterministic() -> None:
    tables = gaussian_tables()
    assert encode_symbols(np.zeros(0), np.zeros(0, dtype=np.int64), tables) == b""
    assert decode_symbols(b"", np.zeros(0, dtype=np.int64), tables).size == 0
    symbols, index = np.arange(-50, 50), np.arange(100) % NUM_SCALES
    assert encode_symbols(symbols, index, tables) == encode_symbols(symbols.copy(), index.copy(), tables)


# A stream cut at a word boundary can decode to garbage without the coder noticing: files are
# protected by the container's stream lengths and CRC (tests/test_container.py).
@pytest.mark.parametrize(
    "mangle",
    [lambda d: d[:-1], lambda d: d + b"\x00\x00\x00\x01", lambda d: b"", lambda d: b"\x00" * 8],
)
def test_coder_rejects_broken_streams(mangle) -> None:
    tables = gaussian_tables()
    rng = np.random.default_rng(2)
    index = rng.integers(0, NUM_SCALES, 5_000)
    symbols = np.round(rng.normal(0, scale_table()[index].numpy())).astype(np.int64)
    data = encode_symbols(symbols, index, tables)
    with pytest.raises(FormatError):
        decode_symbols(mangle(data), index, tables)


def test_factorized_density_is_a_cdf_and_tables_code_its_samples() -> None:
    torch.manual_seed(0)
    density = FactorizedDensity(8)
    with torch.no_grad():
        density.h.add_(torch.randn_like(density.h))
        density.b.add_(torch.randn_like(density.b))
    x = torch.linspace(-2000, 2000, 4001).view(1, 1, -1, 1).expand(1, 8, -1, 1)
    cdf = density.cdf(x)
    assert (cdf[:, :, 1:] >= cdf[:, :, :-1]).all()
    assert cdf[:, :, 0].max() < 0.01 and cdf[:, :, -1].min() > 0.99
    pmfs = density.coding_pmfs()
    tables = SymbolTables(pmfs)
    assert len(tables) == 8
    for pmf, lo in pmfs:
        assert pmf.sum() > 1 - 1e-5 and (pmf >= 0).all()
    channel = np.repeat(np.arange(8), 100)
    symbols = np.concatenate([lo + np.arange(100) % len(pmf) for pmf, lo in pmfs]) + np.tile(
        np.r_[np.zeros(98, dtype=np.int64), [-500, 500]], 8
    )
    assert np.array_equal(decode_symbols(encode_symbols(symbols, channel, tables), channel, tables), symbols)


def test_dual_prior_steps_partition_the_latent() -> None:
    mask = step_one_mask(192, 5, 7, "cpu")
    assert mask.shape == (1, 192, 5, 7)
    assert mask.sum().item() * 2 in (192 * 35 - 96, 192 * 35, 192 * 35 + 96)
    # Each step holds both spatial phases (one per channel half) and both channel halves.
    assert mask[0, 0, 0, 0] and not mask[0, 96, 0, 0]
    assert not mask[0, 0, 0, 1] and mask[0, 96, 0, 1]
    assert torch.equal(mask[0, :96], mask[0, :1].expand(96, -1, -1))

"""Rate control: the bisection on synthetic rate curves, then real targets on a real (random) codec."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pytest

from evc.ratecontrol import TargetUnreachable, meet_target_bpp, meet_target_psnr

from conftest import random_codec, smooth_image


@dataclass
class Fake:
    q: int
    bpp: float
    psnr: float


def fake_encoder(calls: list[int]):
    def encode(q: int) -> Fake:
        calls.append(q)
        return Fake(q, bpp=100.0 / q, psnr=60.0 - 0.1 * q)

    return encode


def test_target_bpp_finds_the_best_quality_within_budget() -> None:
    calls: list[int] = []
    result = meet_target_bpp(fake_encoder(calls), 10, 200, target_bpp=1.3)  # 100/q <= 1.3 -> q >= 77
    assert result.q == 77
    assert len(calls) == len(set(calls)) and len(calls) <= 12  # memoised bisection, not a scan


def test_target_psnr_finds_the_lowest_rate_reaching_it() -> None:
    result = meet_target_psnr(fake_encoder([]), 10, 200, target_psnr=45.05)  # 60 - 0.1 q >= 45.05 -> q <= 149
    assert result.q == 149


def test_targets_at_the_ends_and_beyond() -> None:
    # A target that every rate meets gives the end of the range and says so (a quick start once taught
    # --target-psnr with a value below every setting: the smallest file came back without a word).
    with pytest.warns(UserWarning, match=r"50 bpp is above this model's highest rate .* \(10.0000 bpp, 59.00 dB\)"):
        assert meet_target_bpp(fake_encoder([]), 10, 200, target_bpp=50.0).q == 10
    with pytest.warns(UserWarning, match=r"10 dB is below this model's lowest quality .* \(0.5000 bpp, 40.00 dB\)"):
        assert meet_target_psnr(fake_encoder([]), 10, 200, target_psnr=10.0).q == 200
    with warnings.catch_warnings():  # a target inside the range: no warning
        warnings.simplefilter("error")
        meet_target_bpp(fake_encoder([]), 10, 200, target_bpp=9.9)
        meet_target_psnr(fake_encoder([]), 10, 200, target_psnr=40.1)
    with pytest.raises(TargetUnreachable, match="below this model's lowest rate"):
        meet_target_bpp(fake_encoder([]), 10, 200, target_bpp=0.1)
    with pytest.raises(TargetUnreachable, match="above this model's best quality"):
        meet_target_psnr(fake_encoder([]), 10, 200, target_psnr=70.0)
    with pytest.raises(ValueError):
        meet_target_bpp(fake_encoder([]), 10, 200, target_bpp=0.0)


@pytest.mark.filterwarnings("ignore:q index .* is past")  # one step finer than the result, maybe past the top anchor
def test_real_codec_meets_targets() -> None:
    codec = random_codec("EVC-SS")
    image = smooth_image(48, 64, seed=9)
    low, high = codec.encode(image, 0.0), codec.encode(image, 1.0)
    target = (low.bpp * high.bpp) ** 0.5
    result = codec.encode(image, target_bpp=target)
    assert result.bpp <= target
    assert len(result.data) * 8 / (64 * 48) == result.bpp
    finer = codec.encode(image, q_index=result.q_index - 1)
    assert finer.bpp > target or result.q_index == codec.q_index(1.0)

    # Random weights give a flat PSNR curve, so only the contract is checked here: a result that is
    # returned reaches the target (the search itself is tested on the synthetic curves above).
    target_psnr = high.psnr - 1e-3
    with warnings.catch_warnings():  # flat curve: the smallest file may already reach it (said by a warning)
        warnings.simplefilter("ignore", UserWarning)
        result = codec.encode(image, target_psnr=target_psnr)
    assert result.psnr >= target_psnr

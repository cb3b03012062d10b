"""Tiled execution (evc.nn.tiling): tiled == untiled, the analytic halo against a measured one, errors."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import pytest
import torch
from torch import nn

from evc.entropy.dual_prior import DualSpatialPrior
from evc.nn.blocks import ResidualBlockDown
from evc.nn.hyperprior import HyperAnalysis, HyperSynthesis, PriorFusion
from evc.nn.tiling import alignment, halo_for, receptive_radius, run_tiled, scale_factor
from evc.nn.transforms import AnalysisTransform, SynthesisTransform

EXACT = 1e-10  # float64: tiled and untiled differ only in summation order


def _net(factory: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return factory().double().eval()


def _g_a() -> nn.Module:
    return _net(lambda: AnalysisTransform("S"))


def _g_s() -> nn.Module:
    return _net(lambda: SynthesisTransform("S"))


def _h_s() -> nn.Module:
    return _net(HyperSynthesis)


def _prior_fusion() -> nn.Module:
    return _net(PriorFusion)


def _dual_net() -> nn.Module:
    return _net(lambda: DualSpatialPrior().net)


def _fusion_fn(net: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda t: torch.cat(net(t), dim=1)


def _mixed() -> nn.Module:
    """Down, then up, then a conv at the fine level: reaches do not simply add here (see tiling.py)."""
    return _net(
        lambda: nn.Sequential(
            nn.Conv2d(2, 4, 3, stride=2, padding=1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(4, 4, 3, padding=1),
            nn.PixelShuffle(2),
            nn.Conv2d(1, 2, 3, padding=1),
        )
    )


def _strided() -> nn.Module:
    """Even and odd strided kernels: reaches differ left and right (here 3 and 1 input pixels)."""
    return _net(
        lambda: nn.Sequential(
            nn.Conv2d(2, 3, 4, stride=2, padding=1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(3, 2, 3, stride=2, padding=1),
        )
    )


def _wide_shortcut() -> nn.Module:
    """A residual block whose shortcut reaches further than its main branch: branches take the union."""
    torch.manual_seed(0)
    block = ResidualBlockDown(2, 3)
    block.shortcut = nn.Conv2d(2, 3, 11, stride=2, padding=5)
    return block.double().eval()


def _input(channels: int, height: int, width: int, batch: int = 1, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, height, width, generator=gen, dtype=torch.float64)


def _tiled_matches(fn, x: torch.Tensor, scale, tile, halo: int, align: int = 1) -> float:
    with torch.no_grad():
        whole = fn(x)
        tiled = run_tiled(fn, x, scale=scale, tile=tile, halo=halo, align=align)
    assert tiled.shape == whole.shape and tiled.dtype == whole.dtype
    return (tiled - whole).abs().max().item()


# -- radii ------------------------------------------------------------------------------------------


def _summary(net: nn.Module, align: int = 1) -> tuple:
    return receptive_radius(net), scale_factor(net), alignment(net), halo_for(net, align)


def test_radii_scales_and_alignments() -> None:
    for size in "LMS":  # the sizes differ in channels only
        assert _summary(AnalysisTransform(size), 16) == (43, Fraction(1, 16), 16, 48)
        assert _summary(SynthesisTransform(size)) == (3, 16, 1, 3)
    assert _summary(HyperSynthesis()) == (2, 4, 1, 2)
    assert _summary(HyperAnalysis(), 4) == (4, Fraction(1, 4), 4, 4)
    assert _summary(PriorFusion()) == (2, 1, 1, 2)
    assert _summary(DualSpatialPrior().net) == (3, 1, 1, 3)
    assert _summary(_mixed(), 2) == (5, 1, 2, 6)
    assert _summary(_strided(), 4) == (3, Fraction(1, 4), 4, 4)
    assert receptive_radius(_wide_shortcut()) == 5


def test_radius_of_plain_layers() -> None:
    assert receptive_radius(nn.Conv2d(1, 1, 5, padding=2)) == 2
    assert receptive_radius(nn.Conv2d(1, 1, 3, padding=2, dilation=2)) == 2
    assert receptive_radius(nn.Conv2d(1, 1, (1, 7), padding="same")) == 3  # the wider axis counts
    assert receptive_radius(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1))) == 2
    # A stride-2 3x3 conv reads one pixel left of each output's 2x2 footprint, none to its right.
    assert receptive_radius(nn.Conv2d(1, 1, 3, stride=2, padding=1)) == 1
    assert scale_factor(nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(4, 4, 1, stride=2))) == Fraction(1, 4)
    assert halo_for(nn.Conv2d(1, 1, 3, padding=1), align=4) == 4


def _measured_reach(fn, net: nn.Module, channels: int, size: int) -> int:
    """Perturb one input pixel (one batch item per phase of the alignment grid) and return the largest
    distance, in input pixels, from a changed output pixel's footprint to the perturbed pixel."""
    inv = 1 / scale_factor(net)  # input pixels per output pixel
    phases = alignment(net)
    centre = size // 2 - phases // 2
    x = _input(channels, size, size)
    base = x.repeat(phases, 1, 1, 1)  # same shapes: unaffected outputs come out bit-identical
    perturbed = base.clone()
    for k in range(phases):
        perturbed[k, :, centre + k, centre + k] += 1.0
    with torch.no_grad():
        changed = (fn(perturbed) != fn(base)).any(dim=1)  # (phases, H', W')
    o = torch.arange(changed.shape[-1])
    lo = o * inv.numerator // inv.denominator  # the input pixels under output pixel o
    hi = ((o + 1) * inv.numerator + inv.denominator - 1) // inv.denominator - 1
    reach = 0
    for k in range(phases):
        p = centre + k
        dist = torch.clamp(torch.maximum(lo - p, p - hi), min=0)
        ky, kx = changed[k].nonzero(as_tuple=True)
        assert len(ky), "the perturbation changed nothing"
        reach = max(reach, int(torch.maximum(dist[ky], dist[kx]).max()))
    return reach


@pytest.mark.parametrize(
    ("make", "channels", "size", "wrap"),
    [
        (_g_a, 3, 128, None),
        (_g_s, 192, 9, None),
        (_h_s, 192, 7, None),
        (_prior_fusion, 192, 9, _fusion_fn),
        (_dual_net, 768, 9, None),
        (_mixed, 2, 24, None),
        (_strided, 2, 24, None),
        (_wide_shortcut, 2, 24, None),
    ],
    ids=["g_a", "g_s", "h_s", "prior_fusion", "dual_prior", "mixed", "strided", "wide_shortcut"],
)
def test_impulse_reach_equals_the_radius(make, channels: int, size: int, wrap) -> None:
    net = make()
    measured = _measured_reach(wrap(net) if wrap else net, net, channels, size)
    # The radius is a bound (measured <= radius) and, for these nets, attained exactly: not oversized.
    assert measured == receptive_radius(net)


# -- tiled == untiled -------------------------------------------------------------------------------


@pytest.mark.parametrize("tile", [16, 32, 48, (32, 64)])
def test_analysis_tiled_equals_untiled(tile) -> None:
    g_a = _g_a()
    x = _input(3, 80, 112)  # latent 5x7; 32 and 48 do not divide the image
    assert _tiled_matches(g_a, x, Fraction(1, 16), tile, halo_for(g_a, 16), align=16) < EXACT


@pytest.mark.parametrize("tile", [1, 2, 3, (2, 4)])
def test_synthesis_tiled_equals_untiled(tile) -> None:
    g_s = _g_s()
    assert _tiled_matches(g_s, _input(192, 5, 7), 16, tile, halo_for(g_s)) < EXACT


def test_large_transforms_tiled_equal_untiled() -> None:
    g_a, g_s = _net(lambda: AnalysisTransform("L")), _net(lambda: SynthesisTransform("M"))
    assert _tiled_matches(g_a, _input(3, 48, 64), Fraction(1, 16), 32, halo_for(g_a, 16), align=16) < EXACT
    assert _tiled_matches(g_s, _input(192, 3, 4), 16, 2, halo_for(g_s)) < EXACT


@pytest.mark.parametrize("tile", [2, 3, 4])
def test_entropy_networks_tiled_equal_untiled(tile: int) -> None:
    h_s, fusion, dual = _h_s(), _prior_fusion(), _dual_net()
    assert _tiled_matches(h_s, _input(192, 5, 7), 4, tile, halo_for(h_s)) < EXACT
    assert _tiled_matches(_fusion_fn(fusion), _input(192, 7, 9), 1, tile, halo_for(fusion)) < EXACT
    assert _tiled_matches(dual, _input(768, 7, 9), 1, tile, halo_for(dual)) < EXACT


def test_custom_nets_tiled_equal_untiled() -> None:
    net = _mixed()
    halo = halo_for(net, 2)  # 6; a continuous sum of reaches (4) would leave seams
    for tile in (2, 4, 6):
        assert _tiled_matches(net, _input(2, 14, 18), 1, tile, halo, align=2) < EXACT
    assert _tiled_matches(net, _input(2, 14, 18), 1, 4, 4, align=2) > 1e-6
    net = _strided()
    for tile in (4, 8, (4, 12)):
        assert _tiled_matches(net, _input(2, 20, 28), Fraction(1, 4), tile, halo_for(net, 4), 4) < EXACT
    assert _tiled_matches(net, _input(2, 20, 28), Fraction(1, 4), 8, 0, align=4) > 1e-6


def test_too_small_halo_leaves_seams() -> None:
    g_a, g_s, fusion = _g_a(), _g_s(), _prior_fusion()
    assert _tiled_matches(g_a, _input(3, 80, 112), Fraction(1, 16), 32, halo_for(g_a, 16) - 16, align=16) > 1e-6
    assert _tiled_matches(g_s, _input(192, 5, 7), 16, 2, halo_for(g_s) - 1) > 1e-6
    assert _tiled_matches(_fusion_fn(fusion), _input(192, 7, 9), 1, 3, halo_for(fusion) - 1) > 1e-6
    assert _tiled_matches(fusion.layers, _input(192, 7, 9), 1, 3, 0) > 1e-6


# -- run_tiled mechanics ------------------------------------------------------------------------------


def test_tiles_are_raster_ordered_and_bounded() -> None:
    x = _input(2, 10, 13)
    offsets, shapes = [], []

    def fn(t: torch.Tensor) -> torch.Tensor:
        offsets.append(t.storage_offset())
        shapes.append(tuple(t.shape[-2:]))
        return t * 2

    y = run_tiled(fn, x, scale=1, tile=4, halo=1)
    assert torch.equal(y, x * 2)
    assert len(offsets) == 3 * 4 and offsets == sorted(offsets)
    assert max(h for h, _ in shapes) <= 4 + 2 and max(w for _, w in shapes) <= 4 + 2


def test_single_tile_calls_fn_once_on_x() -> None:
    x = _input(3, 8, 8)
    calls = []

    def fn(t: torch.Tensor) -> torch.Tensor:
        calls.append(t)
        return t + 1

    y = run_tiled(fn, x, scale=1, tile=8, halo=2)
    assert len(calls) == 1 and calls[0] is x and torch.equal(y, x + 1)
    buffer = torch.empty(1, 3, 8, 8, dtype=torch.float32)
    assert run_tiled(fn, x, scale=1, tile=16, halo=0, out=buffer) is buffer
    assert torch.allclose(buffer.double(), x + 1)


def test_out_buffer_of_another_dtype() -> None:
    g_s = _g_s()
    z = _input(192, 4, 5)
    buffer = torch.zeros(1, 3, 64, 80, dtype=torch.float32)
    with torch.no_grad():
        result = run_tiled(g_s, z, scale=16.0, tile=2, halo=3, out=buffer)
        whole = g_s(z)
    assert result is buffer
    assert (buffer.double() - whole).abs().max() < 1e-5


def test_argument_errors() -> None:
    x = _input(3, 32, 32)
    ident = lambda t: t  # noqa: E731
    with pytest.raises(ValueError, match="B, C, H, W"):
        run_tiled(ident, x[0], scale=1, tile=8, halo=0)
    with pytest.raises(ValueError, match="multiple of align"):
        run_tiled(ident, x, scale=1, tile=12, halo=0, align=8)
    with pytest.raises(ValueError, match="multiple of align"):
        run_tiled(ident, x, scale=1, tile=16, halo=4, align=8)
    with pytest.raises(ValueError, match="halo must be at least 0"):
        run_tiled(ident, x, scale=1, tile=8, halo=-1)
    with pytest.raises(ValueError, match="tile must be at least 1"):
        run_tiled(ident, x, scale=1, tile=(8, 0), halo=0)
    with pytest.raises(ValueError, match="tile must be an int"):
        run_tiled(ident, x, scale=1, tile=8.0, halo=0)
    with pytest.raises(ValueError, match="scale must be positive"):
        run_tiled(ident, x, scale=0, tile=8, halo=0)
    with pytest.raises(ValueError, match="align"):
        run_tiled(ident, x, scale=Fraction(1, 16), tile=8, halo=0)  # tiles of half an output pixel
    with pytest.raises(ValueError, match="height"):
        run_tiled(ident, _input(3, 24, 32), scale=Fraction(1, 16), tile=16, halo=0, align=16)
    with pytest.raises(ValueError, match="is scale right"):
        run_tiled(ident, x, scale=2, tile=8, halo=0)
    with pytest.raises(ValueError, match="out has shape"):
        run_tiled(ident, x, scale=1, tile=8, halo=0, out=torch.empty(1, 3, 32, 31))
    with pytest.raises(ValueError, match="out has shape"):
        run_tiled(ident, x, scale=1, tile=64, halo=0, out=torch.empty(1, 4, 32, 32))


def test_analysis_errors() -> None:
    with pytest.raises(ValueError, match="MaxPool2d"):
        receptive_radius(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.MaxPool2d(2)))
    with pytest.raises(ValueError, match="DualSpatialPrior"):
        receptive_radius(DualSpatialPrior())  # not a plain function of one tensor; use its .net
    with pytest.raises(ValueError, match="scales height by"):
        scale_factor(nn.Conv2d(1, 1, 3, stride=(2, 1)))
    with pytest.raises(ValueError, match="multiple of 16"):
        halo_for(AnalysisTransform("S"), align=8)

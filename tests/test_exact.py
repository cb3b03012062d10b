"""Exact (fixed-point) entropy parameters: bit-identical everywhere, and close to the float networks."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import evc
from evc.entropy.dual_prior import step_one_mask
from evc.entropy.gaussian import SIGMA_MIN, scale_index
from evc.models.evc import EVC
from evc.nn import exact
from evc.nn.blocks import ConvFFN, DepthConv, DepthConvBlock, SubpelConv1x1
from evc.entropy.exact_parameters import ExactEntropyParameters
from evc.nn.exact import from_fixed, to_fixed
from evc.nn.hyperprior import Q_STEP_MIN

FA, FW = exact.ACTIVATION_FRAC_BITS, exact.WEIGHT_FRAC_BITS
LIMIT = int(exact.ACTIVATION_LIMIT) << FA


@pytest.fixture(scope="module")
def model() -> EVC:
    return evc.create_model("EVC-SS", seed=0).eval()


@pytest.fixture(scope="module")
def params(model: EVC) -> ExactEntropyParameters:
    return ExactEntropyParameters(model)


def random_z(height: int = 2, width: int = 3, seed: int = 0, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-6, 7, (batch, 192, height, width), generator=g).float()


def step_one_input(mu: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """y_hat of step 1 as the codec forms it: integer symbols + mu where coded, zero elsewhere."""
    g = torch.Generator().manual_seed(seed)
    # Drawn sample by sample, so that sample 0 of a batch gets the symbols of a batch of one.
    symbols = torch.cat([torch.randint(-4, 5, (1, *mu.shape[1:]), generator=g) for _ in range(mu.shape[0])])
    symbols = symbols.to(mu.device, mu.dtype)
    mask = step_one_mask(mu.shape[1], mu.shape[2], mu.shape[3], mu.device)
    return torch.where(mask, symbols + mu, torch.zeros_like(mu))


def run_all(params: ExactEntropyParameters, z: torch.Tensor) -> list[torch.Tensor]:
    q_step, sigma, mu = params.hyper(z)
    mu2, sigma2 = params.step_two(step_one_input(mu), mu, sigma, q_step)
    return [q_step, sigma, mu, mu2, sigma2]


# -- an independent reference: int64 arithmetic, unfold + integer matmul, reversed summation order --


def ref_conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    w = torch.round(conv.weight.detach().double() * 2.0**FW).long()
    b = torch.round(conv.bias.detach().double() * 2.0 ** (FA + FW)).long()
    batch, c, h, width = x.shape
    if conv.groups == 1:
        acc = torch.matmul(w.flatten(1).flip(1), x.flatten(2).flip(1))
    else:  # depthwise 3x3: the nine taps of each channel, summed last tap first
        cols = F.unfold(x.double(), 3, padding=1).long().view(batch, c, 9, h * width)
        acc = (cols.flip(2) * w.view(c, 9).flip(1)[None, :, :, None]).sum(dim=2)
    acc = acc + b[:, None]
    out = (acc + (1 << (FW - 1))) >> FW  # arithmetic shift: floor, so round half up
    return out.clamp(-LIMIT, LIMIT).view(batch, -1, h, width)


def ref_act(x: torch.Tensor, act: nn.Module) -> torch.Tensor:
    if isinstance(act, nn.Identity):
        return x
    slope = round(act.negative_slope * 2**FW)
    return torch.where(x >= 0, x, (x * slope + (1 << (FW - 1))) >> FW)


def ref_module(x: torch.Tensor, m: nn.Module) -> torch.Tensor:
    if isinstance(m, nn.Sequential):
        for child in m:
            x = ref_module(x, child)
        return x
    if isinstance(m, DepthConvBlock):
        return ref_module(ref_module(x, m.depth), m.ffn)
    if isinstance(m, SubpelConv1x1):
        return F.pixel_shuffle(ref_conv(x, m.conv), m.shuffle.upscale_factor)
    if isinstance(m, DepthConv):
        identity = x if m.adaptor is None else ref_conv(x, m.adaptor)
        out = ref_act(ref_conv(ref_act(ref_conv(x, m.conv1), m.act1), m.depth_conv), m.act2)
        return (ref_act(ref_conv(out, m.conv2), m.act3) + identity).clamp(-LIMIT, LIMIT)
    if isinstance(m, ConvFFN):
        out = ref_act(ref_conv(ref_act(ref_conv(x, m.expand), m.act1), m.project), m.act2)
        return (x + out).clamp(-LIMIT, LIMIT)
    raise AssertionError(type(m))


def ints(x: torch.Tensor) -> torch.Tensor:
    scaled = x.double() * 2.0**FA
    assert torch.equal(scaled, scaled.round()), "not a multiple of 2**-FA"
    return scaled.long()


# -- tests ---------------------------------------------------------------------------------------------


def test_outputs_are_on_the_grid_and_independent_of_thread_count(params: ExactEntropyParameters) -> None:
    z = random_z()
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run_all(params, z)
        torch.set_num_threads(2)
        two = run_all(params, z)
    finally:
        torch.set_num_threads(previous)
    assert [t.shape[1:] for t in one] == [(192, 8, 12)] * 5
    for a, b in zip(one, two):
        assert a.dtype == torch.float64
        ints(a)
        assert torch.equal(a, b)
    assert one[0].min() >= 0.5  # q_step is lower-bounded


def test_bit_identical_to_an_int64_reference(model: EVC, params: ExactEntropyParameters) -> None:
    z = random_z(seed=3)
    q_step, sigma, mu, mu2, sigma2 = run_all(params, z)
    with torch.no_grad():
        hidden = ref_module(z.long() << FA, model.h_s.layers)
        ref_q, ref_sigma, ref_mu = ref_module(hidden, model.prior_fusion.layers).chunk(3, dim=1)
        ref_q = ref_q.clamp_min(1 << (FA - 1))
        inputs = torch.cat([ints(step_one_input(mu)), ref_mu, ref_sigma, ref_q], dim=1)
        s0, m0, s1, m1 = ref_module(inputs, model.dual_prior.net).chunk(4, dim=1)
    for got, want in zip((q_step, sigma, mu, mu2, sigma2), (ref_q, ref_sigma, ref_mu, torch.cat([m0, m1], 1),
                                                            torch.cat([s0, s1], 1))):
        assert torch.equal(ints(got), want)


def test_batch_and_position_do_not_change_the_result(params: ExactEntropyParameters) -> None:
    z = random_z(seed=5)
    single = run_all(params, z)
    # A batch of two (non-contiguous channel splits inside) gives each sample its own result.
    batched = run_all(params, torch.cat([z, random_z(seed=6)]))
    for a, b in zip(single, batched):
        assert torch.equal(a, b[:1])
    # A crop: away from the crop's border the values are the whole image's, although the GEMMs have
    # other shapes. Zero padding at the crop's edge reaches 9 latent pixels in (1 hyper-latent pixel =
    # 4 latent pixels in h_s's first block, then 2 + 1 + 2 depthwise taps); 10 are left out.
    big = random_z(8, 8, seed=8)
    whole = params.hyper(big)
    rows, cols, margin = (1, 7), (1, 7), 10
    for crop, full in zip(params.hyper(big[:, :, rows[0] : rows[1], cols[0] : cols[1]]), whole):
        inner = crop[:, :, margin:-margin, margin:-margin]
        assert inner.shape[-2:] == (4, 4)
        r0, r1, c0, c1 = 4 * rows[0] + margin, 4 * rows[1] - margin, 4 * cols[0] + margin, 4 * cols[1] - margin
        expected = full[:, :, r0:r1, c0:c1]
        assert torch.equal(inner, expected)
    # ...and the border really does differ, so the check above is not vacuous.
    assert not torch.equal(params.hyper(big[:, :, 1:7, 1:7])[1][:, :, :4], whole[1][:, :, 4:8, 4:28])


def test_close_to_the_float_networks(model: EVC, params: ExactEntropyParameters) -> None:
    z = random_z(4, 6, seed=7)
    q_step, sigma, mu = params.hyper(z)
    y1 = step_one_input(mu)
    mu2, sigma2 = params.step_two(y1, mu, sigma, q_step)
    with torch.no_grad():
        f_q, f_sigma, f_mu = model.prior_fusion(model.h_s(z))
        f_q = f_q.clamp_min(Q_STEP_MIN)  # the float path's bound
        # Same inputs for step 2, so that only that network's deviation is measured.
        f_mu2, f_sigma2 = model.dual_prior.step_two_params(y1.float(), mu.float(), sigma.float(), q_step.float())
    pairs = {"q_step": (q_step, f_q), "sigma": (sigma, f_sigma), "mu": (mu, f_mu),
             "mu2": (mu2, f_mu2), "sigma2": (sigma2, f_sigma2)}
    for name, (got, want) in pairs.items():
        err = (got - want.double()).abs()
        rel = err.max().item() / want.abs().max().item()
        print(f"{name:>7}: max |exact - float32| {err.max().item():.2e}, relative to max |value| {rel:.2e}")
        assert err.max() < 1e-3 and rel < 1e-3
    for name in ("sigma", "sigma2"):
        got, want = pairs[name]
        in_table = want > SIGMA_MIN  # below the table every sigma maps to index 0: no information
        agree = (scale_index(got) == scale_index(want))[in_table].double().mean().item()
        print(f"{name:>7}: scale index equal to the float path's for {agree:.3%} of the "
              f"{int(in_table.sum())} elements with sigma > {SIGMA_MIN}")
        assert agree > 0.99


def test_weights_beyond_the_bound_saturate_their_input_lower() -> None:
    model = evc.create_model("EVC-SS", seed=0)
    layer = model.dual_prior.net[1].ffn.project
    untouched = ExactEntropyParameters(model)
    z = random_z(2, 3)
    before = run_all(untouched, z)
    with torch.no_grad():
        layer.weight[5].fill_(0.2)  # L1 norm 0.2 * 1024 inputs: beyond 2**53 at the activation limit
    params = ExactEntropyParameters(model)  # converts: the layer gets a lower input bound
    outputs = run_all(params, z)
    assert all(torch.equal(a, b) for a, b in zip(outputs, run_all(ExactEntropyParameters(model), z)))
    assert not torch.equal(outputs[-1], before[-1])  # the changed layer changed its outputs, on the grid
    for t in outputs:
        assert torch.equal(t * 2**FA, (t * 2**FA).round())
    with torch.no_grad():
        layer.weight[5].fill_(20.0)  # exact only for inputs below ~1: refused
    with pytest.raises(ValueError, match=r"dual_prior\.net\.1\.ffn\.project"):
        ExactEntropyParameters(model)
    with torch.no_grad():
        layer.weight[5].fill_(float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        ExactEntropyParameters(model)


def test_the_bound_is_exact_at_the_edge() -> None:
    # One output channel, |w_int| summing to 2**25 - 1: with A = 2**28 the worst case is 2**53 - 2**28.
    assert LIMIT == 2**28
    weight = torch.tensor([[2.0**24, 2.0**24 - 1]], dtype=torch.float64).view(1, 2, 1, 1)
    bias = torch.tensor([2.0**28 - 1], dtype=torch.float64)
    assert exact._input_limit("edge", weight, bias) == LIMIT  # 2**53 - 1: the activation limit holds
    lower = exact._input_limit("edge", weight, bias + 1)  # exactly 2**53: one step lower
    assert lower == LIMIT - 1 and (2**25 - 1) * lower + 2**28 < 2**53


def test_conversion_leaves_a_float64_model_alone() -> None:
    model = evc.create_model("EVC-SS", seed=0).double()
    before = {k: v.clone() for k, v in model.dual_prior.state_dict().items()}
    ExactEntropyParameters(model)
    assert all(torch.equal(v, before[k]) for k, v in model.dual_prior.state_dict().items())


def test_huge_inputs_saturate(params: ExactEntropyParameters) -> None:
    assert to_fixed(torch.tensor([1e30, -1e30, 1.0])).tolist() == [LIMIT, -LIMIT, 2**FA]
    values = torch.tensor([0.75, -3.0], dtype=torch.float64)
    assert torch.equal(from_fixed(to_fixed(values)), values)
    z = random_z(seed=9) * 1e6
    saturated = params.hyper(z)
    assert all(torch.isfinite(t).all() and t.abs().max() <= exact.ACTIVATION_LIMIT for t in saturated)
    # Beyond the limit every input is the limit: same result as clamping first.
    clamped = params.hyper(z.clamp(-exact.ACTIVATION_LIMIT, exact.ACTIVATION_LIMIT))
    assert all(torch.equal(a, b) for a, b in zip(saturated, clamped))
    with pytest.raises(ValueError, match="non-finite"):
        params.hyper(torch.full((1, 192, 2, 3), float("inf")))


def test_conversion_is_redone_when_weights_change() -> None:
    model = evc.create_model("EVC-SS", seed=0)
    params = ExactEntropyParameters(model)
    z = random_z()
    before = params.hyper(z)
    assert not params.refresh()
    state = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        model.prior_fusion.layers[1].ffn.project.bias.add_(0.25)  # in place: the version counter moves
    assert params.key != ExactEntropyParameters.weights_key(model)
    changed = params.hyper(z)
    assert not torch.equal(changed[1], before[1])
    assert params.key == ExactEntropyParameters.weights_key(model)
    model.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(params.hyper(z), before))


def test_unsupported_modules_are_refused() -> None:
    model = evc.create_model("EVC-SS", seed=0)
    model.h_s.layers[1] = nn.Sequential(nn.Conv2d(192, 768, 1), nn.ReLU(), nn.PixelShuffle(2))
    with pytest.raises(TypeError, match=r"h_s\.layers\.1\.1: .*ReLU"):
        ExactEntropyParameters(model)
    model = evc.create_model("EVC-SS", seed=0)
    model.dual_prior.net[0].depth.conv2.register_forward_hook(lambda m, i, o: o * 2)
    with pytest.raises(TypeError, match="hooks"):
        ExactEntropyParameters(model)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    model = evc.create_model("EVC-SS", seed=0)
    cpu = run_all(ExactEntropyParameters(model), random_z(4, 6))
    gpu = run_all(ExactEntropyParameters(model.cuda()), random_z(4, 6).cuda())
    assert all(torch.equal(a, b.cpu()) for a, b in zip(cpu, gpu))

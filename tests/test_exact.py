"""Exact (fixed-point) entropy parameters: bit-identical everywhere, and close to the float networks."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import evc
from evc.entropy.dual_prior import step_one_mask
from evc.entropy.gaussian import SIGMA_MIN, scale_index
from evc.models.card import ModelCard
from evc.models.evc import EVC
from evc.nn import exact
from evc.nn.blocks import ConvFFN, DepthConv, DepthConvBlock, SubpelConv1x1
from evc.entropy.exact_parameters import ExactEntropyParameters, exact_headroom, format_headroom
from evc.nn.exact import from_fixed, to_fixed
from evc.nn.hyperprior import Q_STEP_MIN

FA, FW = exact.ACTIVATION_FRAC_BITS, exact.WEIGHT_FRAC_BITS
LIMIT = int(exact.ACTIVATION_LIMIT) << FA
MIN_INPUT = 256 << FA  # the lowest input saturation a conv keeps 18 weight bits for (activation integers)


@pytest.fixture(scope="module")
def model() -> EVC:
    return evc.create_model("EVC-SS", seed=0).eval()


@pytest.fixture(scope="module")
def params(model: EVC) -> ExactEntropyParameters:
    return ExactEntropyParameters(model.entropy_networks)


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


def ref_plan(conv: nn.Conv2d) -> tuple[int, int]:
    """(weight fractional bits, input saturation in activation integers) of a conv, in Python integers:
    18 bits and the activation limit when every partial sum stays below 2**53; else 18 bits and the
    largest input bound that keeps them below 2**53, if at least 256 (and no weight alone reaches
    2**53 at the activation limit); else the most bits below 18 with exact sums at the activation limit."""
    weight, bias = conv.weight.detach().double(), conv.bias.detach().double()

    def integers(bits: int) -> tuple[list[int], list[int], int]:
        w = torch.round(weight * 2.0**bits).long().abs()
        b = torch.round(bias * 2.0 ** (FA + bits)).long() + ((1 << bits) >> 1)  # the rounding half
        return w.flatten(1).sum(1).tolist(), b.abs().tolist(), int(w.max())

    rows, biases, largest = integers(FW)
    if largest * LIMIT < 2**53:
        limit = min([LIMIT] + [(2**53 - 1 - b) // s for s, b in zip(rows, biases) if s])
        if limit >= MIN_INPUT:
            return FW, limit
    for bits in range(FW - 1, -1, -1):
        rows, biases, _ = integers(bits)
        if all(s * LIMIT + b < 2**53 for s, b in zip(rows, biases)):
            return bits, LIMIT
    raise AssertionError("no exact plan")


def ref_conv(x: torch.Tensor, conv: nn.Conv2d, limit: int | None = None) -> torch.Tensor:
    """The conv in int64; ``limit``: its input saturation if not its own (a GEMM shared with another)."""
    bits, own_limit = ref_plan(conv)
    limit = own_limit if limit is None else limit
    w = torch.round(conv.weight.detach().double() * 2.0**bits).long()
    b = torch.round(conv.bias.detach().double() * 2.0 ** (FA + bits)).long()
    x = x.clamp(-limit, limit)
    batch, c, h, width = x.shape
    if conv.groups == 1:
        acc = torch.matmul(w.flatten(1).flip(1), x.flatten(2).flip(1))
    else:  # depthwise 3x3: the nine taps of each channel, summed last tap first
        cols = F.unfold(x.double(), 3, padding=1).long().view(batch, c, 9, h * width)
        acc = (cols.flip(2) * w.view(c, 9).flip(1)[None, :, :, None]).sum(dim=2)
    acc = acc + b[:, None]
    out = (acc + ((1 << bits) >> 1)) >> bits  # arithmetic shift: floor, so round half up (none for 0 bits)
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
        # conv1 and the adaptor read the same input in one GEMM: both see the lower input saturation.
        limit = None if m.adaptor is None else min(ref_plan(m.conv1)[1], ref_plan(m.adaptor)[1])
        identity = x if m.adaptor is None else ref_conv(x, m.adaptor, limit)
        out = ref_act(ref_conv(ref_act(ref_conv(x, m.conv1, limit), m.act1), m.depth_conv), m.act2)
        return (ref_act(ref_conv(out, m.conv2), m.act3) + identity).clamp(-LIMIT, LIMIT)
    if isinstance(m, ConvFFN):
        out = ref_act(ref_conv(ref_act(ref_conv(x, m.expand), m.act1), m.project), m.act2)
        return (x + out).clamp(-LIMIT, LIMIT)
    raise AssertionError(type(m))


def ints(x: torch.Tensor) -> torch.Tensor:
    scaled = x.double() * 2.0**FA
    assert torch.equal(scaled, scaled.round()), "not a multiple of 2**-FA"
    return scaled.long()


def assert_matches_reference(model: EVC, params: ExactEntropyParameters, z: torch.Tensor) -> None:
    """All five outputs of the exact path are the int64 reference's, bit for bit."""
    q_step, sigma, mu, mu2, sigma2 = run_all(params, z)
    with torch.no_grad():
        hidden = ref_module((z.long() << FA).clamp(-LIMIT, LIMIT), model.h_s.layers)
        ref_q, ref_sigma, ref_mu = ref_module(hidden, model.prior_fusion.layers).chunk(3, dim=1)
        ref_q = ref_q.clamp_min(1 << (FA - 1))
        inputs = torch.cat([ints(step_one_input(mu)), ref_mu, ref_sigma, ref_q], dim=1)
        s0, m0, s1, m1 = ref_module(inputs, model.dual_prior.net).chunk(4, dim=1)
    for got, want in zip((q_step, sigma, mu, mu2, sigma2), (ref_q, ref_sigma, ref_mu, torch.cat([m0, m1], 1),
                                                            torch.cat([s0, s1], 1))):
        assert torch.equal(ints(got), want)


def entropy_convs(model: EVC) -> list[tuple[str, nn.Conv2d]]:
    """The convs of the entropy-parameter networks, named as exact_headroom names them."""
    return [
        (f"{root}.{name}", conv)
        for root, network in (("h_s.layers", model.h_s.layers), ("prior_fusion.layers", model.prior_fusion.layers),
                              ("dual_prior.net", model.dual_prior.net))
        for name, conv in network.named_modules()
        if isinstance(conv, nn.Conv2d)
    ]


# -- tests ---------------------------------------------------------------------------------------------


def run_on_one_and_two_threads(params: ExactEntropyParameters, z: torch.Tensor) -> tuple[list, list]:
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run_all(params, z)
        torch.set_num_threads(2)
        two = run_all(params, z)
    finally:
        torch.set_num_threads(previous)
    return one, two


def test_outputs_are_on_the_grid_and_independent_of_thread_count(params: ExactEntropyParameters) -> None:
    one, two = run_on_one_and_two_threads(params, random_z())
    assert [t.shape[1:] for t in one] == [(192, 8, 12)] * 5
    for a, b in zip(one, two):
        assert a.dtype == torch.float64
        ints(a)
        assert torch.equal(a, b)
    assert one[0].min() >= 0.5  # q_step is lower-bounded


def test_bit_identical_to_an_int64_reference(model: EVC, params: ExactEntropyParameters) -> None:
    assert_matches_reference(model, params, random_z(seed=3))


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
    untouched = ExactEntropyParameters(model.entropy_networks)
    z = random_z(2, 3)
    before = run_all(untouched, z)
    with torch.no_grad():
        layer.weight[5].fill_(0.2)  # L1 norm 0.2 * 1024 inputs: beyond 2**53 at the activation limit
    params = ExactEntropyParameters(model.entropy_networks)  # converts: the layer gets a lower input bound
    outputs = run_all(params, z)
    assert all(torch.equal(a, b) for a, b in zip(outputs, run_all(ExactEntropyParameters(model.entropy_networks), z)))
    assert not torch.equal(outputs[-1], before[-1])  # the changed layer changed its outputs, on the grid
    for t in outputs:
        assert torch.equal(t * 2**FA, (t * 2**FA).round())
    with torch.no_grad():
        layer.weight[5].fill_(20.0)  # exact only for inputs below ~1 at 18 bits: 10 weight bits instead
    assert {c.name: c.weight_bits for c in exact_headroom(model.entropy_networks)}["dual_prior.net.1.ffn.project"] == 10
    with torch.no_grad():
        layer.weight[5].fill_(1e5)  # a row L1 norm of 1e8: beyond even integer weights, refused
    with pytest.raises(ValueError, match=r"dual_prior\.net\.1\.ffn\.project"):
        ExactEntropyParameters(model.entropy_networks)
    with torch.no_grad():
        layer.weight[5].fill_(float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        ExactEntropyParameters(model.entropy_networks)


# -- weights far beyond the bound: fewer weight bits, still exact ------------------------------------------


@pytest.fixture(scope="module", params=[160, 320])
def scaled(request: pytest.FixtureRequest) -> EVC:
    """A seeded model whose entropy-network convs have ``factor`` times larger weights and biases: row L1
    norms up to about 2,900 (160x) and 5,800 (320x) against 18 at initialisation and 149 after 4 CPU hours
    of training; at 18 weight bits an input bound of 256 holds only up to about 2,000."""
    model = evc.create_model("EVC-SS", seed=0).eval()
    with torch.no_grad():
        for _, conv in entropy_convs(model):
            conv.weight.mul_(request.param)
            conv.bias.mul_(request.param)
    return model


def test_far_larger_weights_take_fewer_bits_and_stay_exact(scaled: EVC) -> None:
    plans = {name: ref_plan(conv) for name, conv in entropy_convs(scaled)}
    assert any(bits < FW for bits, _ in plans.values())  # rule 3
    assert any(bits == FW and limit < LIMIT for bits, limit in plans.values())  # rule 2
    fused = [n[: -len("adaptor")] for n in plans if n.endswith("adaptor")]
    assert any(plans[f"{p}conv1"][0] != plans[f"{p}adaptor"][0] for p in fused)  # one GEMM, two scales
    # The report agrees with the reference's plan (a GEMM's input bound is the lower of its convs').
    report = exact_headroom(scaled.entropy_networks)
    assert sorted(c.name for c in report) == sorted(plans)
    for conv in report:
        prefix = conv.name.rsplit(".", 1)[0] + "."
        limit = plans[conv.name][1]
        if prefix in fused and conv.name[len(prefix):] in ("conv1", "adaptor"):
            limit = min(plans[prefix + "conv1"][1], plans[prefix + "adaptor"][1])
        assert (conv.weight_bits, conv.input_limit * 2**FA) == (plans[conv.name][0], limit)
    assert "weight fractional bits" in format_headroom(report)
    assert_exact_on_one_and_two_threads(scaled, random_z(seed=11))


def assert_exact_on_one_and_two_threads(model: EVC, z: torch.Tensor) -> None:
    """The model's exact entropy parameters on ``z``: the same with 1 and 2 threads, and bit-identical to
    the int64 reference."""
    params = ExactEntropyParameters(model.entropy_networks)
    one, two = run_on_one_and_two_threads(params, z)
    assert all(torch.equal(a, b) for a, b in zip(one, two))
    assert_matches_reference(model, params, z)


def assert_codes_and_decodes(model: EVC, seed: int) -> None:
    """A 64x64 image through an exact file decodes to the encoder's reconstruction."""
    from conftest import smooth_image

    codec = evc.Codec(model, "EVC-SS", device="cpu", exact=True, arithmetic="float64")
    result = codec.encode(smooth_image(64, 64, seed=seed), 0.5)
    assert evc.file_info(result.data).exact
    assert np.array_equal(np.asarray(codec.decompress(result.data)), np.asarray(result.reconstruction))


def test_far_larger_weights_code_and_decode(scaled: EVC) -> None:
    assert_codes_and_decodes(scaled, seed=5)


def test_integer_weights_and_the_last_refusal() -> None:
    # Rows of L1 norm in [2**24, 2**25): exact at the activation limit only with integer weights (0 bits,
    # where the rescale is the identity and the bias carries no rounding half).
    torch.manual_seed(0)
    block = DepthConv(8, 12).eval()
    with torch.no_grad():
        block.adaptor.weight.copy_(torch.randint(-3, 4, (12, 8, 1, 1)) * 2.0**20 + 0.25)
        block.adaptor.weight[0].fill_(3 * 2.0**20 + 0.25)  # L1 = 1.5 * 2**24 (+ 2)
        block.adaptor.bias.copy_(torch.linspace(-2.5, 2.5, 12))
    assert ref_plan(block.adaptor)[0] == 0 and ref_plan(block.conv1) == (FW, LIMIT)
    # Small inputs (up to 8 * 2**-16), so that the adaptor's sums of about 2**20 * 8 * 8 are not saturated.
    x = torch.randint(-8, 9, (1, 8, 3, 4), generator=torch.Generator().manual_seed(2)).double()
    report: list[exact.ConvExactness] = []
    got = exact.compile_network(block, "block", torch.device("cpu"), report)(x)
    assert sorted((c.name, c.weight_bits) for c in report) == [
        ("block.adaptor", 0), ("block.conv1", FW), ("block.conv2", FW), ("block.depth_conv", FW)
    ]
    assert got.abs().max() < LIMIT
    with torch.no_grad():
        assert torch.equal(got.long(), ref_module(x.long(), block))
        block.adaptor.weight[0].fill_(2.0**22)  # L1 = 2**25: no integer weights keep the sums exact
    with pytest.raises(ValueError, match=r"block\.adaptor: weights too large"):
        exact.compile_network(block, "block", torch.device("cpu"))


# -- the shipped weights: today's conversion, checked against the reference -------------------------------

# Each shipped EVC-SS version's conversion, pinned when it shipped (a version that ships must add its
# row: test_every_shipped_version_is_pinned). v1: 18 weight bits everywhere, and prior fusion's adaptor
# (row L1 norm 149.2) saturating the input of its GEMM (shared with conv1) at 230,231,161 activation
# integers (3513.05). v2: the same pair, row L1 181.9, saturated at 188,929,269 (2882.83). v3: the same
# pair, row L1 187.1, saturated at 183,656,724 (2802.38). v4: the same pair, row L1 194.2, saturated at
# 176,957,994 (2700.16).
@dataclass(frozen=True)
class Pinned:
    largest_row_l1: str  # as format_headroom prints it
    saturated_at: int  # the input limit, in activation units, as printed
    limit: int  # the same limit in activation integers (units of 2^-FA)


PINNED = {
    "v1": Pinned("149.2", 3513, 230_231_161),
    "v2": Pinned("181.9", 2883, 188_929_269),
    "v3": Pinned("187.1", 2802, 183_656_724),
    "v4": Pinned("194.2", 2700, 176_957_994),
    "v5": Pinned("199.3", 2630, 172_382_234),
}
SHIPPED = evc.MODELS["EVC-SS"].has_weights()
SHIPPED_VERSION = ModelCard.read(evc.MODELS["EVC-SS"].weights_dir).version if SHIPPED else None
PIN = PINNED.get(SHIPPED_VERSION or "")
SHIPPED_SATURATED = ("prior_fusion.layers.1.depth.conv1", "prior_fusion.layers.1.depth.adaptor")


@pytest.mark.skipif(not SHIPPED, reason="EVC-SS weights not shipped")
def test_every_shipped_version_is_pinned() -> None:
    assert PIN is not None, f"shipped EVC-SS {SHIPPED_VERSION}: pin its conversion in PINNED"


@pytest.fixture(scope="module")
def shipped() -> EVC:
    return evc.load("EVC-SS", device="cpu").model.eval()


@pytest.mark.skipif(PIN is None, reason="no pinned conversion for the shipped EVC-SS")
def test_shipped_weights_convert_as_they_always_did(shipped: EVC) -> None:
    assert PIN is not None
    report = exact_headroom(shipped.entropy_networks)
    assert sorted(c.name for c in report) == sorted(name for name, _ in entropy_convs(shipped))
    assert all(c.weight_bits == FW for c in report)
    assert [c.name for c in report if c.input_limit < exact.ACTIVATION_LIMIT] == list(SHIPPED_SATURATED)
    assert [c.name for c in report if not c.within_bound] == [SHIPPED_SATURATED[1]]
    limits = {c.input_limit * 2**FA for c in report if c.name in SHIPPED_SATURATED}
    assert limits == {PIN.limit}
    assert ref_plan(shipped.prior_fusion.layers[1].depth.adaptor) == (FW, PIN.limit)
    line = format_headroom(report)
    print(line)
    assert line.startswith(
        f"exact arithmetic: largest row L1 {PIN.largest_row_l1} (prior_fusion.layers.1.depth.adaptor): "
        f"input saturated at {PIN.saturated_at};"
    )
    assert "all others within the bound of 128" in line


@pytest.mark.skipif(not SHIPPED, reason="EVC-SS weights not shipped")
def test_shipped_weights_are_bit_identical_to_the_reference(shipped: EVC) -> None:
    params = ExactEntropyParameters(shipped.entropy_networks)
    assert_matches_reference(shipped, params, random_z(seed=12))
    # Latents so large that the adaptor GEMM really clamps its input (issue 24 item 2): v1 ~30 elements.
    z = torch.cat([random_z(seed=13) * 1000, torch.full((1, 192, 2, 3), exact.ACTIVATION_LIMIT)])
    if PIN is not None:
        with torch.no_grad():
            hidden = ref_module((z.long() << FA).clamp(-LIMIT, LIMIT), shipped.h_s.layers)
            into = ref_module(hidden, shipped.prior_fusion.layers[0])
        assert (into.abs() > PIN.limit).sum() > 10 and (into.abs() < PIN.limit).any()
    assert_matches_reference(shipped, params, z)


@pytest.mark.skipif(not SHIPPED, reason="EVC-SS weights not shipped")
@pytest.mark.parametrize("factor", [10, 20])
def test_shipped_weights_scaled_10x_and_20x_stay_exact(factor: int) -> None:
    """Training that went on raising the norms (issue 19 item 5): the shipped entropy networks with 10x and
    20x their weights (the adaptor's row L1 norm 1,492 and 2,984) are accepted, exact, thread-independent,
    and code and decode."""
    model = evc.load("EVC-SS", device="cpu").model.eval()
    with torch.no_grad():
        for _, conv in entropy_convs(model):
            conv.weight.mul_(factor)
            conv.bias.mul_(factor)
    report = exact_headroom(model.entropy_networks)
    adaptor = next(c for c in report if c.name == "prior_fusion.layers.1.depth.adaptor")
    assert adaptor.row_l1 > 1000 * factor / 10 and not adaptor.within_bound
    if factor == 20:  # beyond what saturating the input alone allowed (it refused below 256)
        assert any(c.weight_bits < FW for c in report)
    assert_exact_on_one_and_two_threads(model, random_z(seed=14))
    assert_codes_and_decodes(model, seed=6)


def test_the_bound_is_exact_at_the_edge() -> None:
    # One output channel, |w_int| summing to 2**25 - 1: with A = 2**28 the worst case is 2**53 - 2**28.
    assert LIMIT == 2**28
    weight = torch.tensor([[2.0**24, 2.0**24 - 1]], dtype=torch.float64).view(1, 2, 1, 1)
    bias = torch.tensor([2.0**28 - 1], dtype=torch.float64)
    assert exact._saturation_limit(weight, bias) == LIMIT  # 2**53 - 1: the activation limit holds
    lower = exact._saturation_limit(weight, bias + 1)  # exactly 2**53: one step lower
    assert lower == LIMIT - 1 and (2**25 - 1) * lower + 2**28 < 2**53


def test_conversion_leaves_a_float64_model_alone() -> None:
    model = evc.create_model("EVC-SS", seed=0).double()
    before = {k: v.clone() for k, v in model.dual_prior.state_dict().items()}
    ExactEntropyParameters(model.entropy_networks)
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
    params = ExactEntropyParameters(model.entropy_networks)
    z = random_z()
    before = params.hyper(z)
    assert not params.refresh()
    state = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        model.prior_fusion.layers[1].ffn.project.bias.add_(0.25)  # in place: the version counter moves
    assert params.key != ExactEntropyParameters.weights_key(model.entropy_networks)
    changed = params.hyper(z)
    assert not torch.equal(changed[1], before[1])
    assert params.key == ExactEntropyParameters.weights_key(model.entropy_networks)
    model.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(params.hyper(z), before))


def test_unsupported_modules_are_refused() -> None:
    model = evc.create_model("EVC-SS", seed=0)
    model.h_s.layers[1] = nn.Sequential(nn.Conv2d(192, 768, 1), nn.ReLU(), nn.PixelShuffle(2))
    with pytest.raises(TypeError, match=r"h_s\.layers\.1\.1: .*ReLU"):
        ExactEntropyParameters(model.entropy_networks)
    model = evc.create_model("EVC-SS", seed=0)
    model.dual_prior.net[0].depth.conv2.register_forward_hook(lambda m, i, o: o * 2)
    with pytest.raises(TypeError, match="hooks"):
        ExactEntropyParameters(model.entropy_networks)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    model = evc.create_model("EVC-SS", seed=0)
    cpu = run_all(ExactEntropyParameters(model.entropy_networks), random_z(4, 6))
    gpu = run_all(ExactEntropyParameters(model.cuda().entropy_networks), random_z(4, 6).cuda())
    assert all(torch.equal(a, b.cpu()) for a, b in zip(cpu, gpu))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_with_fewer_weight_bits(scaled: EVC) -> None:
    cpu = run_all(ExactEntropyParameters(scaled.entropy_networks), random_z(4, 6))
    gpu = run_all(ExactEntropyParameters(copy.deepcopy(scaled).cuda().entropy_networks), random_z(4, 6).cuda())
    assert all(torch.equal(a, b.cpu()) for a, b in zip(cpu, gpu))

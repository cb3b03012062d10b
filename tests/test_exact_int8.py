"""The 8-bit integer arithmetic of the exact entropy parameters (evc.nn.exact_int8): bit-identical to an
independent int64 reference, independent of thread count, batch and position, close to the float networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import evc
from evc.entropy.exact_parameters import ExactEntropyParameters
from evc.models.evc import EVC
from evc.nn import exact_int8
from evc.nn.blocks import ConvFFN, DepthConv, DepthConvBlock, SubpelConv1x1
from test_exact import ints, random_z, run_all, run_on_one_and_two_threads, step_one_input
from conftest import run_in_threads

FA = exact_int8.FRAC_BITS  # activation grid of the 8-bit arithmetic
FINE = 16  # the float64 path's grid, on which the networks' outputs come out
MAX = 2**14 - 1
FINE_LIMIT = 2**12 << FINE


@pytest.fixture(scope="module")
def model() -> EVC:
    return evc.create_model("EVC-SS", seed=0).eval()


@pytest.fixture(scope="module")
def params(model: EVC) -> ExactEntropyParameters:
    return ExactEntropyParameters(model.entropy_networks, "int8")


# -- an independent reference: int64 (N, C, H, W), unfold + integer matmul, reversed summation order ----


def ref_bits(conv: nn.Conv2d) -> list[int]:
    """Per output channel, in Python integers: the most weight fractional bits (24 down to 0) with every
    |w_int| <= 63, (depthwise) taps' sum <= 1023, and 16383 * sum |w_int| + |b_int| + half < 2**31."""
    weight = conv.weight.detach().double().flatten(1).tolist()
    bias = conv.bias.detach().double().tolist()
    out = []
    for row, b in zip(weight, bias):
        for fw in range(24, -1, -1):
            w_int = [abs(round(w * 2**fw)) for w in row]
            b_int = abs(round(b * 2 ** (FA + fw))) + ((1 << fw) >> 1)
            fits = max(w_int) <= 63 and MAX * sum(w_int) + b_int < 2**31
            if conv.groups > 1:
                fits = fits and sum(w_int) <= 1023
            if fits:
                out.append(fw)
                break
        else:
            raise AssertionError("no plan")
    return out


def ref_conv(x: torch.Tensor, conv: nn.Conv2d, final: bool = False) -> torch.Tensor:
    """Coarse int64 activations in; coarse out, or (``final``) the float64 path's grid, rounded half up."""
    bits = torch.tensor(ref_bits(conv))
    w = torch.round(conv.weight.detach().double() * torch.exp2(bits.double()).view(-1, 1, 1, 1)).long()
    b = torch.round(conv.bias.detach().double() * torch.exp2((bits + FA).double())).long()
    batch, c, h, width = x.shape
    if conv.groups == 1:
        acc = torch.matmul(w.flatten(1).flip(1), x.flatten(2).flip(1))
    else:
        cols = F.unfold(x.double(), 3, padding=1).long().view(batch, c, 9, h * width)
        acc = (cols.flip(2) * w.view(c, 9).flip(1)[None, :, :, None]).sum(dim=2)
    acc = acc + b[:, None]
    shift = bits[:, None]
    if final:  # value acc * 2**-(FA + fw) onto 2**-FINE
        up = (FINE - FA - shift).clamp_min(0)
        down = (shift - (FINE - FA)).clamp_min(0)
        out = ((acc << up) + ((1 << down) >> 1)) >> down
        return out.view(batch, -1, h, width)
    out = (acc + ((1 << shift) >> 1)) >> shift
    return out.clamp(-MAX, MAX).view(batch, -1, h, width)


def ref_act(x: torch.Tensor, act: nn.Module, fine: bool) -> torch.Tensor:
    if isinstance(act, nn.Identity):
        return x
    bits = 18 if fine else 15  # the float64 path's slope bits after the last conv
    slope = round(act.negative_slope * 2**bits)
    return torch.where(x >= 0, x, (x * slope + (1 << (bits - 1))) >> bits)


class Ref:
    """The reference walk of one network; ``last``: its last conv, whose output is fine."""

    def __init__(self, network: nn.Module) -> None:
        self.last = [m for m in network.modules() if isinstance(m, nn.Conv2d)][-1]

    def conv(self, x: torch.Tensor, conv: nn.Conv2d) -> tuple[torch.Tensor, bool]:
        return ref_conv(x, conv, final=conv is self.last), conv is self.last

    def add(self, a: tuple[torch.Tensor, bool], b: tuple[torch.Tensor, bool]) -> tuple[torch.Tensor, bool]:
        if a[1] or b[1]:
            fine = [t if f else t << (FINE - FA) for t, f in (a, b)]
            return (fine[0] + fine[1]).clamp(-FINE_LIMIT, FINE_LIMIT), True
        return (a[0] + b[0]).clamp(-MAX, MAX), False

    def chain(self, x: torch.Tensor, *modules: nn.Module) -> tuple[torch.Tensor, bool]:
        fine = False
        for m in modules:
            if isinstance(m, nn.Conv2d):
                x, fine = self.conv(x, m)
            else:
                x = ref_act(x, m, fine)
        return x, fine

    def module(self, x: torch.Tensor, m: nn.Module) -> tuple[torch.Tensor, bool]:
        if isinstance(m, nn.Sequential):
            fine = False
            for child in m:
                assert not fine, "a module after the last conv"
                x, fine = self.module(x, child)
            return x, fine
        if isinstance(m, DepthConvBlock):
            x, fine = self.module(x, m.depth)
            assert not fine
            return self.module(x, m.ffn)
        if isinstance(m, SubpelConv1x1):
            out, fine = self.conv(x, m.conv)
            return F.pixel_shuffle(out, m.shuffle.upscale_factor), fine
        if isinstance(m, DepthConv):
            identity = (x, False) if m.adaptor is None else self.conv(x, m.adaptor)
            main = self.chain(x, m.conv1, m.act1, m.depth_conv, m.act2, m.conv2, m.act3)
            return self.add(main, identity)
        if isinstance(m, ConvFFN):
            return self.add((x, False), self.chain(x, m.expand, m.act1, m.project, m.act2))
        raise AssertionError(type(m))


def coarse(fine: torch.Tensor) -> torch.Tensor:
    """The float64 path's activation integers -> this grid, rounded half up and saturated."""
    return ((fine + (1 << (FINE - FA - 1))) >> (FINE - FA)).clamp(-MAX, MAX)


def ref_outputs(model: EVC, z: torch.Tensor, mu_for_step_one: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        hidden, fine = Ref(model.h_s.layers).module((z.long() << FA).clamp(-MAX, MAX), model.h_s.layers)
        assert fine
        out, _ = Ref(model.prior_fusion.layers).module(coarse(hidden), model.prior_fusion.layers)
        q, sigma, mu = out.chunk(3, dim=1)
        q = q.clamp_min(1 << (FINE - 1))  # Q_STEP_MIN = 0.5
        inputs = torch.cat([ints(step_one_input(mu_for_step_one)), mu, sigma, q], dim=1)
        out, _ = Ref(model.dual_prior.net).module(coarse(inputs), model.dual_prior.net)
        s0, m0, s1, m1 = out.chunk(4, dim=1)
    return [q, sigma, mu, torch.cat([m0, m1], 1), torch.cat([s0, s1], 1)]


def assert_matches_reference(model: EVC, params: ExactEntropyParameters, z: torch.Tensor) -> None:
    got = run_all(params, z)
    want = ref_outputs(model, z, got[2])
    for name, g, w in zip(("q_step", "sigma", "mu", "mu2", "sigma2"), got, want):
        assert torch.equal(ints(g), w), name


# -- tests ---------------------------------------------------------------------------------------------


def test_bit_identical_to_an_int64_reference(model: EVC, params: ExactEntropyParameters) -> None:
    assert_matches_reference(model, params, random_z(3, 4, seed=5))


def test_shipped_weights_are_bit_identical_to_the_reference() -> None:
    shipped = evc.load("EVC-SS", device="cpu").model.eval()
    params = ExactEntropyParameters(shipped.entropy_networks, "int8")
    assert_matches_reference(shipped, params, random_z(2, 3, seed=7))


def test_independent_of_thread_count_batch_and_position(params: ExactEntropyParameters) -> None:
    z = random_z(3, 4, seed=2, batch=2)
    one, two = run_on_one_and_two_threads(params, z)
    for a, b in zip(one, two):
        assert torch.equal(a, b)
    # The second sample alone gives its rows of the batch: nothing mixes samples.
    alone = run_all(params, z[1:])
    q_step, sigma, mu = params.hyper(z[1:])
    for a, b in zip(alone[:3], (q_step, sigma, mu)):
        assert torch.equal(a, b)
    for a, b in zip(one[:3], alone[:3]):
        assert torch.equal(a[1:], b)


def test_close_to_the_float64_arithmetic(model: EVC, params: ExactEntropyParameters) -> None:
    """Coarser, not different: the outputs stay within a small distance of the float64 fixed point."""
    z = random_z(3, 4, seed=3)
    float64 = ExactEntropyParameters(model.entropy_networks, "float64")
    a, b = run_all(params, z)[:3], float64.hyper(z)
    for x, y in zip(a, b):
        assert (x - y).abs().max() < 0.1
        assert not torch.equal(x, y)  # a different arithmetic: files must say which one wrote them


def test_the_weight_bits_rule_matches_its_description(model: EVC) -> None:
    convs = [m for m in model.entropy_networks.dual_prior.net.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs[:4]:
        weight = conv.weight.detach().double().flatten(1)
        bits = exact_int8._weight_bits(weight, conv.bias.detach().double(), conv.groups > 1, "conv")
        assert bits.tolist() == ref_bits(conv)
    big = nn.Conv2d(4, 2, 1)
    with torch.no_grad():
        big.weight.fill_(64.0)
    with pytest.raises(ValueError, match="8-bit weights"):
        exact_int8._weight_bits(big.weight.detach().double().flatten(1), big.bias.detach().double(), False, "big")


def test_int8_products_are_exact_at_the_extremes() -> None:
    """The GEMM at its bounds: limbs of -128 / 127 against weights of -63 / 63, long rows."""
    g = torch.Generator().manual_seed(0)
    a = torch.randint(-128, 128, (40, 1152), generator=g, dtype=torch.int8)
    a[0] = -128
    a[1] = 127
    w = torch.randint(-63, 64, (1152, 24), generator=g, dtype=torch.int8)
    w[:, 0] = 63
    w[:, 1] = -63
    assert torch.equal(exact_int8.int8_matmul(a, w).long(), a.long() @ w.long())


def test_weights_beyond_8_bits_code_with_float64_instead() -> None:
    """|w| > 63 has no 8-bit grid: the codec says so and writes format version 2, which decodes."""
    model = evc.create_model("EVC-SS", seed=0).eval()
    with torch.no_grad():
        model.entropy_networks.h_s.layers[0].depth.depth_conv.weight.mul_(400.0)
    codec = evc.Codec(model, "EVC-SS", device="cpu")  # settled at the first encode, not here
    with pytest.warns(UserWarning, match="float64 fixed point instead"):
        data = codec.compress(np.full((16, 16, 3), 90, np.uint8), 0.5)
    assert codec.options.arithmetic == "float64"
    assert evc.file_info(data).format_version == 2 and evc.file_info(data).arithmetic == "float64"
    assert codec.decompress(data).size == (16, 16)


def test_threads_sharing_a_codec_all_see_the_float64_fallback() -> None:
    """The first encodes of threads sharing one codec wait for the arithmetic to settle: none writes
    (or fails to write) an int8 file while another finds the weights beyond int8's reach."""
    model = evc.create_model("EVC-SS", seed=0).eval()
    with torch.no_grad():
        model.entropy_networks.h_s.layers[0].depth.depth_conv.weight.mul_(400.0)
    codec = evc.Codec(model, "EVC-SS", device="cpu", threads=1)

    def encode(_: int) -> int:
        return evc.file_info(codec.compress(np.full((16, 16, 3), 90, np.uint8), 0.5)).format_version

    with pytest.warns(UserWarning, match="float64 fixed point instead"):
        results = run_in_threads(encode, 8)
    assert results == [2] * 8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(model: EVC) -> None:
    z = random_z(3, 5, seed=4)
    cpu = run_all(ExactEntropyParameters(model.entropy_networks, "int8"), z)
    gpu_model = evc.create_model("EVC-SS", seed=0).eval().cuda()
    gpu = run_all(ExactEntropyParameters(gpu_model.entropy_networks, "int8"), z.cuda())
    for a, b in zip(cpu, gpu):
        assert torch.equal(a, b.cpu())


def test_a_codec_that_only_decodes_never_converts_to_int8(model: EVC) -> None:
    """The int8 conversion is paid at the first encode: decoding a version-2 file does not need it."""
    image = np.random.default_rng(3).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    data = evc.Codec(model, "EVC-SS", device="cpu", arithmetic="float64").compress(image, 0.5)
    decoder = evc.Codec(model, "EVC-SS", device="cpu")
    assert decoder.decompress(data).size == (40, 24)
    assert "int8" not in decoder.model.latent_codec._exact
    decoder.compress(image, 0.5)
    assert "int8" in decoder.model.latent_codec._exact

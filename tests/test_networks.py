"""Network structure against DESIGN.md: parameters, MACs, shapes, and the pieces' invariants."""

from __future__ import annotations

import pytest
import torch

from evc.distill import mask_decay
from evc.distill.mask_decay import transform_groups
from evc.eval.complexity import model_complexity
from evc.models.registry import MODELS, create_model, get_spec
from evc.nn import exact, tiling
from evc.nn.blocks import Composite, DepthConv, DepthConvBlock, describe
from evc.nn.exact import compile_network, from_fixed, to_fixed
from evc.nn.hyperprior import PriorFusion
from evc.nn.ops import lower_bound, ste_round
from evc.nn.tiling import receptive_radius
from evc.nn.transforms import AnalysisTransform, SynthesisTransform

# DESIGN.md section 2: total parameters (M) and g_a / g_s GMACs at 768x512.
PUBLISHED = {
    "EVC-LL": (17.4, 103.6, 101.6),
    "EVC-MM": (15.2, 49.6, 48.8),
    "EVC-SS": (12.8, 13.8, 13.9),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_size_matches_the_paper(name: str) -> None:
    params_m, enc_g, dec_g = PUBLISHED[name]
    c = model_complexity(name, 768, 512)
    assert c.total_params / 1e6 == pytest.approx(params_m, abs=0.05)
    assert c.params["entropy"] / 1e6 == pytest.approx(10.8, abs=0.05)
    # We count convolution MACs only; the published figures also count biases and activations
    # (0.5% of the total for L, 1.5% for the narrow S layers).
    assert c.macs["encoder"] / 1e9 == pytest.approx(enc_g, rel=0.02)
    assert c.macs["decoder"] / 1e9 == pytest.approx(dec_g, rel=0.02)
    assert c.macs["entropy"] / 1e9 == pytest.approx(14.4, rel=0.01)


def test_decoder_macs_per_pixel() -> None:
    published = {"EVC-LL": 257_941, "EVC-MM": 123_774, "EVC-SS": 35_338}
    for name, value in published.items():
        assert model_complexity(name).macs_per_pixel("decoder") == pytest.approx(value, rel=0.015)


@pytest.mark.parametrize("size", ["L", "M", "S"])
def test_transform_shapes(size: str) -> None:
    g_a, g_s = AnalysisTransform(size), SynthesisTransform(size)  # type: ignore[arg-type]
    x = torch.rand(1, 3, 64, 128)
    y = g_a(x)
    assert y.shape == (1, 192, 4, 8)
    assert g_s(y).shape == x.shape


def test_every_registered_model_builds_with_its_sizes() -> None:
    assert set(MODELS) == {
        "EVC-LL", "EVC-LM", "EVC-LS", "EVC-ML", "EVC-MM", "EVC-MS", "EVC-SL", "EVC-SS", "Scale-SL", "Scale-SS"
    }
    ids = [spec.model_id for spec in MODELS.values()]
    assert len(set(ids)) == len(ids)
    assert get_spec("ll").name == "EVC-LL" and get_spec("scale-ss").name == "Scale-SS"
    model = create_model("EVC-LS", seed=0)
    assert model.g_a.size == "L" and model.g_s.size == "S"


def test_seeded_models_are_reproducible() -> None:
    a, b = create_model("EVC-SS", seed=3), create_model("EVC-SS", seed=3)
    c = create_model("EVC-SS", seed=4)
    for (name, pa), pb, pc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.state_dict().values(), c.state_dict().values()))


def test_ste_round_and_lower_bound_gradients() -> None:
    x = torch.tensor([0.2, 0.7, -1.4], requires_grad=True)
    y = ste_round(x)
    assert torch.equal(y.detach(), torch.tensor([0.0, 1.0, -1.0]))
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(3))

    q = torch.tensor([0.2, 0.2, 0.9], requires_grad=True)
    out = lower_bound(q, 0.5)
    assert torch.equal(out.detach(), torch.tensor([0.5, 0.5, 0.9]))
    # Below the bound: a gradient that would push q up (negative) passes, one pushing it down does not.
    out.backward(torch.tensor([-1.0, 1.0, 1.0]))
    assert torch.equal(q.grad, torch.tensor([-1.0, 0.0, 1.0]))


# -- one description per block: forward, tiling, exact arithmetic and mask decay all walk it -----------


class _TwiceDepthwise(DepthConv):
    """DepthConv with its depthwise conv applied twice: only the description changes."""

    branches = (("conv1", "act1", "depth_conv", "act2", "depth_conv", "conv2", "act3"), ("adaptor",))


class _Undescribed(DepthConvBlock):
    """Overrides forward without describing itself: nothing may guess its structure."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.depth(x)


def test_an_altered_description_changes_forward_tiling_and_exact_alike() -> None:
    torch.manual_seed(0)
    altered = _TwiceDepthwise(8, 12, inner_activations=False).double().eval()
    plain = DepthConv(8, 12, inner_activations=False).double().eval()
    plain.load_state_dict(altered.state_dict())  # same weights, same names
    x = torch.randn(2, 8, 9, 11, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    m = altered
    with torch.no_grad():
        want = m.act3(m.conv2(m.depth_conv(m.act2(m.depth_conv(m.act1(m.conv1(x))))))) + m.adaptor(x)
        assert torch.equal(altered(x), want)
        assert not torch.allclose(plain(x), want)
    assert (receptive_radius(altered), receptive_radius(plain)) == (2, 1)
    for block in (altered, plain):
        got = from_fixed(compile_network(block, "block", torch.device("cpu"))(to_fixed(x)))
        with torch.no_grad():
            assert (got - block(x)).abs().max() < 1e-3


def test_a_block_that_does_not_describe_its_forward_is_refused() -> None:
    block = _Undescribed(8, 8, entropy_variant=True)
    assert describe(block) is None and describe(block, strict=False) is None
    with pytest.raises(ValueError, match="_Undescribed"):
        receptive_radius(block)
    with pytest.raises(TypeError, match="_Undescribed"):
        compile_network(block, "block", torch.device("cpu"))
    model = create_model("EVC-SS", seed=0)
    model.g_a.layers[1] = _Undescribed(64, 64)
    with pytest.raises(ValueError, match="_Undescribed"):
        transform_groups(model, "S", None)
    # PriorFusion's forward only splits its described output: tiling follows it, exact arithmetic not.
    assert describe(PriorFusion()) is None and describe(PriorFusion(), strict=False) is not None
    with pytest.raises(TypeError, match="PriorFusion"):
        compile_network(PriorFusion(), "prior_fusion", torch.device("cpu"))


def _composites(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in [sub, *_composites(sub)]]


def test_no_second_copy_of_a_wiring() -> None:
    # Every block's forward is the one that runs its description, or is written next to it.
    for cls in _composites(Composite):
        if cls.__module__.startswith("evc."):
            assert "forward" not in vars(cls) or "branches" in vars(cls), cls
    # The walkers know no block by name: they read the descriptions (and mask decay the mask points).
    for module in (tiling, exact, mask_decay):
        named = [k for k, v in vars(module).items() if isinstance(v, type) and issubclass(v, Composite)]
        assert not named, (module.__name__, named)

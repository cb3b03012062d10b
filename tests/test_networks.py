"""Network structure against DESIGN.md: parameters, MACs, shapes, and the pieces' invariants."""

from __future__ import annotations

import pytest
import torch

from evc.eval.complexity import model_complexity
from evc.models.registry import MODELS, create_model, get_spec
from evc.nn.ops import lower_bound, ste_round
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

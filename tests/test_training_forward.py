"""The training forward: per-sample anchors, rate estimates, and gradients to every learned part."""

from __future__ import annotations

import torch

import evc
from evc.models.variable_rate import LAMBDAS, rd_loss_weight


def test_forward_outputs_and_gradients_reach_every_part() -> None:
    torch.manual_seed(0)
    model = evc.create_model("EVC-SS", seed=0).train()
    x = torch.rand(2, 3, 64, 64)
    anchor = torch.tensor([0, 3])
    out = model(x, anchor)
    assert out.x_hat.shape == x.shape
    assert out.bpp.shape == (2,) and torch.isfinite(out.bpp).all() and (out.bpp > 0).all()
    mse = (out.x_hat - x).pow(2).mean(dim=(1, 2, 3))
    lambdas = torch.tensor([LAMBDAS[a] for a in anchor.tolist()])
    loss = (rd_loss_weight(1.0) * lambdas * mse + out.bpp).mean()
    loss.backward()
    for part in ("g_a", "g_s", "h_a", "h_s", "prior_fusion", "dual_prior", "z_density"):
        grads = [p.grad for p in getattr(model, part).parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads), part
    assert model.rate.q_basic.grad is not None and model.rate.q_basic.grad.abs().sum() > 0
    # Only the anchors used in the batch get a gradient.
    g = model.rate.q_scale.grad
    assert g[0] != 0 and g[3] != 0 and g[1] == 0 and g[2] == 0


def test_anchor_changes_the_rate() -> None:
    model = evc.create_model("EVC-SS", seed=0).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        bpp = [model(x, torch.tensor([a])).bpp.item() for a in range(4)]
    assert bpp[0] < bpp[3]  # anchor 0 = largest q_scale = lowest rate


def test_quality_maps_log_uniformly_between_the_extreme_anchors() -> None:
    rate = evc.create_model("EVC-SS", seed=0).rate
    scales = rate.q_scale.detach()
    assert rate.q_index_for_quality(0.0) == round(100 * scales[0].item())
    assert rate.q_index_for_quality(1.0) == round(100 * scales[-1].item())
    mid = (scales[0] * scales[-1]).sqrt().item()
    assert rate.q_index_for_quality(0.5) == round(100 * mid)
    assert abs(rate.quality_for_q_index(rate.q_index_for_quality(0.3)) - 0.3) < 0.02

"""Scalable encoder (RRL): running-mean composition, encoder levels, automatic level choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evc.models.scalable import ScalableEVC

from conftest import random_codec, smooth_image


def test_levels_are_running_means_of_the_encoders() -> None:
    codec = random_codec("Scale-SS")
    model: ScalableEVC = codec.model  # type: ignore[assignment]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        outputs = [encoder(x) for encoder in model.g_a]
        for level, latent in enumerate(model.level_latents(x)):
            assert torch.allclose(latent, torch.stack(outputs[: level + 1]).mean(0), atol=1e-6)
            assert torch.allclose(model.analyse(x, level), latent)


def test_training_latents_stop_gradients_of_earlier_encoders() -> None:
    model = random_codec("Scale-SS").model
    x = torch.rand(1, 3, 64, 64)
    latents = model.training_latents(x)  # type: ignore[attr-defined]
    latents[2].sum().backward()
    grads = [any(p.grad is not None and p.grad.abs().sum() > 0 for p in e.parameters()) for e in model.g_a]
    assert grads == [False, False, True, False]
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("name", ["Scale-SS", "Scale-SL"])
def test_every_level_decodes_with_the_one_decoder(name: str) -> None:
    codec = random_codec(name)
    image = smooth_image(40, 64, seed=4)
    files = set()
    for level in range(4):
        result = codec.encode(image, 0.5, encoder_level=level)
        assert result.encoder_level == level
        assert np.array_equal(np.asarray(codec.decompress(result.data)), np.asarray(result.reconstruction))
        files.add(result.data)
    assert len(files) == 4  # the levels really differ


def test_automatic_level_has_the_lowest_rd_cost() -> None:
    codec = random_codec("Scale-SS")
    image = smooth_image(40, 64, seed=6)
    q = codec.q_index(0.5)
    weight = 255.0**2 * codec.model.rate.lambda_for_q_index(q)
    costs = [weight * r.mse + r.bpp for r in (codec.encode(image, q_index=q, encoder_level=k) for k in range(4))]
    auto = codec.encode(image, q_index=q)
    assert auto.encoder_level == int(np.argmin(costs))
    assert weight * auto.mse + auto.bpp == pytest.approx(min(costs))


def test_bad_levels_are_refused() -> None:
    image = smooth_image(16, 16)
    with pytest.raises(ValueError, match="encoder_level must be an integer in 0..3"):
        random_codec("Scale-SS").encode(image, encoder_level=4)
    with pytest.raises(ValueError, match="scalable"):
        random_codec("EVC-SS").encode(image, encoder_level=0)

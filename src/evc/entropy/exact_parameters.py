"""The entropy model's parameters in exact arithmetic: (Q_step, sigma, mu) and the step-2 (mu, sigma).

:mod:`evc.nn.exact` evaluates a network in fixed point, identically on every device; this module knows
which networks set the entropy coder's tables (``h_s``, ``prior_fusion``, the dual spatial prior's
``net``), in which order their outputs split, and when their converted weights are stale.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from evc.entropy.dual_prior import DualSpatialPrior
from evc.nn.exact import ACTIVATION_FRAC_BITS, compile_network, exact_convolutions, from_fixed, to_fixed
from evc.nn.hyperprior import Q_STEP_MIN, HyperSynthesis, PriorFusion


class EntropyNetworks(Protocol):
    """What the exact parameters read from a model (an :class:`~evc.models.evc.EVC` has them)."""

    h_s: HyperSynthesis
    prior_fusion: PriorFusion
    dual_prior: DualSpatialPrior


def _entropy_modules(model: EntropyNetworks) -> list[tuple[str, nn.Module]]:
    return [("h_s", model.h_s), ("prior_fusion", model.prior_fusion), ("dual_prior.net", model.dual_prior.net)]


class ExactEntropyParameters:
    """Bit-exact (q_step, sigma, mu) and step-2 (mu, sigma) of a model's entropy networks, on any device.

    The weights are converted once, on the model's device; every call first compares :meth:`weights_key`
    with the converted one (cheap: no tensor data is read) and converts again if the model's weights were
    replaced, modified in place, or moved to another device. Raises TypeError / ValueError as
    :func:`evc.nn.exact.compile_network` does.
    """

    def __init__(self, model: EntropyNetworks) -> None:
        self.model = model
        self._q_step_min = Q_STEP_MIN * 2.0**ACTIVATION_FRAC_BITS  # in activation integers
        self.key: tuple = ()
        self.refresh()

    @staticmethod
    def weights_key(model: EntropyNetworks) -> tuple:
        """Changes whenever a parameter of the entropy networks is replaced, moved or changed in place.

        (Writes through ``param.data`` bypass the version counter and are not seen, as for the z tables of :class:`~evc.entropy.latent_codec.LatentCodec`.)
        """
        return tuple((p.data_ptr(), p._version) for _, m in _entropy_modules(model) for p in m.parameters())

    def refresh(self) -> bool:
        """Convert the weights again if they changed since the last conversion; True if it did."""
        key = self.weights_key(self.model)
        if key == self.key:
            return False
        model = self.model
        device = next(model.h_s.parameters()).device
        # hyper() and step_two() mirror these classes' forward code (the chunk orders); not subclasses'.
        for name, module, kind in (
            ("h_s", model.h_s, HyperSynthesis),
            ("prior_fusion", model.prior_fusion, PriorFusion),
            ("dual_prior", model.dual_prior, DualSpatialPrior),
        ):
            if type(module) is not kind:
                raise TypeError(f"{name}: expected {kind.__name__}, got {type(module).__name__}")
        # All three first, so that a failed conversion leaves the previous one whole.
        compiled = (
            compile_network(model.h_s.layers, "h_s.layers", device),
            compile_network(model.prior_fusion.layers, "prior_fusion.layers", device),
            compile_network(model.dual_prior.net, "dual_prior.net", device),
        )
        self.device = device
        self.h_s, self.prior_fusion, self.spatial_prior = compiled
        self.key = key
        return True

    @torch.no_grad()
    def hyper(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The float path's (max(q_step, Q_STEP_MIN), sigma, mu), exactly, from the integer hyper-latent
        (B, 192, h, w); float64 (B, 192, 4h, 4w) each."""
        self.refresh()
        z = to_fixed(z_hat.to(self.device))
        with exact_convolutions(self.device):
            q_step, sigma, mu = self.prior_fusion(self.h_s(z)).chunk(3, dim=1)  # PriorFusion.forward's order
        return from_fixed(q_step.clamp_min(self._q_step_min)), from_fixed(sigma), from_fixed(mu)

    @torch.no_grad()
    def step_two(
        self, y_hat_step1: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, q_step: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DualSpatialPrior.step_two_params, exactly: (mu2, sigma2), full-size, float64."""
        self.refresh()
        x = torch.cat([to_fixed(t.to(self.device)) for t in (y_hat_step1, mu, sigma, q_step)], dim=1)
        with exact_convolutions(self.device):
            sigma0, mu0, sigma1, mu1 = self.spatial_prior(x).chunk(4, dim=1)
        return from_fixed(torch.cat([mu0, mu1], dim=1)), from_fixed(torch.cat([sigma0, sigma1], dim=1))

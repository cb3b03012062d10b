"""The entropy model's networks as one bundle: what the latent codec codes with.

A model owns the modules (and so their weights and state-dict names); the bundle only names them, once,
for the latent codec (:mod:`evc.entropy.latent_codec`) and the exact arithmetic
(:mod:`evc.entropy.exact_parameters`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from evc.entropy.dual_prior import DualSpatialPrior
from evc.entropy.factorized import FactorizedDensity
from evc.nn.hyperprior import HyperAnalysis, HyperSynthesis, PriorFusion


@dataclass(frozen=True, eq=False)
class EntropyNetworks:
    """h_a (latent -> hyper-latent), h_s and prior fusion (hyper-latent -> Q_step, sigma, mu), the dual
    spatial prior (step 2's mu, sigma from step 1) and the hyper-latent's factorized density."""

    h_a: HyperAnalysis
    h_s: HyperSynthesis
    prior_fusion: PriorFusion
    dual_prior: DualSpatialPrior
    z_density: FactorizedDensity

    def table_networks(self) -> list[tuple[str, nn.Module]]:
        """The networks that set y's coding tables, in evaluation order, each as (name, the chain of
        layers that exact arithmetic evaluates): h_s, prior fusion, the dual prior's step-2 network.
        Their outputs are split by :meth:`PriorFusion.split` and :meth:`DualSpatialPrior.split`."""
        return [
            ("h_s.layers", self.h_s.layers),
            ("prior_fusion.layers", self.prior_fusion.layers),
            ("dual_prior.net", self.dual_prior.net),
        ]

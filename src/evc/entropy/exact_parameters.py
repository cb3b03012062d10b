"""The entropy model's parameters in exact arithmetic: (Q_step, sigma, mu) and the step-2 (mu, sigma).

:mod:`evc.nn.exact` evaluates a network in fixed point, identically on every device; this module
evaluates the networks that set the entropy coder's tables (:meth:`EntropyNetworks.table_networks`),
splits their outputs with the networks' own ``split``, and converts again when the weights change;
:func:`exact_headroom` and :func:`format_headroom` tell how trained weights stand against the exactness
bound (for a training log).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evc.entropy.dual_prior import DualSpatialPrior
from evc.entropy.networks import EntropyNetworks
from evc.nn import exact_int8
from evc.nn.exact import (
    ACTIVATION_FRAC_BITS,
    ACTIVATION_LIMIT,
    EXACT_LIMIT,
    WEIGHT_FRAC_BITS,
    ConvExactness,
    compile_network,
    exact_convolutions,
    from_fixed,
    to_fixed,
)
from evc.nn.hyperprior import Q_STEP_MIN, HyperSynthesis, PriorFusion
from evc.nn.ops import parameters_key


# The largest output-row L1 norm of real weights that keeps a conv within the bound (rule 1 of
# evc.nn.exact's docstring), less a negligible bias term: 2**53 / (A * 2**WEIGHT_FRAC_BITS) = 128.
L1_BOUND = EXACT_LIMIT / (ACTIVATION_LIMIT * 2.0 ** (ACTIVATION_FRAC_BITS + WEIGHT_FRAC_BITS))


@torch.no_grad()
def exact_headroom(networks: EntropyNetworks) -> list[ConvExactness]:
    """How each conv of the networks that set y's coding tables (:meth:`EntropyNetworks.table_networks`:
    ``h_s.layers``, ``prior_fusion.layers``, ``dual_prior.net``, in that order) is evaluated exactly
    with their current weights: its name, largest output-row L1 norm of the real weights, input
    saturation in real units and weight fractional bits (see :class:`evc.nn.exact.ConvExactness` and
    "The bound" in :mod:`evc.nn.exact`). A model gives its bundle as ``model.entropy_networks``.

    Converts the weights as :class:`ExactEntropyParameters` does (on the networks' device, a few MB of
    float64 for EVC-SS) and keeps nothing. Raises ValueError for non-finite weights or weights beyond
    even integer weights' reach, TypeError for networks exact evaluation cannot follow.
    """
    device = next(networks.h_s.parameters()).device
    report: list[ConvExactness] = []
    for name, module in networks.table_networks():
        compile_network(module, name, device, report)
    return report


def format_headroom(convs: Sequence[ConvExactness], worst: int = 3) -> str:
    """One line for a training log from :func:`exact_headroom`: the ``worst`` convs beyond the bound (largest
    row L1 norm first) and how they are evaluated, then the largest norm of the others, e.g.
    ``largest row L1 149.2 (prior_fusion.layers.1.depth.adaptor): input saturated at 3513; ...``."""
    if not convs:
        return "exact arithmetic: no convs"
    beyond = sorted((c for c in convs if not c.within_bound), key=lambda c: -c.row_l1)
    within = [c for c in convs if c.within_bound]
    parts = []
    for i, conv in enumerate(beyond[:worst]):
        how = []
        if conv.input_limit < ACTIVATION_LIMIT:
            how.append(f"input saturated at {conv.input_limit:.0f}")
        if conv.weight_bits < WEIGHT_FRAC_BITS:
            how.append(f"{conv.weight_bits} weight fractional bits (of {WEIGHT_FRAC_BITS})")
        parts.append(f"{'largest ' if i == 0 else ''}row L1 {conv.row_l1:.1f} ({conv.name}): {', '.join(how)}")
    if len(beyond) > worst:
        rest = beyond[worst:]
        least = [f"fewest weight bits {min(c.weight_bits for c in rest)}"]
        least.append(f"lowest input saturation {min(c.input_limit for c in rest):.0f}")
        parts.append(f"{len(rest)} more beyond the bound ({', '.join(least)})")
    # Within the bound but in one GEMM with a saturated conv named above: their input is saturated too.
    shown = {conv.name for conv in beyond[:worst]}
    for conv in within:
        if conv.input_limit < ACTIVATION_LIMIT and shown.intersection(conv.shared_with):
            parts.append(f"{conv.name} shares its saturated input (one GEMM with {', '.join(conv.shared_with)})")
    if within:
        top = max(within, key=lambda c: c.row_l1)
        others = "all others" if beyond else "all convs"
        parts.append(f"{others} within the bound of {L1_BOUND:g} (largest row L1 {top.row_l1:.1f}, {top.name})")
    return "exact arithmetic: " + "; ".join(parts)


# The exact arithmetics by name: evc.nn.exact's float64 fixed point (format versions 1-2) and
# evc.nn.exact_int8's 8-bit integer products (format version 3).
ARITHMETICS = {"float64": compile_network, "int8": exact_int8.compile_network}


class ExactEntropyParameters:
    """Bit-exact (q_step, sigma, mu) and step-2 (mu, sigma) of a model's entropy networks, on any device.

    The weights are converted once, on the model's device; every call first compares :meth:`weights_key`
    with the converted one (cheap: no tensor data is read) and converts again if the model's weights were
    replaced, modified in place, or moved to another device. Raises TypeError / ValueError as
    :func:`evc.nn.exact.compile_network` does.
    """

    def __init__(self, networks: EntropyNetworks, arithmetic: str = "float64") -> None:
        if arithmetic not in ARITHMETICS:
            raise ValueError(f"arithmetic must be one of {', '.join(ARITHMETICS)}")
        self.networks = networks
        self.arithmetic = arithmetic
        self._q_step_min = Q_STEP_MIN * 2.0**ACTIVATION_FRAC_BITS  # in activation integers
        self.key: tuple = ()
        self.refresh()

    @staticmethod
    def weights_key(networks: EntropyNetworks) -> tuple:
        """Changes whenever a parameter of the table networks is replaced, moved or changed in place.

        (:func:`evc.nn.ops.parameters_key`: writes through ``param.data`` are not seen.)
        """
        return parameters_key(p for _, m in networks.table_networks() for p in m.parameters())

    def refresh(self) -> bool:
        """Convert the weights again if they changed since the last conversion; True if it did."""
        key = self.weights_key(self.networks)
        if key == self.key:
            return False
        networks = self.networks
        device = next(networks.h_s.parameters()).device
        # hyper() and step_two() use these classes' own layouts (split/inputs); not subclasses'.
        for name, module, kind in (
            ("h_s", networks.h_s, HyperSynthesis),
            ("prior_fusion", networks.prior_fusion, PriorFusion),
            ("dual_prior", networks.dual_prior, DualSpatialPrior),
        ):
            if type(module) is not kind:
                raise TypeError(f"{name}: expected {kind.__name__}, got {type(module).__name__}")
        # All three first, so that a failed conversion leaves the previous one whole.
        compile_fn = ARITHMETICS[self.arithmetic]
        compiled = [compile_fn(module, name, device) for name, module in networks.table_networks()]
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
            q_step, sigma, mu = PriorFusion.split(self.prior_fusion(self.h_s(z)))
        return from_fixed(q_step.clamp_min(self._q_step_min)), from_fixed(sigma), from_fixed(mu)

    @torch.no_grad()
    def step_two(
        self, y_hat_step1: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, q_step: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DualSpatialPrior.step_two_params, exactly: (mu2, sigma2), full-size, float64."""
        self.refresh()
        x = DualSpatialPrior.inputs(*(to_fixed(t.to(self.device)) for t in (y_hat_step1, mu, sigma, q_step)))
        with exact_convolutions(self.device):
            mu2, sigma2 = DualSpatialPrior.split(self.spatial_prior(x))
        return from_fixed(mu2), from_fixed(sigma2)

"""Parameters and multiply-accumulates (MACs) of each part of a model, counted by our own code.

Networks run on PyTorch's "meta" device, so only shapes are computed: counting a large model at
1920x1080 costs milliseconds and no memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from evc.models.evc import EVC
from evc.models.registry import ModelSpec, get_spec
from evc.nn.hyperprior import HYPER_CHANNELS
from evc.nn.transforms import LATENT_CHANNELS


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    """MACs of one forward pass: convolutions only (everything else is negligible here)."""
    total = 0

    def hook(conv: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = conv.kernel_size
        total += out.numel() * (conv.in_channels // conv.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for h in handles:
            h.remove()
    return total


# The paper and the authors' release: parameters (M), g_a / g_s GMACs at 768x512.
PUBLISHED = {
    "EVC-LL": (17.4, 103.6, 101.6),
    "EVC-MM": (15.2, 49.6, 48.8),
    "EVC-SS": (12.8, 13.8, 13.9),
}
PUBLISHED_ENTROPY = (10.8, 14.4)  # parameters (M), GMACs at 768x512, the same in every model


@dataclass(frozen=True)
class Complexity:
    name: str
    width: int
    height: int
    params: dict[str, int]  # encoder, decoder, entropy
    macs: dict[str, int]

    @property
    def total_params(self) -> int:
        return sum(self.params.values())

    def macs_per_pixel(self, part: str) -> float:
        return self.macs[part] / (self.width * self.height)


def module_breakdown(name: str, width: int = 768, height: int = 512) -> list[tuple[str, int, int]]:
    """(module, parameters, MACs) for each network of model ``name`` at ``width`` x ``height``."""
    spec = get_spec(name)
    with torch.device("meta"):
        model: EVC = spec.build()
        x = torch.empty(1, 3, height, width)
        y = torch.empty(1, LATENT_CHANNELS, height // 16, width // 16)
        z = torch.empty(1, HYPER_CHANNELS, height // 64, width // 64)
        context = torch.empty(1, 4 * LATENT_CHANNELS, height // 16, width // 16)
        encoders = list(model.g_a) if isinstance(model.g_a, nn.ModuleList) else [model.g_a]
        rows = [(f"g_a[{i}]" if len(encoders) > 1 else "g_a", e, count_macs(e, x)) for i, e in enumerate(encoders)]
        rows += [
            ("g_s", model.g_s, count_macs(model.g_s, y)),
            ("h_a", model.h_a, count_macs(model.h_a, y)),
            ("h_s", model.h_s, count_macs(model.h_s, z)),
            ("prior_fusion", model.prior_fusion, count_macs(model.prior_fusion, y)),
            ("dual_prior", model.dual_prior, count_macs(model.dual_prior.net, context)),
            ("z_density + rate", None, 0),
        ]
    other = count_parameters(model.z_density) + count_parameters(model.rate)
    return [(label, count_parameters(m) if m is not None else other, macs) for label, m, macs in rows]


def model_complexity(name: str, width: int = 768, height: int = 512) -> Complexity:
    """Complexity of model ``name`` on a ``width`` x ``height`` image (dimensions multiple of 64),
    grouped into encoder (g_a), decoder (g_s) and entropy model (everything else).

    For scalable models the encoder figure counts all encoders (the most expensive level).
    """
    params = {"encoder": 0, "decoder": 0, "entropy": 0}
    macs = dict(params)
    for label, module_params, module_macs in module_breakdown(name, width, height):
        part = "encoder" if label.startswith("g_a") else "decoder" if label == "g_s" else "entropy"
        params[part] += module_params
        macs[part] += module_macs
    return Complexity(get_spec(name).name, width, height, params, macs)


def format_model_table(models: Mapping[str, ModelSpec]) -> list[str]:
    """The table `evc models` prints: per model (name -> registry spec), its parameters, MACs per pixel of
    encoder, decoder and entropy model (at 768x512), whether trained weights ship, and its description."""
    lines = [f"{'model':<10} {'params':>8} {'enc MAC/px':>11} {'dec MAC/px':>11} {'ent MAC/px':>11}  weights  description"]
    for name, spec in models.items():
        c = model_complexity(name)
        shipped = "trained" if spec.has_weights() else "untrained"
        lines.append(
            f"{name:<10} {c.total_params / 1e6:>7.2f}M {c.macs_per_pixel('encoder'):>11,.0f} "
            f"{c.macs_per_pixel('decoder'):>11,.0f} {c.macs_per_pixel('entropy'):>11,.0f}  {shipped:<8} {spec.description}"
        )
    return lines


REPORT_SIZES = ((768, 512), (1920, 1088))  # 1080 rows are padded to 1088


def format_complexity(name: str, sizes: Sequence[tuple[int, int]] = REPORT_SIZES) -> list[str]:
    """The report `evc complexity` prints for model ``name``: parameters and GMACs of each module at each
    (width, height) of ``sizes``, the totals at the first size, and the paper's figures where published."""
    lines = [
        f"{name}  (parameters; MACs counted on convolutions)",
        f"  {'module':<18} {'params':>10} " + " ".join(f"{f'GMAC @{w}x{h}':>16}" for w, h in sizes),
    ]
    tables = [module_breakdown(name, w, h) for w, h in sizes]
    for rows in zip(*tables):
        label, params, _ = rows[0]
        lines.append(f"  {label:<18} {params / 1e6:>9.3f}M " + " ".join(f"{macs / 1e9:>16.2f}" for _, _, macs in rows))
    total = model_complexity(name, *sizes[0])
    lines.append(
        f"  total {total.total_params / 1e6:.2f} M parameters; at {sizes[0][0]}x{sizes[0][1]} g_a "
        f"{total.macs['encoder'] / 1e9:.1f} G, g_s {total.macs['decoder'] / 1e9:.1f} G, entropy model "
        f"{total.macs['entropy'] / 1e9:.1f} G MACs"
    )
    if name in PUBLISHED:
        p, enc, dec = PUBLISHED[name]
        lines.append(f"  paper: {p} M parameters; g_a {enc} G, g_s {dec} G, entropy model "
                     f"{PUBLISHED_ENTROPY[1]} G MACs ({PUBLISHED_ENTROPY[0]} M parameters)")
    return lines

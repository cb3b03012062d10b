"""Scalable encoder by residual representation learning (RRL): four small encoders, one decoder.

Level k's latent is the running mean of the first k + 1 encoder outputs. In training, earlier outputs
enter with stopped gradient, y_k = (sum_{j<k} sg(e_j) + e_k) / (k + 1), so encoder k learns a residual
correction to what the cheaper levels already produce. The decoder and entropy model are shared, and a
file does not say which level made it: any level decodes with the ordinary decoder.
"""

from __future__ import annotations

import torch
from torch import nn

from evc.models.evc import EVC, RDOutput, check_padded
from evc.nn.execution import DEFAULT_EXECUTION, Execution
from evc.nn.transforms import AnalysisTransform

NUM_LEVELS = 4


class ScalableEVC(EVC):
    """Scale-XY: ``num_levels`` encoders of size X, one decoder of size Y. Same interface as
    :class:`EVC`: ``analyse``/``level_latents`` take a level, ``forward`` returns one :class:`RDOutput`
    (the last level's) whose ``levels`` hold every level's."""

    def __init__(self, encoder_size: str = "S", decoder_size: str = "S", num_levels: int = NUM_LEVELS) -> None:
        encoders = nn.ModuleList([AnalysisTransform(encoder_size) for _ in range(num_levels)])  # type: ignore[arg-type]
        super().__init__(encoder_size, decoder_size, encoder=encoders)
        self.num_levels = num_levels

    def analyse(self, x: torch.Tensor, level: int | None = None, run: Execution = DEFAULT_EXECUTION) -> torch.Tensor:
        """Latent of ``level`` (default: the last): mean of encoders 0..level; runs only those."""
        level = self.num_levels - 1 if level is None else level
        if not 0 <= level < self.num_levels:
            raise ValueError(f"encoder level must be in 0..{self.num_levels - 1}, got {level}")
        return self.level_latents(x, level, run)[-1]

    def level_latents(
        self, x: torch.Tensor, up_to: int | None = None, run: Execution = DEFAULT_EXECUTION
    ) -> list[torch.Tensor]:
        """Latents of levels 0..up_to (default: all), running only those encoders (coding path)."""
        up_to = self.num_levels - 1 if up_to is None else up_to
        total = None
        latents = []
        for k in range(up_to + 1):
            out = run.run_transform(self.g_a[k], x, 1)
            total = out if total is None else total + out
            latents.append(total / (k + 1))
        return latents

    def training_latents(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every level's latent with earlier encoders' outputs detached (residual learning)."""
        detached_sum = None
        latents = []
        for k, encoder in enumerate(self.g_a):
            out = encoder(x)
            latents.append(out / (k + 1) if detached_sum is None else (detached_sum + out) / (k + 1))
            detached_sum = out.detach() if detached_sum is None else detached_sum + out.detach()
        return latents

    def forward(self, x: torch.Tensor, anchor: torch.Tensor, entropy_autocast: bool = False) -> RDOutput:
        """The last level's RD output; its ``levels`` hold every level's (train on all of them).
        ``entropy_autocast``: see :meth:`EVC.rd_forward`."""
        check_padded(x)
        q_scale = self.rate.anchor_q_scale(anchor)
        levels = [self.rd_forward(x, y, q_scale, entropy_autocast) for y in self.training_latents(x)]
        last = levels[-1]
        return RDOutput(last.x_hat, last.y_bits, last.z_bits, last.bpp, levels=levels)


def expand_single_encoder_state(state: dict[str, torch.Tensor], num_levels: int = NUM_LEVELS) -> dict[str, torch.Tensor]:
    """A single-encoder model's tensors arranged for a scalable model: its encoder in every slot.

    This is how a scalable model starts from a decayed encoder (e.g. EVC-SL distilled from EVC-LL for
    Scale-SL): every level then begins as that encoder, and RRL training turns encoders 1..3 into
    residual corrections.
    """
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name.startswith("g_a."):
            for level in range(num_levels):
                out[f"g_a.{level}." + name.removeprefix("g_a.")] = tensor.clone()
        else:
            out[name] = tensor
    return out

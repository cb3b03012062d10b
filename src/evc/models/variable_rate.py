"""Single-model variable rate: learned quantisation steps q_basic (per channel) and q_scale (per anchor).

The latent is divided by max(q_basic, 0.5) * q_scale before the hyperprior. Four rate anchors are
trained with the lambdas of evc.models.rates; any rate in between uses a q_scale interpolated log-uniformly. A coded
file stores q_index = round(100 * q_scale), so the rate is continuous in steps of 0.01 in q_scale.
"""

from __future__ import annotations

import torch
from torch import nn

# The rate scale itself (anchors, q index <-> quality) needs no torch: it lives in evc.models.rates,
# and is re-exported here, where code has always imported it from.
from evc.models.rates import (  # noqa: F401
    LAMBDAS,
    NUM_ANCHORS,
    Q_INDEX_SCALE,
    lambda_for_q_index,
    q_index_for_quality,
    q_index_to_scale,
    q_scale_to_index,
    qualities_for_q_index,
    quality_for_q_index,
    rd_loss_weight,
)
from evc.nn.ops import lower_bound
from evc.nn.transforms import LATENT_CHANNELS

Q_BASIC_MIN = 0.5
# Initial q_scale per anchor (lowest rate first): log-spaced, ratio ~ sqrt(lambda ratio).
_INITIAL_Q_SCALES = (1.75, 1.15, 0.76, 0.5)


class VariableRate(nn.Module):
    def __init__(self, channels: int = LATENT_CHANNELS) -> None:
        super().__init__()
        self.q_basic = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.q_scale = nn.Parameter(torch.tensor(_INITIAL_Q_SCALES, dtype=torch.float32))

    def anchor_q_scale(self, anchor: torch.Tensor) -> torch.Tensor:
        """q_scale of each sample's anchor, shaped (B, 1, 1, 1) for broadcasting (differentiable)."""
        return self.q_scale.index_select(0, anchor.reshape(-1)).view(-1, 1, 1, 1)

    def divisor(self, q_scale: torch.Tensor) -> torch.Tensor:
        """The per-channel step the latent is divided by: max(q_basic, 0.5) * q_scale."""
        return lower_bound(self.q_basic, Q_BASIC_MIN) * q_scale

    # -- rates as integers, for files ------------------------------------------------------------
    def anchor_q_indices(self) -> list[int]:
        """q_index of each anchor, lowest rate first."""
        return [q_scale_to_index(float(s)) for s in self.q_scale.detach().cpu()]

    def anchor_q_scales(self) -> list[float]:
        """q_scale of each anchor, lowest rate first, as plain floats (what the rate mapping uses)."""
        return [float(s) for s in self.q_scale.detach().cpu()]

    def q_index_for_quality(self, quality: float) -> int:
        """quality 0 = lowest-rate anchor, 1 = highest-rate anchor, log-uniform in q_scale between
        (``quality``: in [0, 1], as :func:`evc.arguments.quality` checks it)."""
        return q_index_for_quality(quality, self.anchor_q_scales())

    def quality_for_q_index(self, q_index: int) -> float:
        """Inverse of :meth:`q_index_for_quality` (not clamped to [0, 1])."""
        quality = quality_for_q_index(q_index, self.anchor_q_scales())
        return 0.0 if quality is None else quality

    def lambda_for_q_index(self, q_index: int) -> float:
        """The RD trade-off at a q_index: lambda interpolated log-linearly along the anchors' q_scale."""
        return lambda_for_q_index(q_index, self.anchor_q_scales())

"""Single-model variable rate: learned quantisation steps q_basic (per channel) and q_scale (per anchor).

The latent is divided by max(q_basic, 0.5) * q_scale before the hyperprior. Four rate anchors are
trained with the lambdas below; any rate in between uses a q_scale interpolated log-uniformly. A coded
file stores q_index = round(100 * q_scale), so the rate is continuous in steps of 0.01 in q_scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from evc.bitstream.container import Q_INDEX_MAX
from evc.nn.ops import lower_bound
from evc.nn.transforms import LATENT_CHANNELS

LAMBDAS: tuple[float, ...] = (0.0022, 0.0050, 0.012, 0.027)
NUM_ANCHORS = len(LAMBDAS)
Q_BASIC_MIN = 0.5
Q_INDEX_SCALE = 100
# Initial q_scale per anchor (lowest rate first): log-spaced, ratio ~ sqrt(lambda ratio).
_INITIAL_Q_SCALES = (1.75, 1.15, 0.76, 0.5)


def rd_loss_weight(lmbda: float) -> float:
    """Weight of MSE (images in [0, 1]) in the loss lambda * 255^2 * MSE + bpp."""
    return lmbda * 255.0**2


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
        """quality 0 = lowest-rate anchor, 1 = highest-rate anchor, log-uniform in q_scale between."""
        if not (isinstance(quality, (int, float)) and 0.0 <= quality <= 1.0):
            raise ValueError(f"quality must be a number in [0, 1], got {quality!r}")
        return q_index_for_quality(quality, self.anchor_q_scales())

    def quality_for_q_index(self, q_index: int) -> float:
        """Inverse of :meth:`q_index_for_quality` (not clamped to [0, 1])."""
        quality = quality_for_q_index(q_index, self.anchor_q_scales())
        return 0.0 if quality is None else quality

    def lambda_for_q_index(self, q_index: int) -> float:
        """The RD trade-off at a q_index: lambda interpolated log-linearly along the anchors' q_scale."""
        t = min(max(self.quality_for_q_index(q_index), 0.0), 1.0)
        return math.exp(math.log(LAMBDAS[0]) + t * (math.log(LAMBDAS[-1]) - math.log(LAMBDAS[0])))


def q_index_for_quality(quality: float, anchor_q_scales: list[float]) -> int:
    """The q index a quality in [0, 1] codes to with these anchors (lowest rate first): log-uniform in
    q_scale from the lowest- (0) to the highest-rate (1) anchor, rounded to the file's 0.01 steps."""
    low, high = math.log(anchor_q_scales[0]), math.log(anchor_q_scales[-1])
    return q_scale_to_index(math.exp(low + quality * (high - low)))


def qualities_for_q_index(q_index: int, anchor_q_scales: list[float], max_decimals: int = 6) -> tuple[float, float] | None:
    """The quality settings that code to ``q_index``, as (lowest, highest): the file stores only the
    q index, and every quality between these gives it. The ends are numbers of the fewest decimals (2 or
    more) that any quality coding to ``q_index`` has, so they are the shortest settings a user types for
    it. None when no quality in [0, 1] codes to it (a q index past an end anchor, given explicitly)."""
    # Trained anchors have ever smaller steps (q_index falls as quality rises); reversed ones are read backwards.
    falling = q_index_for_quality(0.0, anchor_q_scales) >= q_index_for_quality(1.0, anchor_q_scales)
    for decimals in range(2, max_decimals + 1):
        steps = 10**decimals

        def q_at(k: int) -> int:  # non-increasing in k
            return q_index_for_quality((k if falling else steps - k) / steps, anchor_q_scales)

        # Bisect for the run of k where q_at(k) == q_index.
        first = _first(0, steps + 1, lambda k: q_at(k) <= q_index)
        after = _first(first, steps + 1, lambda k: q_at(k) < q_index)
        if first < after:
            ends = (first, after - 1) if falling else (steps - after + 1, steps - first)
            return ends[0] / steps, ends[1] / steps
    return None


def _first(low: int, high: int, holds: Callable[[int], bool]) -> int:
    """The smallest k in [low, high) where the monotone ``holds`` (False, then True) holds; ``high`` if none."""
    while low < high:
        mid = (low + high) // 2
        if holds(mid):
            high = mid
        else:
            low = mid + 1
    return low


def quality_for_q_index(q_index: int, anchor_q_scales: list[float]) -> float | None:
    """Where ``q_index`` lies between the lowest- (0) and highest-rate (1) anchors, log-uniformly in
    q_scale (not clamped to [0, 1]); None when the anchors' ends coincide."""
    low, high = math.log(anchor_q_scales[0]), math.log(anchor_q_scales[-1])
    if high == low:
        return None
    return (math.log(q_index_to_scale(q_index)) - low) / (high - low)


def q_scale_to_index(q_scale: float) -> int:
    return int(min(max(round(q_scale * Q_INDEX_SCALE), 1), Q_INDEX_MAX))


def q_index_to_scale(q_index: int) -> float:
    return q_index / Q_INDEX_SCALE

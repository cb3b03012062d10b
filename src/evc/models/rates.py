"""The rate scale of a variable-rate model, without torch: the four rate anchors' lambdas, the file's
q index (round(100 * q_scale)), and the mapping between quality settings in [0, 1] and q indices
given the anchors' q_scale values. evc.models.variable_rate (the learned parameters) re-exports it;
`evc info` uses it alone, so describing a file does not import torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from evc.bitstream.container import Q_INDEX_MAX

LAMBDAS: tuple[float, ...] = (0.0022, 0.0050, 0.012, 0.027)
NUM_ANCHORS = len(LAMBDAS)
Q_INDEX_SCALE = 100


def rd_loss_weight(lmbda: float) -> float:
    """Weight of MSE (images in [0, 1]) in the loss lambda * 255^2 * MSE + bpp."""
    return lmbda * 255.0**2


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


def lambda_for_q_index(q_index: int, anchor_q_scales: list[float]) -> float:
    """The RD trade-off at a q index: lambda interpolated log-linearly between the end anchors' lambdas
    along the anchors' q_scale (clamped to them; the lowest anchor's where the anchors' ends coincide)."""
    t = min(max(quality_for_q_index(q_index, anchor_q_scales) or 0.0, 0.0), 1.0)
    return math.exp(math.log(LAMBDAS[0]) + t * (math.log(LAMBDAS[-1]) - math.log(LAMBDAS[0])))


def q_scale_to_index(q_scale: float) -> int:
    """The file's q index of a q_scale: round(100 * q_scale), clamped to 1..Q_INDEX_MAX."""
    return int(min(max(round(q_scale * Q_INDEX_SCALE), 1), Q_INDEX_MAX))


def q_index_to_scale(q_index: int) -> float:
    """The q_scale a q index stands for."""
    return q_index / Q_INDEX_SCALE

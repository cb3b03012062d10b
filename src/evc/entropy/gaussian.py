"""Gaussian conditional entropy model for the latent y.

Training uses the continuous rate estimate; coding maps each sigma to one entry of a fixed,
log-spaced scale table and codes with that entry's precomputed discrete distribution.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

SIGMA_MIN = 0.11
SIGMA_MAX = 64.0
NUM_SCALES = 256
# Half-width of a scale's table in units of its sigma; the tail beyond it is coded by escape.
TAIL_SIGMAS = 7.0
LIKELIHOOD_FLOOR = 1e-5


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x * (2.0**-0.5))


def gaussian_bits(residual: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Estimated bits of an integer-valued residual under N(0, sigma) discretised to unit bins."""
    sigma = sigma.clamp_min(SIGMA_MIN)
    upper = _std_normal_cdf((residual + 0.5) / sigma)
    lower = _std_normal_cdf((residual - 0.5) / sigma)
    return (-torch.log2(upper - lower + LIKELIHOOD_FLOOR)).clamp_min(0.0)


@lru_cache(maxsize=1)
def scale_table() -> torch.Tensor:
    """The NUM_SCALES log-spaced sigmas from SIGMA_MIN to SIGMA_MAX (float32)."""
    values = [
        math.exp(math.log(SIGMA_MIN) + k * (math.log(SIGMA_MAX) - math.log(SIGMA_MIN)) / (NUM_SCALES - 1))
        for k in range(NUM_SCALES)
    ]
    return torch.tensor(values, dtype=torch.float32)


def scale_index(sigma: torch.Tensor) -> torch.Tensor:
    """Index of the smallest table sigma >= sigma (int32); values beyond the table use the last entry.

    Pure comparisons against fixed float32 thresholds, so encoder and decoder agree whenever they
    computed the same sigma.
    """
    table = scale_table().to(sigma.device)
    index = torch.bucketize(sigma.float().contiguous(), table, right=False)
    return index.clamp_(0, NUM_SCALES - 1).to(torch.int32)


@lru_cache(maxsize=1)
def scale_pmfs() -> tuple[tuple[np.ndarray, int], ...]:
    """For every table sigma: (pmf over the symbols -L..L as float64, lowest symbol -L)."""
    out = []
    for sigma in scale_table().tolist():
        half = max(1, math.ceil(TAIL_SIGMAS * sigma))
        edges = [0.5 * math.erfc(-(k + 0.5) / (sigma * math.sqrt(2.0))) for k in range(-half - 1, half + 1)]
        pmf = np.diff(np.asarray(edges, dtype=np.float64))
        out.append((pmf, -half))
    return tuple(out)

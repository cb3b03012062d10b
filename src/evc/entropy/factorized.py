"""Factorized density for the hyper-latent z: one learned, monotone CDF per channel."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evc.entropy.gaussian import LIKELIHOOD_FLOOR

# Probability mass left outside a channel's table (coded by escape), and the widest table allowed.
TABLE_TAIL_MASS = 1e-7
TABLE_SEARCH_RADIUS = 1024


class FactorizedDensity(nn.Module):
    """Per-channel CDF: 4 stacked layers f(x) = x * softplus(h) + b, the first three followed by
    f + tanh(a) * tanh(f), then a sigmoid. Each layer is monotone, so the result is a valid CDF."""

    NUM_LAYERS = 4

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        shape = (self.NUM_LAYERS, channels)
        self.h = nn.Parameter(torch.normal(0.0, 0.01, shape))
        self.b = nn.Parameter(torch.normal(0.0, 0.01, shape))
        self.a = nn.Parameter(torch.normal(0.0, 0.01, (self.NUM_LAYERS - 1, channels)))

    def _logits(self, x: torch.Tensor, h: torch.Tensor, b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        # x: (B, C, ...) with C == channels; parameters are broadcast along the channel axis.
        view = (1, self.channels) + (1,) * (x.dim() - 2)
        for i in range(self.NUM_LAYERS):
            x = x * F.softplus(h[i]).view(view) + b[i].view(view)
            if i < self.NUM_LAYERS - 1:
                x = x + torch.tanh(a[i]).view(view) * torch.tanh(x)
        return x

    def cdf(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self._logits(x, self.h, self.b, self.a))

    def bits(self, z: torch.Tensor) -> torch.Tensor:
        """Estimated bits of each (integer or noisy) element of z (B, C, H, W)."""
        p = self.cdf(z + 0.5) - self.cdf(z - 0.5)
        return (-torch.log2(p + LIKELIHOOD_FLOOR)).clamp_min(0.0)

    @torch.no_grad()
    def coding_pmfs(self) -> list[tuple[np.ndarray, int]]:
        """Per channel: (pmf over the integers lo..hi as float64, lo).

        Computed on the CPU in float64 from the parameters, so the encoder and the decoder build the
        same tables from the same weights.
        """
        params = [p.detach().to("cpu", torch.float64) for p in (self.h, self.b, self.a)]
        grid = torch.arange(-TABLE_SEARCH_RADIUS, TABLE_SEARCH_RADIUS + 2, dtype=torch.float64) - 0.5
        edges = torch.sigmoid(self._logits(grid.expand(1, self.channels, -1).unsqueeze(-1), *params))
        edges = edges.squeeze(0).squeeze(-1).numpy()  # (C, 2R+2): CDF at k - 0.5 for k in -R..R+1
        out = []
        for c in range(self.channels):
            cdf = edges[c]
            # Symbols k in [lo, hi] with CDF(k + .5) > tail and CDF(k - .5) < 1 - tail.
            ks = np.arange(-TABLE_SEARCH_RADIUS, TABLE_SEARCH_RADIUS + 1)
            keep = (cdf[1:] > TABLE_TAIL_MASS) & (cdf[:-1] < 1.0 - TABLE_TAIL_MASS)
            if keep.any():
                lo, hi = int(ks[keep][0]), int(ks[keep][-1])
            else:  # degenerate density: fall back to a single symbol at its median
                lo = hi = int(ks[np.searchsorted(cdf[1:], 0.5)]) if cdf[-1] >= 0.5 else 0
            pmf = cdf[lo + TABLE_SEARCH_RADIUS + 1 : hi + TABLE_SEARCH_RADIUS + 2] - cdf[
                lo + TABLE_SEARCH_RADIUS : hi + TABLE_SEARCH_RADIUS + 1
            ]
            out.append((np.asarray(pmf, dtype=np.float64), lo))
        return out

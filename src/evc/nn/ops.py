"""Small differentiable operations shared by the codec networks."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass (straight-through)."""
    return x + (torch.round(x) - x).detach()


class _LowerBoundFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        # Let the gradient through where x is above the bound, or where descent would push x up:
        # a value stuck below the bound can still recover.
        passes = (x >= ctx.bound) | (grad < 0)
        return grad * passes.to(grad.dtype), None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    """max(x, bound) with a straight-through gradient below the bound."""
    return _LowerBoundFn.apply(x, bound)


def parameters_key(parameters: Iterable[torch.Tensor]) -> tuple[tuple[int, int], ...]:
    """A key that changes whenever one of ``parameters`` is replaced, moved to other memory or changed
    in place (its storage address and autograd version counter): what a cache derived from weights
    (exact conversions, coding tables) compares before reuse. Reads no tensor data.

    Writes through ``param.data`` bypass the version counter and are not seen.
    """
    return tuple((p.data_ptr(), p._version) for p in parameters)

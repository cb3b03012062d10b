"""Per-image rate control: find the q index that meets a bits-per-pixel or PSNR target.

Both searches bisect over the integer q indices between the model's highest- and lowest-rate anchors
and return a result that was actually coded and meets the target, never an extrapolation. A target
that no rate misses (every file fits the bpp, every reconstruction reaches the PSNR) gives the end of
the range with a ``UserWarning`` that says so; one that no rate meets raises ``TargetUnreachable``.
"""

from __future__ import annotations

import warnings
from typing import Callable, Protocol

from evc.errors import EVCError


class Coded(Protocol):
    @property
    def bpp(self) -> float: ...

    @property
    def psnr(self) -> float: ...


class TargetUnreachable(EVCError):
    """No rate of the model meets the requested target for this image."""


def _memoize(encode: Callable[[int], Coded]) -> Callable[[int], Coded]:
    results: dict[int, Coded] = {}

    def cached(q: int) -> Coded:
        if q not in results:
            results[q] = encode(q)
        return results[q]

    return cached


def _bisect(encode: Callable[[int], Coded], q_low: int, q_high: int, ok: Callable[[Coded], bool], ok_at_high_q: bool) -> Coded:
    """``ok`` is assumed monotone in q over [q_low, q_high]; return the coded result at the boundary.

    ok_at_high_q=True: ok holds for large q (low rate); return the smallest q where it holds.
    ok_at_high_q=False: ok holds for small q (high rate); return the largest q where it holds.
    """
    good, bad = (q_high, q_low) if ok_at_high_q else (q_low, q_high)
    if ok(encode(bad)):
        return encode(bad)
    while abs(good - bad) > 1:
        mid = (good + bad) // 2
        if ok(encode(mid)):
            good = mid
        else:
            bad = mid
    return encode(good)


def meet_target_bpp(encode: Callable[[int], Coded], q_best: int, q_worst: int, target_bpp: float) -> Coded:
    """Highest quality whose real file size is at most ``target_bpp`` bits per pixel."""
    if not target_bpp > 0:
        raise ValueError(f"target bpp must be positive, got {target_bpp}")
    encode = _memoize(encode)
    lowest = encode(q_worst)
    if lowest.bpp > target_bpp:
        raise TargetUnreachable(
            f"target of {target_bpp:g} bpp is below this model's lowest rate for this image ({lowest.bpp:.4f} bpp)"
        )
    best = encode(q_best)
    if best.bpp <= target_bpp:  # the target does not bite: say so rather than pretend it chose the rate
        warnings.warn(
            f"target of {target_bpp:g} bpp is above this model's highest rate for this image: "
            f"writing its best quality ({best.bpp:.4f} bpp, {best.psnr:.2f} dB)",
            UserWarning, stacklevel=3,
        )
        return best
    return _bisect(encode, q_best, q_worst, lambda r: r.bpp <= target_bpp, ok_at_high_q=True)


def meet_target_psnr(encode: Callable[[int], Coded], q_best: int, q_worst: int, target_psnr: float) -> Coded:
    """Lowest rate whose reconstruction reaches ``target_psnr`` dB."""
    encode = _memoize(encode)
    best = encode(q_best)
    if best.psnr < target_psnr:
        raise TargetUnreachable(
            f"target of {target_psnr:g} dB is above this model's best quality for this image ({best.psnr:.2f} dB)"
        )
    worst = encode(q_worst)
    if worst.psnr >= target_psnr:  # the target does not bite: say so rather than pretend it chose the rate
        warnings.warn(
            f"target of {target_psnr:g} dB is below this model's lowest quality for this image: "
            f"writing its smallest file ({worst.bpp:.4f} bpp, {worst.psnr:.2f} dB)",
            UserWarning, stacklevel=3,
        )
        return worst
    return _bisect(encode, q_best, q_worst, lambda r: r.psnr >= target_psnr, ok_at_high_q=False)

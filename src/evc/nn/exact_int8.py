"""Exact evaluation of the entropy-parameter networks with 8-bit integer matrix products (format version 3).

:mod:`evc.nn.exact` makes these networks device- and thread-independent with float64 fixed point, whose
convolutions have no fast kernel on CPUs (no oneDNN float64) nor on most GPUs. This arithmetic computes
the same networks with int8 x int8 -> int32 matrix products (``torch._int_mm``: VNNI / AMX on x86, tensor
cores on CUDA) and float32 depthwise convolutions on small integers, every sum exact, so that every
device and thread count gives the same integers. It rounds more coarsely than float64 fixed point, so
its results differ from it: files say which arithmetic wrote them (format version 3 uses this one).

Activations
    Integers ``a`` meaning ``a * 2**-FRAC_BITS``, saturated at +-ACTIVATION_MAX (15 bits with sign),
    held in int32 tensors laid out (N, H, W, C), so that a 1x1 conv is one matrix product and
    per-channel operations broadcast along the contiguous last dimension. The networks' inputs are
    rounded half up onto this grid.
1x1 convs (and several 1x1 convs reading one input, fused into one product)
    Weights: per output channel c, integers ``w_int = round(w * 2**FW_c)`` with the most fractional
    bits FW_c (0..MAX_WEIGHT_BITS) that keep every ``|w_int| <= WEIGHT_MAX`` (63). The input is split
    into two int8 limbs ``a = 128 * hi + lo`` (hi in [-128, 127], lo in [0, 127]) and the accumulator is
    ``128 * (hi @ W) + (lo @ W) + bias``, with the bias in the accumulator's scale
    ``2**-(FRAC_BITS + FW_c)`` and the rounding half folded in; ``acc >> FW_c`` (an arithmetic shift:
    floor, hence round half up) is the output on the activation grid, then saturated.
    Why 63 and not 127: x86 CPUs without VNNI multiply int8 pairs into a saturating int16
    (``vpmaddubsw`` on unsigned x signed bytes, after shifting signed bytes by 128); with
    ``|w| <= 63`` no such pair sum can exceed 2 * 255 * 63 = 32130 < 2**15, so the products are exact
    on every kernel, not only on the VNNI / AMX / CUDA ones.
Depthwise 3x3 convs
    float32 convolutions of the activation integers with integer weights whose taps' sum of magnitudes
    is at most DEPTHWISE_L1: every partial sum is an integer below 2**14 * 1023 < 2**24, exact in
    float32 in any order (oneDNN / CUDA direct kernels; cuDNN is switched off as for float64, whose
    Winograd / FFT algorithms would round). Then bias, shift and saturation as above, in int32.
The bound
    Every accumulator stays below 2**31: ``ACTIVATION_MAX * sum_i |w_int_i| + |bias_int| < 2**31`` is
    checked for every output channel at conversion, and a channel that would exceed it takes fewer
    weight bits. Weights with ``|w| > WEIGHT_MAX`` (no integer grid keeps them within 63) or a bias that
    cannot fit raise ValueError; so do non-finite weights.
LeakyReLU
    ``x`` for ``x >= 0``, else ``(x * S + 2**(SLOPE_BITS - 1)) >> SLOPE_BITS`` with the integer slope
    ``S = round(slope * 2**SLOPE_BITS)``; slopes above 1 raise ValueError.
The last conv of a network
    Its accumulator is not rounded to the activation grid: the network's outputs (mu, sigma, q_step)
    come out on the float64 path's finer grid, ``round_half_up(acc * 2**(ACTIVATION_FRAC_BITS -
    FRAC_BITS - FW_c))``, computed exactly in float64, and what follows it (its LeakyReLU, the residual
    sum) runs in :mod:`evc.nn.exact`'s float64 fixed point. So a compiled network takes and returns the
    same activation integers as :func:`evc.nn.exact.compile_network` (float64, (N, C, H, W),
    multiples of 2**-ACTIVATION_FRAC_BITS), and the two are interchangeable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from evc.nn import exact

# Activation grid 2**-8: with 15 bits the saturation is +-64. On the first 4 validation photos at
# qualities 0, 1/3, 2/3, 1, the shipped EVC-SS v3's activations reached 64.25 at most, and its real
# files grew by 0.59 % over float64 fixed point with 2**-8, by 0.81 % with 2**-7 (saturation +-128;
# 16 files each, 2026-12-04).
FRAC_BITS = 8
ACTIVATION_MAX = 2**14 - 1
LIMB = 128  # a = LIMB * hi + lo
WEIGHT_MAX = 63  # see "Why 63" above
MAX_WEIGHT_BITS = 24  # weights below 2**-19 in magnitude round to 0 anyway at 63 / 2**24
DEPTHWISE_L1 = 1023
ACC_LIMIT = 2**31
SLOPE_BITS = 15
# From the activation grid to the float64 path's grid (a left shift: multiply by a power of two).
_TO_FINE = 2.0 ** (exact.ACTIVATION_FRAC_BITS - FRAC_BITS)

_Op = Callable[[torch.Tensor], torch.Tensor]


def _weight_bits(weight: torch.Tensor, bias: torch.Tensor, depthwise: bool, name: str) -> torch.Tensor:
    """Per output channel, the most fractional bits FW (0..MAX_WEIGHT_BITS) whose integer weights keep
    |w_int| <= WEIGHT_MAX, (depthwise) sum |w_int| <= DEPTHWISE_L1, and the accumulator bound. int64 (C,).

    ``weight`` (C, K) and ``bias`` (C,) float64, finite. Decided on exact float64 values: scaling by a
    power of two and rounding are exact, and the row sums of integers below 2**7 are exact."""
    rows = weight.abs()
    largest = rows.amax(dim=1)

    def fits(fw: torch.Tensor) -> torch.Tensor:
        scale = torch.exp2(fw.to(torch.float64))
        w_int = (rows * scale[:, None]).round()  # |round(w * 2**fw)|: rounding is symmetric
        b_int = (bias.abs() * scale * 2.0**FRAC_BITS).round() + torch.where(fw > 0, scale / 2, 0.0)
        ok = w_int.amax(dim=1) <= WEIGHT_MAX
        if depthwise:
            ok &= w_int.sum(dim=1) <= DEPTHWISE_L1
        return ok & (w_int.sum(dim=1) * ACTIVATION_MAX + b_int < ACC_LIMIT)

    # Every condition only gets harder as fw grows, so the answer is the largest fw that meets them:
    # start from the |w| <= 63 bound (largest * 2**fw < 63.5), step up while the next fw still fits it
    # (log2 may be off by one), then down until every condition holds.
    with torch.no_grad():
        start = torch.floor(torch.log2(63.5 / largest.clamp_min(1e-300))).clamp(-1, MAX_WEIGHT_BITS).to(torch.int64)
        best = torch.where(largest == 0, MAX_WEIGHT_BITS, start)
        for _ in range(3):
            up = (best < MAX_WEIGHT_BITS) & ((largest * torch.exp2((best + 1).to(torch.float64))).round() <= WEIGHT_MAX)
            best = best + up.to(torch.int64)
        for _ in range(MAX_WEIGHT_BITS + 2):
            bad = (best >= 0) & ~fits(best.clamp_min(0))
            if not bad.any():
                break
            best = best - bad.to(torch.int64)
    if (best < 0).any():
        c = int((best < 0).nonzero()[0])
        raise ValueError(
            f"{name}: output channel {c} cannot be evaluated with 8-bit weights (largest |w| "
            f"{weight[c].abs().max().item():.4g}, |bias| {bias[c].abs().item():.4g}; 8-bit weights need "
            f"|w| <= {WEIGHT_MAX})"
        )
    return best


def int8_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(M, K) int8 @ (K, N) int8 -> (M, N) int32, exact. CUDA's kernel wants M > 16 and K, N multiples of
    8: zero rows / columns are added there (they add nothing to any sum) and cut off again."""
    if a.device.type != "cuda":
        return torch._int_mm(a, b)
    m, k = a.shape
    n = b.shape[1]
    pad_m, pad_k, pad_n = max(17 - m, 0), -k % 8, -n % 8
    if pad_m or pad_k:
        a = F.pad(a, (0, pad_k, 0, pad_m))
    if pad_k or pad_n:
        b = F.pad(b, (0, pad_n, 0, pad_k))
    return torch._int_mm(a, b)[:m, :n]


def to_grid(x: torch.Tensor) -> torch.Tensor:
    """float64 activation integers of :mod:`evc.nn.exact` (N, C, H, W) -> this arithmetic's (N, H, W, C)
    int32, rounded half up onto the coarser grid and saturated (exact: a power-of-two scaling and floor)."""
    coarse = (x * (1.0 / _TO_FINE) + 0.5).floor_().clamp_(-ACTIVATION_MAX, ACTIVATION_MAX)
    return coarse.permute(0, 2, 3, 1).to(torch.int32).contiguous()


def to_fine(x: torch.Tensor) -> torch.Tensor:
    """(N, H, W, C) activations (int32 on this grid, or float64 already on the fine grid) -> float64 on
    :mod:`evc.nn.exact`'s grid, same layout (exact)."""
    return x if x.dtype == torch.float64 else x.to(torch.float64).mul_(_TO_FINE)


class _Conv:
    """1x1 convs (fused along the output channels) or a depthwise 3x3 conv; ``final``: the network's
    last conv, whose output goes to the fine float64 grid (set by :func:`compile_network`)."""

    def __init__(self, convs: Sequence[tuple[str, nn.Conv2d]], build: exact.Build) -> None:
        device = build.device
        weights, biases, bits = [], [], []
        for name, conv in convs:
            weight, bias = exact.read_conv(name, conv, torch.device("cpu"), fused=len(convs) > 1)
            weight = weight.flatten(1)  # (C, K), converted on the CPU; the result moves to the device below
            fw = _weight_bits(weight, bias, conv.groups > 1, name)
            scale = torch.exp2(fw.to(torch.float64))
            weights.append((weight * scale[:, None]).round())
            b_int = (bias * scale * 2.0**FRAC_BITS).round()
            biases.append(b_int)
            bits.append(fw)
        self.depthwise = convs[0][1].groups > 1
        weight = torch.cat(weights)
        self.bits = torch.cat(bits)
        self.raw_bias = torch.cat(biases)  # without the rounding half
        self.final = False
        if self.depthwise:
            self.weight = weight.view(-1, 1, 3, 3).to(device=device, dtype=torch.float32)
        else:
            self.weight = weight.t().contiguous().to(device=device, dtype=torch.int8)  # (K, N)
        self.device = device
        self._set_output()

    def _set_output(self) -> None:
        device = self.device
        half = torch.where(self.bits > 0, torch.exp2((self.bits - 1).clamp_min(0).to(torch.float64)), 0.0)
        if self.final:
            self.bias = self.raw_bias.to(device=device, dtype=torch.int32)
            # acc * 2**(16 - FRAC_BITS - FW_c): exact in float64 (an integer below 2**31 times a power of two).
            self.scale = torch.exp2((exact.ACTIVATION_FRAC_BITS - FRAC_BITS - self.bits).to(torch.float64)).to(device)
        else:
            self.bias = (self.raw_bias + half).to(device=device, dtype=torch.int32)
            self.shift = self.bits.to(device=device, dtype=torch.int32)

    def mark_final(self) -> None:
        self.final = True
        self._set_output()

    def _accumulate(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.int32:
            raise TypeError("a conv after the network's last conv")  # compile_network never builds one
        if self.depthwise:
            # (N, H, W, C) int32 -> the same memory as a channels-last (N, C, H, W) float32 tensor.
            cols = x.permute(0, 3, 1, 2).to(torch.float32)
            acc = F.conv2d(cols, self.weight, None, padding=1, groups=self.weight.shape[0])
            return acc.permute(0, 2, 3, 1).to(torch.int32).contiguous().add_(self.bias)
        flat = x.reshape(-1, x.shape[-1])
        hi = (flat >> 7).to(torch.int8)
        lo = (flat & (LIMB - 1)).to(torch.int8)
        acc = torch.add(int8_matmul(lo, self.weight), int8_matmul(hi, self.weight), alpha=LIMB)
        return acc.add_(self.bias).view(*x.shape[:-1], -1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        acc = self._accumulate(x)
        if self.final:
            return acc.to(torch.float64).mul_(self.scale).add_(0.5).floor_()
        return torch.bitwise_right_shift(acc, self.shift).clamp_(-ACTIVATION_MAX, ACTIVATION_MAX)


class _LeakyReLU:
    """Not float64 fixed point's: an integer slope of SLOPE_BITS and a shift on this grid's int32, and
    float64 fixed point's own after the network's last conv (on the fine grid)."""

    def __init__(self, module: nn.LeakyReLU, name: str, in_place: bool) -> None:
        exact.check_plain(module, name)
        if not 0 <= module.negative_slope <= 1:
            raise ValueError(f"{name}: negative slope {module.negative_slope} is outside [0, 1]")
        self.slope = round(module.negative_slope * 2**SLOPE_BITS)
        self.fine = exact.FLOAT64.leaky_relu(module, name, in_place)  # after the network's last conv

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float64:
            return self.fine(x)
        # round(x * S / 2**15) is x for x >= 0 (S < 2**15 and the half rounds down) and at least x for
        # x < 0 (S >= 0), so the max picks the right side in three passes. |x * S| <= 2**29: no overflow.
        scaled = torch.add(torch.tensor(1 << (SLOPE_BITS - 1), dtype=torch.int32), x, alpha=self.slope)
        return torch.maximum(x, scaled.bitwise_right_shift_(SLOPE_BITS), out=scaled)


class _PixelShuffle(exact.FixedPixelShuffle):
    """The same moves on channels last."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # (N, H, W, C r r) -> (N, H r, W r, C), as F.pixel_shuffle orders channels (c, i, j).
        r = self.factor
        n, h, w, c = x.shape
        out = x.view(n, h, w, c // (r * r), r, r).permute(0, 1, 4, 2, 5, 3)
        return out.reshape(n, h * r, w * r, c // (r * r))


class _Branches(exact.FixedBranches):
    """The chains run as in float64 fixed point, on channels last; the sum is a new tensor (``accumulator``
    unused), on this grid, or on the fine one once a chain has passed the network's last conv."""

    CHANNELS = (Ellipsis,)  # (N, H, W, C)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        outs = self.outputs(x)
        if any(out.dtype == torch.float64 for out in outs):  # after the last conv: the fine grid
            total = to_fine(outs[0])
            if total is outs[0]:
                total = total.clone()
            for out in outs[1:]:
                total.add_(to_fine(out))
            return total.clamp_(-exact.SATURATION, exact.SATURATION)
        total = outs[0] + outs[1]
        for out in outs[2:]:
            total.add_(out)
        return total.clamp_(-ACTIVATION_MAX, ACTIVATION_MAX)


def compile_network(module: nn.Module, name: str, device: torch.device) -> _Op:
    """``module`` in this arithmetic on ``device``: a function from :mod:`evc.nn.exact`'s activation
    integers (float64 (N, C, H, W), e.g. :func:`evc.nn.exact.to_fixed`) to the same, exact on every
    device and thread count. Raises TypeError for a module the walk cannot follow (see
    :func:`evc.nn.exact.compile_with`), ValueError for non-finite weights, weights beyond 8 bits' reach
    or negative slopes outside [0, 1]."""
    convs: list[_Conv] = []

    def conv(specs: Sequence[tuple[str, nn.Conv2d]], build: exact.Build) -> _Op:
        convs.append(_Conv(specs, build))
        return convs[-1]

    arithmetic = exact.Arithmetic(conv, _LeakyReLU, _PixelShuffle, _Branches)
    network = exact.compile_with(module, name, exact.Build(device, arithmetic=arithmetic))
    if not convs:
        raise TypeError(f"{name}: a network without convs")
    convs[-1].mark_final()

    def run(x: torch.Tensor) -> torch.Tensor:
        out = to_fine(network(to_grid(x)))
        return out.permute(0, 3, 1, 2).contiguous()

    return run

"""Exact (device- and thread-independent) evaluation of the networks that set the entropy coder's tables.

The decoder must compute the same Gaussian scale index and the same mean ``mu`` for every latent element
as the encoder did, bit for bit, or ANS decoding derails. The float32 networks do not guarantee that:
their sums are rounded, and the rounding depends on the summation order, which changes with the CPU, the
thread count, the BLAS kernel and CPU vs CUDA. This module evaluates the *same* networks (``h_s``,
``prior_fusion`` and the dual spatial prior's ``net``, see :mod:`evc.entropy.exact_parameters`) in
fixed point, where every sum is exact and the result therefore cannot depend on the order of the sums.

Fixed point
    An activation is an integer ``a`` meaning ``a * 2**-ACTIVATION_FRAC_BITS``; a weight is the integer
    ``round(w * 2**WEIGHT_FRAC_BITS)`` (fewer bits in a conv with very large weights, see the bound); a
    bias is an integer in the accumulator's scale ``2**-(ACTIVATION_FRAC_BITS + WEIGHT_FRAC_BITS)``.
    Integers are held in float64 tensors so that the ordinary ``F.conv2d`` kernels (BLAS GEMM, CUDA
    kernels) do the work. A float64 product or sum of integers is exact as long as its magnitude stays
    below 2**53, so a convolution is exact, and every implementation returns the same integers in
    whatever order it adds, provided that every partial sum stays below 2**53 (see the bound below).
Rescaling
    The accumulator goes back to the activation scale with round-half-up:
    ``floor((acc + 2**(FW - 1)) / 2**FW)`` with the conv's weight bits ``FW`` (WEIGHT_FRAC_BITS unless
    its weights are very large, see the bound below; FW = 0 is the identity); the half is folded into
    the bias and the division by a power of two is exact, so the result is a deterministic integer.
    LeakyReLU multiplies the negative side by an integer slope numerator
    (``round(slope * 2**WEIGHT_FRAC_BITS)``) and rescales with the same rounding.
Saturation
    Every activation (inputs, conv outputs, residual sums) is clamped to +-ACTIVATION_LIMIT. This is what
    makes the bound hold for *every* input, however odd: a conv input is never larger than the limit.
The bound
    Any partial sum of a conv output is at most ``sum_i |w_int_i| * A + |b_int|`` with
    ``A = ACTIVATION_LIMIT * 2**ACTIVATION_FRAC_BITS``. It is checked exactly for every output channel
    of every conv when the weights are converted. With the constants below a layer passes if each
    output channel's weight L1 norm (sum of |w|) is below 2**(53 - 12 - 16 - 18) = 128 (less a
    negligible bias term); PyTorch's default initialisation gives at most 18 in these networks. Trained
    weights can exceed it (shipped EVC-SS has a row L1 norm above 128 in prior fusion's adaptor;
    docs/training.md reports the norms of every leg). Each conv is converted by the first of these rules that keeps its sums exact:

    1. within the bound: WEIGHT_FRAC_BITS weight bits, input saturated at ACTIVATION_LIMIT;
    2. beyond it, but exact for inputs up to at least MIN_INPUT_LIMIT with WEIGHT_FRAC_BITS bits (row L1
       norms up to about 2,000): the conv saturates its own input at the largest bound that keeps its
       sums exact (shipped EVC-SS saturates prior fusion's adaptor this way);
    3. anything larger: fewer weight fractional bits ``FW`` for that conv, the most (17 down to 0) that
       keep its sums exact with the input at ACTIVATION_LIMIT. Weights are ``round(w * 2**FW)``, the bias
       is in the scale ``2**-(ACTIVATION_FRAC_BITS + FW)`` and the rescale divides by ``2**FW``. The
       relative precision follows the weights: 16 times larger weights lose 4 bits and keep about as
       many significant ones.

    Only non-finite weights, or weights too large even for FW = 0 (a row L1 norm of 2**25), raise
    ``ValueError``. Rules 1 and 2 are what the conversion always did, so weights that converted before
    compute the same bits. Everything depends on the weights alone: the same on every device.
    :func:`evc.entropy.exact_parameters.exact_headroom` reports where trained weights stand.
Devices
    The converted weights live on the model's device; CPU and CUDA give bit-identical results. CPU
    float64 convolutions use the native im2col + GEMM / direct depthwise kernels (mkldnn does not take
    float64); on CUDA cuDNN is switched off for the convolutions (see :func:`exact_convolutions`).
    Nothing depends on the thread count: threads only change the order of exact sums.
Structure
    The fixed-point networks are compiled from the float modules themselves, walking the branches that
    each block declares and its forward runs (:func:`evc.nn.blocks.describe`: Sequential and the
    :class:`~evc.nn.blocks.Composite` blocks), down to Conv2d, LeakyReLU, Identity and PixelShuffle. Any
    other module, a block whose forward is not derived from its description, or a module with forward
    hooks raises ``TypeError``. A sum of branches is saturated like every activation. Branches that
    start with a 1x1 conv read the same input and run as one GEMM (DepthConv's conv1 and adaptor).

Outputs are float64 tensors of exact multiples of 2**-ACTIVATION_FRAC_BITS. Keep them in float64:
float32 holds only 24 significant bits, too few for large values with 16 fractional bits. (Casting them
to float32 for ``scale_index`` is fine: IEEE conversion is deterministic.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from evc.nn.blocks import ResolvedChain, describe

# Fractional bits of activations: resolution 2**-16 ~ 1.5e-5, far below the scale table's 2.5% steps
# (at the smallest sigma, 0.11, one step is 2.8e-3) and negligible as a shift of mu.
ACTIVATION_FRAC_BITS = 16
# Fractional bits of weights: a weight of typical size 0.03 keeps about 13 significant bits. Weight
# rounding dominates the deviation from the float networks (about 1.5e-4 at most, on random weights:
# 16 bits gave 6e-4, 20 bits 6e-5 but would leave only L1 < 32 for the bound).
WEIGHT_FRAC_BITS = 18
# Saturation of every activation (real units). sigma tops out at 64 and latent symbols beyond a few
# hundred are freak events; a saturated value is still computed identically on both sides.
ACTIVATION_LIMIT = 2.0**12
# Integers up to this magnitude are exact in float64.
EXACT_LIMIT = 2**53
# A conv whose weights are too large for exact sums at ACTIVATION_LIMIT saturates its input lower, but
# never below this (real units): sigma tops out at 64, and a latent symbol beyond 256 is a freak event.
MIN_INPUT_LIMIT = 2.0**8

_ONE = 2.0**ACTIVATION_FRAC_BITS
_LIMIT = ACTIVATION_LIMIT * _ONE  # saturation bound of activation integers (2**28)
SATURATION = _LIMIT  # the same, for evc.nn.exact_int8's outputs on this grid
_WEIGHT_ONE = 2.0**WEIGHT_FRAC_BITS
_RESCALE = 2.0**-WEIGHT_FRAC_BITS

_Op = Callable[[torch.Tensor], torch.Tensor]


def to_fixed(x: torch.Tensor) -> torch.Tensor:
    """Real values -> saturated activation integers (float64), rounding half up to the 2**-FA grid.

    Exact for inputs that already are multiples of 2**-ACTIVATION_FRAC_BITS (held in float64).
    """
    if not torch.isfinite(x).all():
        raise ValueError("exact evaluation got a non-finite input")
    x = x.to(torch.float64) * _ONE  # exact: a power of two
    return x.add_(0.5).floor_().clamp_(-_LIMIT, _LIMIT)


def from_fixed(x: torch.Tensor) -> torch.Tensor:
    """Activation integers -> the real values they stand for (exact, float64)."""
    return x * (1.0 / _ONE)


def _rescale_(acc: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
    # The rounding half is already in the bias: floor(acc / 2**FW) is round-half-up. Then saturate.
    # ``factor``: 2**-FW, or one per output channel (shape (C, 1, 1)) for fused convs of unequal FW.
    return acc.mul_(factor).floor_().clamp_(-_LIMIT, _LIMIT)


@contextmanager
def exact_convolutions(device: torch.device) -> Iterator[None]:
    """On CUDA, keep convolutions off cuDNN.

    cuDNN may pick FFT or Winograd algorithms, whose intermediates are not integers (transforms with
    irrational or fractional coefficients), so their results are rounded. PyTorch's native CUDA kernels
    (im2col + cuBLAS DGEMM, direct depthwise) only multiply and add the integers themselves.
    """
    context = torch.backends.cudnn.flags(enabled=False) if device.type == "cuda" else nullcontext()
    with context:
        yield


# -- conversion ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvExactness:
    """How one conv of a compiled network is evaluated (see "The bound" in the module docstring).

    ``row_l1``: the largest L1 norm of an output channel's real weights (within the bound below about
    ``2**(53 - ACTIVATION_FRAC_BITS - WEIGHT_FRAC_BITS) / ACTIVATION_LIMIT`` = 128). ``input_limit``: the
    saturation of the conv's input in real units, ACTIVATION_LIMIT unless the conv (or a 1x1 conv fused
    with it into one GEMM, ``shared_with``) is saturated lower (rule 2). ``weight_bits``: the weights'
    fractional bits, WEIGHT_FRAC_BITS unless fewer (rule 3). ``within_bound``: this conv's own weights
    keep exact sums at ACTIVATION_LIMIT with WEIGHT_FRAC_BITS bits (rule 1).
    """

    name: str
    row_l1: float
    input_limit: float
    weight_bits: int
    within_bound: bool
    shared_with: tuple[str, ...] = ()


def _saturation_limit(weight: torch.Tensor, bias: torch.Tensor) -> float:
    """The largest input saturation, in activation integers, that keeps every partial sum of every output
    channel of a conv with these integer weights and (rounding-half-included) integer biases below 2**53:
    _LIMIT when that suffices, -1 when a single weight is too large for the float64 test below (|w| * A
    >= 2**53; the input would have to stay below 1 activation integer). Weights and biases are finite.

    The float64 test is exact: once every |w_int| < 2**53 / A (< 2**25), each row sum (fan-in far below
    2**28) is exact, multiplying by A (a power of two) is exact, and adding |b_int| rounds monotonically,
    so the result is >= 2**53 exactly when the true value is; a lower bound is computed in Python integers.
    """
    rows = weight.abs().flatten(1)
    bias = bias.abs()
    if rows.max().item() * _LIMIT >= EXACT_LIMIT:
        return -1.0
    sums = rows.sum(dim=1)
    if (sums * _LIMIT + bias).max().item() < EXACT_LIMIT:
        return _LIMIT
    return float(
        min(
            (EXACT_LIMIT - 1 - int(b)) // int(s) if s else (EXACT_LIMIT if b < EXACT_LIMIT else -1)
            for s, b in zip(sums.tolist(), bias.tolist())
        )
    )


def _integers(weight: torch.Tensor, bias: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 real weights and biases -> integer weights ``round(w * 2**bits)`` and integer biases in the
    accumulator's scale with the rescale's rounding half ``2**(bits - 1)`` folded in (none for bits = 0,
    whose rescale is the identity). Out of place: a float64 model's ``.to()`` returns its own parameter."""
    # Exact scaling by a power of two, then a deterministic rounding (half to even; any fixed rule would do).
    w_int = (weight * 2.0**bits).round_()
    b_int = (bias * 2.0 ** (ACTIVATION_FRAC_BITS + bits)).round_()
    if bits:
        b_int += 2.0 ** (bits - 1)
    return w_int, b_int


def _convert(
    name: str, weight: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, int, float, float, bool]:
    """A conv's (integer weights, integer biases, weight bits, input limit in activation integers, largest
    row L1 norm of the real weights, within the bound), from its :func:`read_conv` weights and biases, by
    the rules of the module docstring."""
    row_l1 = weight.abs().flatten(1).sum(dim=1).max().item()
    w_int, b_int = _integers(weight, bias, WEIGHT_FRAC_BITS)
    limit = _saturation_limit(w_int, b_int)
    if limit >= MIN_INPUT_LIMIT * _ONE:  # rules 1 and 2: the conversion as it always was
        return w_int, b_int, WEIGHT_FRAC_BITS, limit, row_l1, limit == _LIMIT
    for bits in range(WEIGHT_FRAC_BITS - 1, -1, -1):  # rule 3: the most bits with exact sums at _LIMIT
        w_int, b_int = _integers(weight, bias, bits)
        if _saturation_limit(w_int, b_int) == _LIMIT:
            return w_int, b_int, bits, _LIMIT, row_l1, False
    raise ValueError(
        f"{name}: weights too large for exact evaluation even with integer weights (largest weight row L1 "
        f"norm {row_l1:.4g}, largest |w| {weight.abs().max().item():.4g}, largest |bias| "
        f"{bias.abs().max().item():.4g}; integer weights need row L1 norms below 2**25)"
    )


def check_plain(module: nn.Module, name: str) -> None:
    """Raise TypeError for a module with forward hooks."""
    # Hooks (e.g. mask decay's channel masks) change what a module computes; we would silently skip them.
    if module._forward_hooks or module._forward_pre_hooks:
        raise TypeError(f"{name}: modules with forward hooks cannot be evaluated exactly")


def check_conv(name: str, conv: nn.Module, fused: bool) -> None:
    """Raise TypeError unless ``conv`` is a plain stride-1 1x1 conv, or (not ``fused`` with others into
    one GEMM) a depthwise 3x3 conv with padding 1: the convs exact evaluation supports."""
    check_plain(conv, name)
    if type(conv) is not nn.Conv2d:
        raise TypeError(f"{name}: expected nn.Conv2d, got {type(conv).__name__}")
    depthwise = conv.groups > 1
    shape_ok = conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.padding_mode == "zeros"
    if depthwise:
        shape_ok &= conv.kernel_size == (3, 3) and conv.padding == (1, 1)
        shape_ok &= conv.groups == conv.in_channels == conv.out_channels and not fused
    else:
        shape_ok &= conv.kernel_size == (1, 1) and conv.padding == (0, 0) and conv.groups == 1
    if not shape_ok:
        raise TypeError(f"{name}: exact evaluation supports stride-1 1x1 and depthwise 3x3 (padding 1) convs only")


def read_conv(name: str, conv: nn.Module, device: torch.device, fused: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The real weights (C_out, C_in / groups, kh, kw) and biases (C_out,; zeros for a conv without one)
    of a conv that exact evaluation supports (:func:`check_conv`; ``fused``: with others into one GEMM),
    float64 on ``device``: what both arithmetics convert. Raises TypeError for another module,
    ValueError for non-finite weights."""
    check_conv(name, conv, fused)
    weight = conv.weight.detach().to(device=device, dtype=torch.float64)
    if conv.bias is None:
        bias = torch.zeros(conv.out_channels, dtype=torch.float64, device=device)
    else:
        bias = conv.bias.detach().to(device=device, dtype=torch.float64)
    if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
        raise ValueError(f"{name}: non-finite weights")
    return weight, bias


@dataclass(frozen=True)
class Arithmetic:
    """The operations of one fixed-point arithmetic, which :func:`compile_with` assembles into a network by
    walking its modules; each is a factory of a function of the arithmetic's activation tensors.

    ``conv(convs, build)``: a stride-1 conv (1x1, or depthwise 3x3 with padding 1; :func:`check_conv`), or
    several 1x1 convs reading the same input, fused along the output channels. ``leaky_relu(module,
    name, in_place)``: ``in_place`` when the input is a tensor the network owns and may overwrite.
    ``pixel_shuffle(module, name)``. ``branches(entry, chains, accumulator)``: parallel chains on one
    input, summed and saturated (see :class:`FixedBranches`).
    """

    conv: Callable[[Sequence[tuple[str, nn.Conv2d]], Build], _Op]
    leaky_relu: Callable[[nn.LeakyReLU, str, bool], _Op]
    pixel_shuffle: Callable[[nn.PixelShuffle, str], _Op]
    branches: Callable[[_Op | None, list[tuple[slice | None, _Op]], int | None], _Op]


@dataclass
class Build:
    """What compiling a network needs besides the modules: the device, the arithmetic, and where to
    record each conv's :class:`ConvExactness` (None: nowhere)."""

    device: torch.device
    report: list[ConvExactness] | None = None
    arithmetic: Arithmetic | None = None  # None: this module's float64 fixed point


class _Conv:
    """A stride-1 conv (1x1, or depthwise 3x3 with padding 1) in fixed point; several 1x1 convs reading
    the same input are fused along the output channels."""

    def __init__(self, convs: Sequence[tuple[str, nn.Conv2d]], build: Build) -> None:
        device = build.device
        weights: list[torch.Tensor] = []
        biases: list[torch.Tensor] = []
        limits: list[float] = []  # input saturation of each conv alone (activation integers)
        bits: list[int] = []  # weight fractional bits of each conv
        found: list[tuple[str, float, bool]] = []  # name, largest row L1 norm, within the bound
        for name, conv in convs:
            weight, bias = read_conv(name, conv, device, fused=len(convs) > 1)
            w_int, b_int, conv_bits, limit, row_l1, within = _convert(name, weight, bias)
            weights.append(w_int)
            biases.append(b_int)
            limits.append(limit)
            bits.append(conv_bits)
            found.append((name, row_l1, within))
        self.groups = convs[0][1].groups
        self.padding = convs[0][1].padding
        self.weight = (weights[0] if len(weights) == 1 else torch.cat(weights)).contiguous()
        self.bias = (biases[0] if len(biases) == 1 else torch.cat(biases)).contiguous()
        # Below _LIMIT only for weights beyond the activation limit's bound (rule 2); a fused GEMM reads
        # one input, so every conv in it sees the lowest of their bounds.
        self.input_limit = min(limits)
        self.rescale: float | torch.Tensor
        if len(set(bits)) == 1:
            self.rescale = 2.0 ** -bits[0]  # _RESCALE unless rule 3
        else:  # fused convs of unequal weight bits: one exact power of two per output channel
            scales = [torch.full((c.out_channels,), 2.0**-b, dtype=torch.float64) for b, (_, c) in zip(bits, convs)]
            self.rescale = torch.cat(scales).to(device).view(-1, 1, 1)
        if build.report is not None:
            names = [name for name, _ in convs]
            for (name, row_l1, within), conv_bits in zip(found, bits):
                shared = tuple(n for n, lim in zip(names, limits) if n != name and lim < _LIMIT)
                build.report.append(
                    ConvExactness(name, row_l1, self.input_limit / _ONE, conv_bits, within, shared)
                )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_limit < _LIMIT:
            x = x.clamp(-self.input_limit, self.input_limit)  # out of place: x may be read elsewhere
        acc = F.conv2d(x, self.weight, self.bias, padding=self.padding, groups=self.groups)
        return _rescale_(acc, self.rescale)


class _LeakyReLU:
    """Fixed-point LeakyReLU; overwrites its input when that is a tensor the compiled network owns."""

    def __init__(self, module: nn.LeakyReLU, name: str, in_place: bool) -> None:
        check_plain(module, name)
        slope = round(module.negative_slope * _WEIGHT_ONE)  # the integer slope numerator
        # x + round(min(x, 0) * (slope - 2**FW) / 2**FW) is round(x * slope / 2**FW) for x < 0 and x for
        # x >= 0 (floor(0.5) = 0), in five passes. The product is an integer below 2**53 times a power
        # of two, so it, the + 0.5 and the floor are exact.
        self.factor = (slope - _WEIGHT_ONE) * _RESCALE
        self.in_place = in_place
        if abs(slope - _WEIGHT_ONE) * _LIMIT >= EXACT_LIMIT:
            raise ValueError(f"{name}: negative slope {module.negative_slope} is too large for exact evaluation")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.in_place:
            x = x.clone()
        return x.add_(x.clamp_max(0.0).mul_(self.factor).add_(0.5).floor_())


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class _Sequence:
    def __init__(self, ops: list[_Op]) -> None:
        self.ops = ops

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x)
        return x


class FixedPixelShuffle:
    """PixelShuffle of activation integers in (N, C, H, W): it only moves values, so it is exact as it is.
    :mod:`evc.nn.exact_int8` keeps the check and the factor, and moves its (N, H, W, C) values itself."""

    def __init__(self, module: nn.PixelShuffle, name: str) -> None:
        check_plain(module, name)
        self.factor = module.upscale_factor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(x, self.factor)


class FixedBranches:
    """Parallel chains on one input, summed and saturated.

    ``entry`` (optional) is the fused GEMM of the chains that start with a 1x1 conv; such a chain starts
    from its slice ``part`` of the entry's output channels, the others from the input. The sum
    accumulates in place into the output of chain ``accumulator`` (one the network owns), or into a new
    tensor if None. :mod:`evc.nn.exact_int8` runs the chains the same way (:meth:`outputs`, its channels
    last: ``CHANNELS``) and sums in its own arithmetic.
    """

    CHANNELS: tuple[object, ...] = (slice(None),)  # the index up to the channel axis: (N, C, H, W)

    def __init__(
        self, entry: _Op | None, chains: list[tuple[slice | None, _Op]], accumulator: int | None
    ) -> None:
        self.entry, self.chains, self.accumulator = entry, chains, accumulator

    def outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each chain's output, in order."""
        fused = self.entry(x) if self.entry is not None else None
        return [
            chain(x if part is None else fused[(*self.CHANNELS, part)])  # type: ignore[index]
            for part, chain in self.chains
        ]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        outs = self.outputs(x)
        if self.accumulator is None:
            total, rest = outs[0] + outs[1], outs[2:]
        else:
            total, rest = outs[self.accumulator], outs[: self.accumulator] + outs[self.accumulator + 1 :]
        for out in rest:
            total.add_(out)
        return total.clamp_(-_LIMIT, _LIMIT)


# Activation integers in float64 tensors (N, C, H, W): the arithmetic of the module docstring.
FLOAT64 = Arithmetic(_Conv, _LeakyReLU, FixedPixelShuffle, FixedBranches)


def _arithmetic(build: Build) -> Arithmetic:
    return FLOAT64 if build.arithmetic is None else build.arithmetic


def _is_gemm_conv(module: nn.Module) -> bool:
    return type(module) is nn.Conv2d and module.kernel_size == (1, 1) and module.groups == 1


def _compile_chain(chain: ResolvedChain, name: str, build: Build, owned: bool) -> tuple[_Op, bool]:
    ops = []
    for attr, child in chain:
        op, owned = _compile(child, f"{name}.{attr}", build, owned)
        ops.append(op)
    if not ops:
        return _identity, owned
    return (ops[0] if len(ops) == 1 else _Sequence(ops)), owned


def _compile_branches(
    branches: list[ResolvedChain], name: str, build: Build, owned: bool
) -> tuple[_Op, bool]:
    if len(branches) == 1:
        return _compile_chain(branches[0], name, build, owned)
    # Every branch reads the input, so none may overwrite it; a fused GEMM's slices are each one's own.
    heads = [i for i, chain in enumerate(branches) if chain and _is_gemm_conv(chain[0][1])]
    entry = None
    if len(heads) > 1:
        entry = _arithmetic(build).conv([(f"{name}.{branches[i][0][0]}", branches[i][0][1]) for i in heads], build)
    chains: list[tuple[slice | None, _Op]] = []
    owned_outputs = []
    start = 0
    for i, chain in enumerate(branches):
        part = None
        if entry is not None and i in heads:
            width = chain[0][1].out_channels
            part, start = slice(start, start + width), start + width
            op, out_owned = _compile_chain(chain[1:], name, build, owned=True)
        else:
            op, out_owned = _compile_chain(chain, name, build, owned=False)
        chains.append((part, op))
        owned_outputs.append(out_owned)
    accumulator = owned_outputs.index(True) if True in owned_outputs else None
    return _arithmetic(build).branches(entry, chains, accumulator), True


def _compile(module: nn.Module, name: str, build: Build, owned: bool) -> tuple[_Op, bool]:
    """The fixed-point counterpart of ``module``, following its own description, and whether its result
    is a tensor the network owns (may overwrite). ``owned``: whether the input is one.

    Exact type checks: a subclass may override ``forward``, and we must not guess what it computes.
    """
    check_plain(module, name)
    branches = describe(module)
    if branches is not None:
        return _compile_branches(branches, name, build, owned)
    kind = type(module)
    arithmetic = _arithmetic(build)
    if kind is nn.Conv2d:
        return arithmetic.conv([(name, module)], build), True  # type: ignore[list-item]
    if kind is nn.LeakyReLU:
        return arithmetic.leaky_relu(module, name, in_place=owned), True  # type: ignore[arg-type]
    if kind is nn.PixelShuffle:
        return arithmetic.pixel_shuffle(module, name), owned  # type: ignore[arg-type]
    if kind is nn.Identity:
        return _identity, owned
    raise TypeError(f"{name}: exact evaluation does not support {kind.__name__}")


def compile_network(
    module: nn.Module, name: str, device: torch.device, report: list[ConvExactness] | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The fixed-point counterpart of ``module`` on ``device``: a function from activation integers
    (:func:`to_fixed`) to activation integers, exact on every device. ``report``: a list to which each
    conv's :class:`ConvExactness` is appended, in the order of the network. Raises TypeError for a module
    it cannot follow (see the module docstring), ValueError for non-finite weights or weights too large
    for exact evaluation even with integer weights (see "The bound")."""
    return compile_with(module, name, Build(device, report))


def compile_with(module: nn.Module, name: str, build: Build) -> _Op:
    """``module`` compiled in ``build``'s arithmetic by walking its description (see "Structure" in the
    module docstring); raises TypeError for a module it cannot follow, and what the arithmetic's
    factories raise."""
    return _compile(module, name, build, owned=False)[0]  # never overwrite the caller's tensor

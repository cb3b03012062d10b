"""The entropy-parameter networks as ONNX graphs of integer operators, computing exactly the integers of
:mod:`evc.nn.exact_int8` (format version 3 and later).

The graph is built by walking the networks with :func:`evc.nn.exact.compile_with`, the walk the PyTorch
int8 path itself is compiled by, with an arithmetic whose operations emit ONNX nodes instead of running
tensors; the integer weights, weight bits and biases are :class:`evc.nn.exact_int8._Conv`'s own. So the
two cannot disagree about the structure or the conversion, only about what each operator computes, and
each is an exact integer operation here:

Activations
    int32 tensors (N, H, W, C) on the 2**-8 grid, as in :mod:`evc.nn.exact_int8`; after a network's last
    conv, int64 tensors on :mod:`evc.nn.exact`'s 2**-16 grid (PyTorch holds those integers in float64).
1x1 convs
    ``MatMulInteger`` of the two 8-bit limbs of the input (``lo = x mod 128``, ``hi = (x - lo) / 128``)
    with the int8 weights, ``128 * (hi @ W) + lo @ W + bias`` in int32: PyTorch's ``torch._int_mm``
    products. The limbs go in as uint8 (``hi + 128``, taken back by MatMulInteger's zero point):
    ONNX Runtime's fast kernels take uint8 x int8 (its int8 x int8 path measured 15 times slower), and
    |w| <= 63 keeps even a kernel with saturating 16-bit pair sums exact (x86 without VNNI), as in
    PyTorch.
Depthwise 3x3 convs
    PyTorch computes them as float32 convolutions of integers whose every partial sum is below 2**24,
    exact in any order; ONNX has no integer depthwise convolution (``ConvInteger`` takes 8-bit inputs,
    the activations have 15 bits), and a float ``Conv`` is exact only where the runtime picks no
    Winograd or FFT algorithm. Here instead: the nine taps as shifted slices of the zero-padded input,
    each multiplied by its int32 weight and summed in int32 (the same integers, exact by construction).
Rescaling
    ``acc >> FW`` (an arithmetic shift: floor) is ``(acc - (acc & (2**FW - 1))) / 2**FW``: the low bits
    masked off (``BitwiseAnd`` on two's complement: acc mod 2**FW, never negative), then an exact
    ``Div``; ONNX's ``BitShift`` takes unsigned types only, and integer ``Div`` truncates toward zero. The last conv's ``round_half_up(acc * 2**(8 - FW))``
    is the same floor division in int64 with the half added.
LeakyReLU
    ``max(x, (x * S + 2**14) >> 15)`` on the coarse grid, ``x + floor((min(x, 0) * (S' - 2**18) +
    2**17) / 2**18)`` on the fine one (:mod:`evc.nn.exact`'s float64 formula, whose every step is exact).

The graphs' inputs and outputs are real values in float64 (multiples of 2**-16), converted on the way in
(:func:`evc.nn.exact.to_fixed`: ``floor(x * 2**16 + 0.5)``, saturated) and out (times 2**-16) by the
same exact float64 operations as :class:`evc.entropy.exact_parameters.ExactEntropyParameters`, so that a
graph's outputs equal its methods' bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from evc.entropy.dual_prior import DualSpatialPrior
from evc.entropy.networks import EntropyNetworks
from evc.nn import exact, exact_int8
from evc.nn.hyperprior import Q_STEP_MIN, PriorFusion

OPSET = 21
_INT64_MAX = np.iinfo(np.int64).max
_FINE_ONE = 2**exact.ACTIVATION_FRAC_BITS
_FINE_LIMIT = int(exact.SATURATION)


@dataclass(frozen=True)
class _Value:
    """A tensor of the graph being built: its name, and whether it holds the fine grid's int64 integers
    (after a network's last conv) rather than the coarse grid's int32."""

    name: str
    fine: bool = False


@dataclass
class GraphBuilder:
    """Nodes and constants of one ONNX graph, with unique names."""

    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    _count: int = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value: np.ndarray | int | float, dtype: type, hint: str = "c") -> str:
        name = self._name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, outputs: int = 1, **attrs) -> list[str]:
        names = [self._name(hint or op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, **attrs))
        return names

    def one(self, op_type: str, inputs: Sequence[str], hint: str | None = None, **attrs) -> str:
        return self.op(op_type, inputs, hint, **attrs)[0]

    def floor_div(self, x: str, divisor: np.ndarray, dtype: type) -> str:
        """floor(x / divisor) for integer tensors and powers of two as divisors (broadcast along the last
        axis): ``(x - (x & (d - 1))) / d``, the low bits masked off as two's complement has them (x mod d),
        then an exact division."""
        remainder = self.one("BitwiseAnd", [x, self.const(np.asarray(divisor) - 1, dtype, "mask")])
        return self.one("Div", [self.one("Sub", [x, remainder]), self.const(divisor, dtype, "divisor")])

    def total(self, names: Sequence[str]) -> str:
        """The sum of tensors, added in order (ONNX's ``Sum`` takes float types only)."""
        total = names[0]
        for name in names[1:]:
            total = self.one("Add", [total, name])
        return total

    def clip(self, x: str, limit: int, dtype: type) -> str:
        return self.one("Clip", [x, self.const(-limit, dtype, "low"), self.const(limit, dtype, "high")])

    def model(self, name: str, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="evc")
        model.ir_version = 10  # onnxruntime 1.20 and later read it
        onnx.checker.check_model(model)
        return model


class _Conv:
    """1x1 convs (fused along the output channels) or a depthwise 3x3 conv, as ONNX nodes; the integers
    are those of :class:`evc.nn.exact_int8._Conv` (``final``: set by :func:`_compile`)."""

    def __init__(self, graph: GraphBuilder, convs: Sequence[tuple[str, nn.Conv2d]], build: exact.Build) -> None:
        self.graph = graph
        self.integers = exact_int8._Conv(convs, build)

    def mark_final(self) -> None:
        self.integers.mark_final()

    def _accumulate(self, x: str) -> str:
        g, conv = self.graph, self.integers
        bias = g.const(conv.bias.cpu().numpy(), np.int32, "bias")
        if conv.depthwise:
            weight = conv.weight.cpu().numpy()[:, 0].round().astype(np.int32)  # (C, 3, 3), integers already
            padded = g.one("Pad", [x, g.const([0, 1, 1, 0, 0, 1, 1, 0], np.int64, "pads")])
            taps = []
            for i in range(3):
                for j in range(3):
                    # Rows i .. H + i - 1 and columns j .. W + j - 1 of the padded input (ends counted back).
                    ends = [-(2 - i) if i < 2 else _INT64_MAX, -(2 - j) if j < 2 else _INT64_MAX]
                    tap = g.one("Slice", [padded, g.const([i, j], np.int64, "starts"), g.const(ends, np.int64, "ends"),
                                          g.const([1, 2], np.int64, "axes")])
                    taps.append(g.one("Mul", [tap, g.const(weight[:, i, j], np.int32, "tap")]))
            return g.one("Add", [g.total(taps), bias])
        # Unsigned limbs (ONNX Runtime's fast kernels take uint8 x int8): lo = x mod 128 in 0..127 as it is,
        # hi in -128..127 offset by 128 into 0..255 and taken back by MatMulInteger's zero point.
        limb = exact_int8.LIMB
        weight = g.const(conv.weight.cpu().numpy().astype(np.int8), np.int8, "weight")  # (K, N)
        low = g.one("BitwiseAnd", [x, g.const(limb - 1, np.int32, "low_bits")])
        high = g.one("Div", [g.one("Add", [g.one("Sub", [x, low]), g.const(limb * limb, np.int32, "offset")]),
                             g.const(limb, np.int32, "limb")])
        low_product = g.one("MatMulInteger", [g.one("Cast", [low], to=TensorProto.UINT8), weight])
        zero_point = g.const(limb, np.uint8, "zero_point")
        high_product = g.one("MatMulInteger", [g.one("Cast", [high], to=TensorProto.UINT8), weight, zero_point])
        scaled = g.one("Mul", [high_product, g.const(exact_int8.LIMB, np.int32, "limb")])
        return g.one("Add", [g.one("Add", [scaled, low_product]), bias])

    def __call__(self, x: _Value) -> _Value:
        if x.fine:
            raise TypeError("a conv after the network's last conv")  # the PyTorch path refuses it too
        g, conv = self.graph, self.integers
        acc = self._accumulate(x.name)
        bits = conv.bits.cpu().numpy().astype(np.int64)
        if not conv.final:
            return _Value(g.clip(g.floor_div(acc, 2**bits, np.int32), exact_int8.ACTIVATION_MAX, np.int32))
        # round_half_up(acc * 2**(16 - 8 - FW)): a left shift where FW <= 8, else a rounded right shift.
        up = exact.ACTIVATION_FRAC_BITS - exact_int8.FRAC_BITS - bits
        wide = g.one("Cast", [acc], to=TensorProto.INT64)
        shifted = g.one("Mul", [wide, g.const(2 ** np.maximum(up, 0), np.int64, "scale")])
        half = np.where(up < 0, 2 ** np.maximum(-up - 1, 0), 0)
        summed = g.one("Add", [shifted, g.const(half, np.int64, "half")])
        return _Value(g.floor_div(summed, 2 ** np.maximum(-up, 0), np.int64), fine=True)


class _LeakyReLU:
    def __init__(self, graph: GraphBuilder, module: nn.LeakyReLU, name: str) -> None:
        self.graph = graph
        self.coarse = exact_int8._LeakyReLU(module, name, in_place=False)  # its checks and integer slopes
        # exact._LeakyReLU's factor is (S' - 2**18) / 2**18, an exact power-of-two scaling of an integer.
        self.fine_factor = int(self.coarse.fine.factor * 2**exact.WEIGHT_FRAC_BITS)

    def __call__(self, x: _Value) -> _Value:
        g = self.graph
        if x.fine:
            one = 2**exact.WEIGHT_FRAC_BITS
            negative = g.one("Min", [x.name, g.const(0, np.int64, "zero")])
            product = g.one("Mul", [negative, g.const(self.fine_factor, np.int64, "slope")])
            rounded = g.floor_div(g.one("Add", [product, g.const(one // 2, np.int64, "half")]), np.array(one), np.int64)
            return _Value(g.one("Add", [x.name, rounded]), fine=True)
        bits = exact_int8.SLOPE_BITS
        scaled = g.one("Add", [g.one("Mul", [x.name, g.const(self.coarse.slope, np.int32, "slope")]),
                               g.const(1 << (bits - 1), np.int32, "half")])
        return _Value(g.one("Max", [x.name, g.floor_div(scaled, np.array(1 << bits), np.int32)]))


class _PixelShuffle(exact.FixedPixelShuffle):
    """The same moves as ONNX nodes (its check and factor are the PyTorch paths')."""

    def __init__(self, graph: GraphBuilder, module: nn.PixelShuffle, name: str) -> None:
        super().__init__(module, name)
        self.graph = graph

    def __call__(self, x: _Value) -> _Value:
        # (N, H, W, C r r) -> (N, H r, W r, C), channels ordered (c, i, j) as F.pixel_shuffle orders them.
        g, r = self.graph, self.factor
        shape = g.one("Shape", [x.name])
        n_h_w = g.one("Slice", [shape, g.const([0], np.int64), g.const([3], np.int64)])
        split = g.one("Reshape", [x.name, g.one("Concat", [n_h_w, g.const([-1, r, r], np.int64)], axis=0)])
        moved = g.one("Transpose", [split], perm=[0, 1, 4, 2, 5, 3])  # (N, H, r, W, r, C)
        grown = g.one("Mul", [n_h_w, g.const([1, r, r], np.int64)])
        return _Value(g.one("Reshape", [moved, g.one("Concat", [grown, g.const([-1], np.int64)], axis=0)]), x.fine)


class _Branches:
    def __init__(self, graph: GraphBuilder, entry: Callable | None, chains: list[tuple[slice | None, Callable]]) -> None:
        self.graph, self.entry, self.chains = graph, entry, chains

    def __call__(self, x: _Value) -> _Value:
        g = self.graph
        fused = self.entry(x) if self.entry is not None else None
        outs = []
        for part, chain in self.chains:
            if part is None:
                outs.append(chain(x))
                continue
            piece = g.one("Slice", [fused.name, g.const([part.start], np.int64), g.const([part.stop], np.int64),  # type: ignore[union-attr]
                                    g.const([3], np.int64)])
            outs.append(chain(_Value(piece, fused.fine)))  # type: ignore[union-attr]
        if any(out.fine for out in outs):  # after the last conv: the sum on the fine grid
            names = [out.name if out.fine else _to_fine(g, out.name) for out in outs]
            return _Value(g.clip(g.total(names), _FINE_LIMIT, np.int64), fine=True)
        return _Value(g.clip(g.total([out.name for out in outs]), exact_int8.ACTIVATION_MAX, np.int32))


def _to_fine(g: GraphBuilder, coarse: str) -> str:
    wide = g.one("Cast", [coarse], to=TensorProto.INT64)
    return g.one("Mul", [wide, g.const(_FINE_ONE >> exact_int8.FRAC_BITS, np.int64, "to_fine")])


def _compile(graph: GraphBuilder, module: nn.Module, name: str) -> Callable[[_Value], _Value]:
    """``module`` as a function of graph values, by :func:`evc.nn.exact.compile_with` (exact_int8's
    compile_network, with this module's operations)."""
    convs: list[_Conv] = []

    def conv(specs: Sequence[tuple[str, nn.Conv2d]], build: exact.Build) -> _Conv:
        convs.append(_Conv(graph, specs, build))
        return convs[-1]

    arithmetic = exact.Arithmetic(
        conv,
        lambda module, name, in_place: _LeakyReLU(graph, module, name),
        lambda module, name: _PixelShuffle(graph, module, name),
        lambda entry, chains, accumulator: _Branches(graph, entry, chains),
    )
    network = exact.compile_with(module, name, exact.Build(torch.device("cpu"), arithmetic=arithmetic))
    if not convs:
        raise TypeError(f"{name}: a network without convs")
    convs[-1].mark_final()
    return network


def _fixed_input(g: GraphBuilder, real: str) -> str:
    """float64 real values (N, C, H, W) -> the network's coarse int32 (N, H, W, C): to_fixed, then
    exact_int8.to_grid, as the PyTorch path converts them."""
    fine = g.clip(g.one("Floor", [g.one("Add", [g.one("Mul", [real, g.const(float(_FINE_ONE), np.float64)]),
                                                g.const(0.5, np.float64)])]), _FINE_LIMIT, np.float64)
    step = float(_FINE_ONE >> exact_int8.FRAC_BITS)
    coarse = g.one("Floor", [g.one("Add", [g.one("Mul", [fine, g.const(1.0 / step, np.float64)]),
                                           g.const(0.5, np.float64)])])
    coarse = g.clip(coarse, exact_int8.ACTIVATION_MAX, np.float64)
    return g.one("Transpose", [g.one("Cast", [coarse], to=TensorProto.INT32)], perm=[0, 2, 3, 1])


def _regrid(g: GraphBuilder, value: _Value) -> _Value:
    """One network's output as the next one's input: exact_int8.to_grid of the fine integers,
    ``floor(x / 2**8 + 0.5)`` saturated (exact in integers as in float64)."""
    if not value.fine:
        return value  # to_fine, then to_grid: the same integers
    step = _FINE_ONE >> exact_int8.FRAC_BITS
    summed = g.one("Add", [value.name, g.const(step // 2, np.int64, "half")])
    coarse = g.clip(g.floor_div(summed, np.array(step), np.int64), exact_int8.ACTIVATION_MAX, np.int64)
    return _Value(g.one("Cast", [coarse], to=TensorProto.INT32))


def _real_output(g: GraphBuilder, value: _Value) -> str:
    """The network's output (N, H, W, C) -> float64 real values (N, C, H, W), as from_fixed gives them."""
    fine = value.name if value.fine else _to_fine(g, value.name)
    real = g.one("Mul", [g.one("Cast", [fine], to=TensorProto.DOUBLE), g.const(1.0 / _FINE_ONE, np.float64)])
    return g.one("Transpose", [real], perm=[0, 3, 1, 2])


def _channel_split(g: GraphBuilder, x: str, parts: int) -> list[str]:
    return g.op("Split", [x], outputs=parts, axis=1, num_outputs=parts)


def _split_order(split: Callable[[torch.Tensor], tuple[torch.Tensor, ...]], parts: int) -> list[list[int]]:
    """Which equal channel parts of a network's output each result of its ``split`` is made of, in order
    (asked of the split itself, the one owner of the layout)."""
    return [t.flatten().long().tolist() for t in split(torch.arange(float(parts)).view(1, parts, 1, 1))]


def _tensor(name: str, channels: int | str, elem: int = TensorProto.DOUBLE) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, [1, channels, "height", "width"])


def hyper_graph(networks: EntropyNetworks) -> onnx.ModelProto:
    """``ExactEntropyParameters.hyper``: z_hat (1, C, h, w) float64 integers -> (q_step, sigma, mu), each
    (1, C, 4h, 4w) float64, q_step at least Q_STEP_MIN. Raises what exact_int8's conversion raises."""
    g = GraphBuilder()
    h_s = _compile(g, networks.h_s.layers, "h_s.layers")
    fusion = _compile(g, networks.prior_fusion.layers, "prior_fusion.layers")
    raw = _real_output(g, fusion(_regrid(g, h_s(_Value(_fixed_input(g, "z_hat"))))))
    parts = _channel_split(g, raw, 3)
    q_step, sigma, mu = ([parts[i] for i in order] for order in _split_order(PriorFusion.split, 3))
    q_step, sigma, mu = (p[0] if len(p) == 1 else g.one("Concat", p, axis=1) for p in (q_step, sigma, mu))
    q_floor = g.const(Q_STEP_MIN, np.float64, "q_step_min")
    outputs = {"q_step": g.one("Max", [q_step, q_floor]), "sigma": sigma, "mu": mu}
    for name, value in outputs.items():
        g.nodes.append(helper.make_node("Identity", [value], [name]))
    channels = networks.dual_prior.channels
    return g.model("hyper", [_tensor("z_hat", networks.z_density.channels)],
                   [helper.make_tensor_value_info(name, TensorProto.DOUBLE, [1, channels, "latent_height", "latent_width"])
                    for name in outputs])


def step_two_graph(networks: EntropyNetworks) -> onnx.ModelProto:
    """``ExactEntropyParameters.step_two``: (y_hat_step1, mu, sigma, q_step), (1, C, h, w) float64 each
    -> (mu2, sigma2), the same shape. Raises what exact_int8's conversion raises."""
    g = GraphBuilder()
    net = _compile(g, networks.dual_prior.net, "dual_prior.net")
    names = ["y_hat_step1", "mu", "sigma", "q_step"]
    order = DualSpatialPrior.inputs(*(torch.full((1, 1, 1, 1), float(i)) for i in range(4))).flatten().tolist()
    stacked = g.one("Concat", [names[int(i)] for i in order], axis=1)
    raw = _real_output(g, net(_Value(_fixed_input(g, stacked))))
    parts = _channel_split(g, raw, 4)
    mu_parts, sigma_parts = _split_order(DualSpatialPrior.split, 4)
    g.nodes.append(helper.make_node("Concat", [parts[i] for i in mu_parts], ["mu2"], axis=1))
    g.nodes.append(helper.make_node("Concat", [parts[i] for i in sigma_parts], ["sigma2"], axis=1))
    channels = networks.dual_prior.channels
    return g.model("step_two", [_tensor(name, channels) for name in names],
                   [_tensor(name, channels) for name in ("mu2", "sigma2")])

"""Latent coding: the scaled latent y -> hyper-latent z and symbols -> streams, and back.

The model's networks compute; this module decides how their values become bits. It owns the entropy
model's coding tables (the hyper-latent's factorized density, the Gaussian scale tables), the arithmetic
of the entropy parameters (float32, or exact fixed point), the symbol checksum and the stream layout:
one stream for z, then each of the dual prior's two coding steps of y split into ``substreams`` streams.

The training forward, the encoder and the decoder run the same control flow (:class:`DualSpatialPrior`)
with three quantizers: straight-through rounding with estimated bits, rounding plus entropy coding, and
entropy decoding.
"""

from __future__ import annotations

import dataclasses
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from evc.entropy.coder import SymbolTables, decode_substreams, encode_substreams
from evc.entropy.dual_prior import DualSpatialPrior
from evc.entropy.exact_parameters import ExactEntropyParameters
from evc.entropy.networks import EntropyNetworks
# The stream layout and coding options live without torch (evc info and the ONNX Runtime codec read
# them); re-exported here.
from evc.entropy.streams import (  # noqa: F401
    MAX_SUBSTREAMS,
    NUM_STEPS,
    PIXELS_PER_HYPER_LATENT,
    PIXELS_PER_LATENT,
    CodingOptions,
    check_encoded_symbols,
    checked_symbols as _checked_decoded,
    decoding_options,
    symbols_crc as _crc_of,
    z_table_index as _z_table_index,
)
from evc.entropy.gaussian import gaussian_bits, scale_index, scale_pmfs
from evc.errors import FormatError
from evc.nn.execution import DEFAULT_EXECUTION, Execution, Timing
from evc.nn.hyperprior import Q_STEP_MIN
from evc.nn.ops import lower_bound, parameters_key, ste_round
from evc.nn.tile_policy import TiledNetwork

# Why a file's symbols come out wrong although its streams are intact (float entropy parameters).
_FLOAT_ELSEWHERE = (
    "this file was encoded on a device or CPU whose arithmetic differs from this one; decode it where it was encoded"
)


@dataclass(frozen=True)
class CodedLatent:
    """The coded form of one image: its streams, and a CRC-32 of every symbol they hold, in order.

    The decoder recomputes the checksum; a mismatch means its entropy parameters differed from the
    encoder's (another CPU type or device), and it refuses to return a wrong image.
    """

    streams: list[bytes]
    symbols_crc: int


@contextmanager
def entropy_parameter_threads(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """Run the float32 networks that set the entropy coder's tables so that encoder and decoder on the
    same kind of device compute the same bits.

    On the CPU, convolution results depend on the thread count in the last bits (measured: 1 and 16
    threads differ from 2-8), and one flipped scale index garbles the rest of the image. Encoder and
    decoder therefore both run these networks single-threaded, whatever the process's setting. On CUDA,
    cuDNN is asked for deterministic algorithms. (The exact path needs none of this: ``enabled=False``.)
    """
    if not enabled:
        yield
        return
    if device.type == "cuda":
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
            yield
        return
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


_GAUSSIAN_TABLES: SymbolTables | None = None


def gaussian_tables() -> SymbolTables:
    """The coding tables of y's Gaussian scales (built once per process: they depend on no weights)."""
    global _GAUSSIAN_TABLES
    if _GAUSSIAN_TABLES is None:
        _GAUSSIAN_TABLES = SymbolTables(scale_pmfs())
    return _GAUSSIAN_TABLES


def _symbols_to_numpy(symbols: torch.Tensor) -> np.ndarray:
    """Integer-valued symbols to int64 numpy, moving the most compact integer type off the device."""
    if symbols.numel() == 0:
        return np.zeros(0, dtype=np.int64)
    largest = float(symbols.abs().max())  # one device sync for both checks below
    check_encoded_symbols(largest)
    compact = torch.int16 if largest < 2**15 else torch.int32
    return symbols.to(compact).cpu().numpy().astype(np.int64)


def _table_index_to_numpy(sigma: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    # 256 tables: the index travels from the device as one byte per symbol.
    return scale_index(sigma)[mask].to(torch.uint8).cpu().numpy()


def _dequantize(symbols: torch.Tensor, mu: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # The one place y_hat is formed from symbols, for the encoder and the decoder alike.
    return torch.where(mask, symbols + mu, torch.zeros_like(mu))


class _TrainingQuantizer:
    def __init__(self, y: torch.Tensor) -> None:
        self.y = y
        self.bits = torch.zeros(y.shape[0], device=y.device, dtype=y.dtype)

    def __call__(self, step: int, mu: torch.Tensor, sigma: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        residual = ste_round(self.y - mu)
        self.bits = self.bits + (gaussian_bits(residual, sigma) * mask).sum(dim=(1, 2, 3))
        return torch.where(mask, residual + mu, torch.zeros_like(mu))


class _EncodingQuantizer:
    """Rounds each step on the device and hands the symbols to a coding thread.

    The ANS coder runs on the CPU; with ``coder`` (a single-worker executor) it codes one step while
    the networks compute the next step's parameters and the reconstruction, which overlaps wherever
    torch releases the GIL. One worker runs jobs in submission order, so the running CRC is chained
    in stream order.
    """

    def __init__(self, options: CodingOptions, coder: Executor | None, timing: Timing) -> None:
        self.y: torch.Tensor | None = None  # the scaled latent, set once Q_step is known
        self.options = options
        self.coder = coder
        self.timing = timing
        self.jobs: list[Future] = []
        self.crc = 0

    def code(self, values: np.ndarray, index: np.ndarray, tables: SymbolTables, count: int) -> list[bytes]:
        with self.timing("coding"):
            streams = encode_substreams(values, index, tables, count, skip_certain=self.options.skip_certain)
        self.crc = _crc_of(values, self.crc)
        return streams

    def submit(self, values: np.ndarray, index: np.ndarray, tables: SymbolTables, count: int) -> None:
        if self.coder is not None:
            self.jobs.append(self.coder.submit(self.code, values, index, tables, count))
            return
        done: Future = Future()
        done.set_result(self.code(values, index, tables, count))
        self.jobs.append(done)

    def __call__(self, step: int, mu: torch.Tensor, sigma: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        assert self.y is not None
        symbols = torch.round(self.y - mu) + 0.0  # + 0.0 turns -0.0 into 0.0, as the decoder has it
        values = _symbols_to_numpy(symbols[mask])
        self.submit(values, _table_index_to_numpy(sigma, mask), gaussian_tables(), self.options.substreams)
        return _dequantize(symbols, mu, mask)

    def streams(self) -> list[bytes]:
        return [stream for job in self.jobs for stream in job.result()]


class _DecodingQuantizer:
    def __init__(self, streams: list[bytes], crc: int, options: CodingOptions, timing: Timing) -> None:
        self.streams = streams
        self.crc = crc
        self.options = options
        self.timing = timing

    def __call__(self, step: int, mu: torch.Tensor, sigma: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        index = _table_index_to_numpy(sigma, mask)
        count = self.options.substreams
        part = self.streams[step * count : (step + 1) * count]
        with self.timing("coding"):
            decoded = decode_substreams(part, index, gaussian_tables(), skip_certain=self.options.skip_certain)
        values = _checked_decoded(decoded)
        self.crc = _crc_of(values, self.crc)
        symbols = torch.zeros_like(mu)
        symbols[mask] = torch.from_numpy(values).to(device=mu.device, dtype=mu.dtype)
        return _dequantize(symbols, mu, mask)


@dataclass
class LatentLikelihood:
    """The training forward's result: y_hat (in units of y / Q_step), Q_step, and estimated bits per
    sample of y and of z, (B,) each."""

    y_hat: torch.Tensor
    q_step: torch.Tensor
    y_bits: torch.Tensor
    z_bits: torch.Tensor


class LatentCodec:
    """Codes the scaled latent y (y / (q_basic * q_scale), shape (1, 192, H/16, W/16)) of one model.

    It codes with ``networks`` (the model owns their weights), caches what depends on the weights (z's
    tables, the exact networks) and rebuilds it when they change. How it runs them (tiles, timing) is
    each call's :class:`~evc.nn.execution.Execution`.
    """

    def __init__(self, networks: EntropyNetworks) -> None:
        self.networks = networks
        self._z_tables: tuple[tuple, SymbolTables] | None = None
        self._exact: dict[str, ExactEntropyParameters] = {}  # by arithmetic
        # The pieces the coding path runs in tiles, each with its tiling plan.
        self._tiled_h_a = TiledNetwork(networks.h_a, PIXELS_PER_LATENT)
        self._tiled_hyper = TiledNetwork(nn.Sequential(networks.h_s, networks.prior_fusion), PIXELS_PER_HYPER_LATENT)
        self._tiled_step_two = TiledNetwork(networks.dual_prior.net, PIXELS_PER_LATENT)

    # -- entropy parameters --------------------------------------------------------------------------
    def params(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Q_step >= Q_STEP_MIN, sigma, mu) of y from the decoded hyper-latent, by the float networks."""
        q_step, sigma, mu = self.networks.prior_fusion(self.networks.h_s(z_hat))
        return lower_bound(q_step, Q_STEP_MIN), sigma, mu

    def exact_parameters(self, arithmetic: str = "int8") -> ExactEntropyParameters:
        """The fixed-point copy of the entropy networks in ``arithmetic`` ("int8" or "float64"; it
        converts them again whenever their weights change or move)."""
        if arithmetic not in self._exact:
            self._exact[arithmetic] = ExactEntropyParameters(self.networks, arithmetic)
        return self._exact[arithmetic]

    def z_tables(self) -> SymbolTables:
        """Coding tables of the hyper-latent, rebuilt whenever the density's parameters change."""
        density = self.networks.z_density
        key = parameters_key((density.h, density.b, density.a))
        if self._z_tables is None or self._z_tables[0] != key:
            self._z_tables = (key, SymbolTables(density.coding_pmfs()))
        return self._z_tables[1]

    # -- training --------------------------------------------------------------------------------------
    def forward(self, y: torch.Tensor, noisy_z: bool, reduced: torch.dtype | None = None) -> LatentLikelihood:
        """Straight-through quantisation of the scaled latent y (B, 192, h, w) with estimated bits.

        ``noisy_z``: z's rate is measured with uniform noise (training) instead of rounding.
        ``reduced``: run the entropy networks under autocast in this dtype; their outputs are made
        float32 at once, and every rounding and rate term stays in float32, as the codec computes them.
        """
        device_type = y.device.type

        def network(fn: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]], *args: torch.Tensor):
            if not reduced:
                return fn(*args)
            with torch.autocast(device_type, dtype=reduced):
                out = fn(*args)
            return out.float() if isinstance(out, torch.Tensor) else tuple(t.float() for t in out)

        networks = self.networks
        z = network(networks.h_a, y)
        z_for_rate = z + torch.empty_like(z).uniform_(-0.5, 0.5) if noisy_z else torch.round(z)
        z_bits = networks.z_density.bits(z_for_rate).sum(dim=(1, 2, 3))
        q_step, sigma, mu = network(self.params, ste_round(z))
        quantize = _TrainingQuantizer(y / q_step)
        step_two = lambda *inputs: network(networks.dual_prior.step_two_params, *inputs)  # noqa: E731
        y_hat = networks.dual_prior(mu, sigma, q_step, quantize, step_two=step_two)
        return LatentLikelihood(y_hat, q_step, quantize.bits, z_bits)

    # -- coding ----------------------------------------------------------------------------------------
    def _run_tiled(
        self,
        tiled: TiledNetwork,
        fn: Callable[..., tuple[torch.Tensor, ...]],
        inputs: tuple[torch.Tensor, ...],
        outputs: int,
        run: Execution,
    ) -> tuple[torch.Tensor, ...]:
        """``fn(*inputs)``, an entropy network over the whole latent, in tiles once the image is large.
        Tiles need one tensor: the inputs are stacked along channels, and ``outputs`` equal parts split
        off again."""
        policy = run.tile_policy
        if not tiled.is_tiled(inputs[0], policy):
            return fn(*inputs)
        sizes = [t.shape[1] for t in inputs]
        out = tiled.run(lambda piece: torch.cat(fn(*piece.split(sizes, dim=1)), dim=1), torch.cat(inputs, dim=1), policy)
        return out.chunk(outputs, dim=1)

    @staticmethod
    def _deterministic(options: CodingOptions, run: Execution) -> bool:
        return not options.exact and run.deterministic_float_parameters

    def _hyper_analysis(self, y: torch.Tensor, run: Execution) -> torch.Tensor:
        # Encoder only: z is transmitted, so how h_a is tiled never has to match anything.
        with run.timing("entropy networks"):
            (z,) = self._run_tiled(self._tiled_h_a, lambda t: (self.networks.h_a(t),), (y,), 1, run)
        return z

    def _latent_params(
        self, z_hat: torch.Tensor, options: CodingOptions, run: Execution
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Callable]:
        """(q_step, sigma, mu) from z_hat and the step-two parameter function, by the chosen arithmetic."""
        if options.exact:
            fixed = self.exact_parameters(options.arithmetic)
            hyper: Callable = fixed.hyper
            z_hat = z_hat.double()
            step_two: Callable = fixed.step_two
        else:
            hyper = self.params
            step_two = self.networks.dual_prior.step_two_params
        with run.timing("entropy networks"):
            q_step, sigma, mu = self._run_tiled(self._tiled_hyper, hyper, (z_hat,), 3, run)

        def tiled_step_two(y_hat1: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, q_step: torch.Tensor):
            with run.timing("entropy networks"):
                return self._run_tiled(self._tiled_step_two, step_two, (y_hat1, mu, sigma, q_step), 2, run)

        return q_step, sigma, mu, tiled_step_two

    @torch.no_grad()
    def compress(
        self,
        y: torch.Tensor,
        options: CodingOptions = CodingOptions(),
        coder: Executor | None = None,
        run: Execution = DEFAULT_EXECUTION,
    ) -> tuple[Callable[[], CodedLatent], torch.Tensor, torch.Tensor]:
        """Code the scaled latent y (1, 192, h, w): returns the coded latent (a function that waits for
        the coder and returns it), and the decoder's y_hat and Q_step.

        ``coder``: a single-worker executor that runs the entropy coder while the networks go on; call
        the returned function last, so that coding overlaps with whatever the caller runs meanwhile.
        ``run``: tiles and timing. Raises EVCError when the weights produce a non-finite or out-of-range
        latent.
        """
        z_hat = torch.round(self._hyper_analysis(y, run)) + 0.0
        quantize = _EncodingQuantizer(options, coder, run.timing)
        # z goes to the coding thread first, so it is coded while the networks compute the parameters.
        quantize.submit(_symbols_to_numpy(z_hat), _z_table_index(z_hat.shape), self.z_tables(), 1)
        with entropy_parameter_threads(y.device, enabled=self._deterministic(options, run)):
            q_step, sigma, mu, step_two = self._latent_params(z_hat, options, run)
            quantize.y = (y.double() if options.exact else y) / q_step
            y_hat = self.networks.dual_prior(mu, sigma, q_step, quantize, step_two=step_two)
        return lambda: CodedLatent(quantize.streams(), quantize.crc), y_hat, q_step

    @torch.no_grad()
    def decompress(
        self,
        coded: CodedLatent,
        z_shape: tuple[int, int, int, int],
        options: CodingOptions,
        device: torch.device,
        run: Execution = DEFAULT_EXECUTION,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode :meth:`compress`'s streams: (y_hat, Q_step), given z's shape (1, 192, H/64, W/64).

        Raises FormatError for streams that are malformed, or whose symbols differ from the encoder's
        (the symbols checksum: a file encoded where the arithmetic differs from here).
        """
        if len(coded.streams) != options.num_streams:
            raise FormatError(f"expected {options.num_streams} streams, got {len(coded.streams)}")
        with run.timing("coding"):
            z_values = decode_substreams(
                coded.streams[:1], _z_table_index(z_shape), self.z_tables(), skip_certain=options.skip_certain
            )
        z_values = _checked_decoded(z_values)
        z_hat = torch.from_numpy(z_values).to(device=device, dtype=torch.float32).view(z_shape)
        with entropy_parameter_threads(device, enabled=self._deterministic(options, run)):
            q_step, sigma, mu, step_two = self._latent_params(z_hat, options, run)
            dequantize = _DecodingQuantizer(coded.streams[1:], _crc_of(z_values, 0), options, run.timing)
            try:
                y_hat = self.networks.dual_prior(mu, sigma, q_step, dequantize, step_two=step_two)
            except FormatError as exc:
                if options.exact:
                    raise
                # With float parameters, other arithmetic derails the coder before the checksum is reached.
                raise FormatError(f"{exc}; {_FLOAT_ELSEWHERE}") from None
        if dequantize.crc != coded.symbols_crc:
            raise FormatError(f"decoded symbols differ from the encoder's (checksum mismatch): {_FLOAT_ELSEWHERE}")
        return y_hat, q_step


class EncoderOptions:
    """The coding options an encoder asked for, settled against the model at the first :meth:`get`.

    Exact int8 arithmetic converts the entropy networks (:meth:`LatentCodec.exact_parameters`) then,
    not at construction, so that an encoder that only ever decodes never pays for it; weights beyond
    8 bits' reach (|w| > 63 on every grid) warn (UserWarning, naming ``model``) and code with float64
    fixed point instead (format version 2). Threads sharing it see the settled options whole.
    """

    def __init__(self, latent_codec: LatentCodec, options: CodingOptions, model: str) -> None:
        self._latent_codec, self._options, self._model = latent_codec, options, model
        self._settled = not (options.exact and options.arithmetic == "int8")
        self._lock = threading.Lock()

    def get(self) -> CodingOptions:
        """The options to code with (the first call with int8 arithmetic converts the networks)."""
        if not self._settled:
            # A second thread waits here until the first has settled the arithmetic, rather than
            # encoding in int8 while the first finds the weights beyond its reach.
            with self._lock:
                if not self._settled:
                    try:
                        self._latent_codec.exact_parameters("int8")
                    except ValueError as exc:  # version 2 still codes them
                        message = f"{exc}: {self._model} codes with float64 fixed point instead (format version 2)"
                        warnings.warn(message, UserWarning, stacklevel=4)
                        self._options = dataclasses.replace(self._options, arithmetic="float64")
                    self._settled = True
        return self._options

"""The EVC model: transforms + hyperprior + dual spatial prior + variable rate, for training and coding.

Data flows one way: image -> g_a -> latent y -> (divide by the rate's step) -> hyperprior z -> symbols.
The training forward and the coding path run the same modules in the same order; they differ only in
how a value is quantised (straight-through rounding vs. rounding plus entropy coding).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
from torch import nn

from evc.entropy.coder import SymbolTables, decode_substreams, encode_substreams
from evc.entropy.dual_prior import NUM_STEPS, DualSpatialPrior
from evc.entropy.factorized import FactorizedDensity
from evc.entropy.gaussian import gaussian_bits, scale_index, scale_pmfs
from evc.errors import EVCError, FormatError
from evc.models.variable_rate import VariableRate
from evc.nn.hyperprior import HYPER_CHANNELS, Q_STEP_MIN, HyperAnalysis, HyperSynthesis, PriorFusion
from evc.entropy.exact_parameters import ExactEntropyParameters
from evc.nn.ops import lower_bound, ste_round
from evc.nn.tiling import halo_for, run_tiled
from evc.nn.transforms import LATENT_CHANNELS, AnalysisTransform, SynthesisTransform


# Spatial size of the input must be a multiple of this (four stride-2 stages, then two in h_a).
PADDING_MULTIPLE = 64
PIXELS_PER_LATENT = 16
# Symbols are coded as integers; beyond this the latent is broken, not merely unusual.
_MAX_ABS_SYMBOL = 2.0**31 - 1
MAX_SUBSTREAMS = 8
# Images up to this many (padded) pixels run through each network in one piece; larger ones in tiles
# of TILE_PIXELS (image pixels) plus a receptive-field halo, which bounds memory at any size.
UNTILED_MAX_PIXELS = 1 << 22
TILE_PIXELS = 1024


def check_padded(x: torch.Tensor) -> None:
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[-1] % PADDING_MULTIPLE or x.shape[-2] % PADDING_MULTIPLE:
        raise ValueError(
            f"expected images of shape (B, 3, H, W) with H, W multiples of {PADDING_MULTIPLE}, got {tuple(x.shape)}"
        )


@dataclass
class RDOutput:
    """Training forward result, per sample: reconstruction and estimated bits."""

    x_hat: torch.Tensor
    y_bits: torch.Tensor
    z_bits: torch.Tensor
    bpp: torch.Tensor


@dataclass(frozen=True)
class CodedLatent:
    """The coded form of one image: its streams, and a CRC-32 of every symbol they hold, in order.

    The decoder recomputes the checksum; a mismatch means its entropy parameters differed from the
    encoder's (another CPU type or device), and it refuses to return a wrong image.
    """

    streams: list[bytes]
    symbols_crc: int


@dataclass(frozen=True)
class CodingOptions:
    """How a latent is coded. The file records all of it (header flags, stream count), so the decoder
    follows whatever the encoder chose.

    ``exact``: entropy parameters from fixed-point networks (:mod:`evc.nn.exact`), identical on every
    CPU, GPU and thread count, so the file decodes anywhere. Without it they come from the float32
    networks, which is faster but decodes only on the kind of device (and CPU type) that encoded it.
    ``substreams``: each coding step of y is split into this many independent streams, which a decoder
    may decode concurrently. ``skip_certain``: symbols whose table is nearly certain are not coded one
    by one; the few that differ from the table's mode are coded apart (:mod:`evc.entropy.coder`).
    """

    exact: bool = True
    substreams: int = 1
    skip_certain: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.substreams <= MAX_SUBSTREAMS:
            raise ValueError(f"substreams must be in 1..{MAX_SUBSTREAMS}, got {self.substreams}")

    @property
    def num_streams(self) -> int:
        return 1 + NUM_STEPS * self.substreams

    @classmethod
    def for_streams(cls, num_streams: int, exact: bool, skip_certain: bool) -> CodingOptions:
        """The options of a file from its stream count and flags; FormatError if the count is impossible."""
        substreams, remainder = divmod(num_streams - 1, NUM_STEPS)
        if remainder or not 1 <= substreams <= MAX_SUBSTREAMS:
            raise FormatError(
                f"corrupt file: {num_streams} streams; EVC models write 1 + {NUM_STEPS} x (1..{MAX_SUBSTREAMS})"
            )
        return cls(exact=exact, substreams=substreams, skip_certain=skip_certain)


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


def _crc_of(values: np.ndarray, crc: int) -> int:
    return zlib.crc32(values.astype("<i4").tobytes(), crc)


def _checked_decoded(values: np.ndarray) -> np.ndarray:
    """Refuse decoded symbols that no encoder writes (beyond +-_MAX_ABS_SYMBOL). The symbols CRC covers
    them as int32, so a value 2^32 away from the true one would pass it and garble the image silently."""
    if values.size and max(-int(values.min()), int(values.max())) > _MAX_ABS_SYMBOL:
        raise FormatError("corrupt stream: a decoded symbol lies outside the int32 range of the format")
    return values


_GAUSSIAN_TABLES: SymbolTables | None = None


def gaussian_tables() -> SymbolTables:
    global _GAUSSIAN_TABLES
    if _GAUSSIAN_TABLES is None:
        _GAUSSIAN_TABLES = SymbolTables(scale_pmfs())
    return _GAUSSIAN_TABLES


def _symbols_to_numpy(symbols: torch.Tensor) -> np.ndarray:
    """Integer-valued symbols to int64 numpy, moving the most compact integer type off the device."""
    if symbols.numel() == 0:
        return np.zeros(0, dtype=np.int64)
    largest = float(symbols.abs().max())  # one device sync for both checks below
    if not math.isfinite(largest) or largest > _MAX_ABS_SYMBOL:
        raise EVCError("the model produced a non-finite or out-of-range latent; its weights are unusable")
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

    def __init__(self, options: CodingOptions, coder: Executor | None) -> None:
        self.y: torch.Tensor | None = None  # the scaled latent, set once Q_step is known
        self.options = options
        self.coder = coder
        self.jobs: list[Future] = []
        self.crc = 0

    def code(self, values: np.ndarray, index: np.ndarray, tables: SymbolTables, count: int) -> list[bytes]:
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
    def __init__(self, streams: list[bytes], crc: int, options: CodingOptions) -> None:
        self.streams = streams
        self.crc = crc
        self.options = options

    def __call__(self, step: int, mu: torch.Tensor, sigma: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        index = _table_index_to_numpy(sigma, mask)
        count = self.options.substreams
        part = self.streams[step * count : (step + 1) * count]
        values = _checked_decoded(
            decode_substreams(part, index, gaussian_tables(), skip_certain=self.options.skip_certain)
        )
        self.crc = _crc_of(values, self.crc)
        symbols = torch.zeros_like(mu)
        symbols[mask] = torch.from_numpy(values).to(device=mu.device, dtype=mu.dtype)
        return _dequantize(symbols, mu, mask)


class EVC(nn.Module):
    """One EVC codec: encoder size X, decoder size Y (EVC-XY)."""


    def __init__(self, encoder_size: str = "L", decoder_size: str = "L") -> None:
        super().__init__()
        self.encoder_size = encoder_size
        self.decoder_size = decoder_size
        self.g_a = AnalysisTransform(encoder_size)  # type: ignore[arg-type]
        self.g_s = SynthesisTransform(decoder_size)  # type: ignore[arg-type]
        self.h_a = HyperAnalysis(LATENT_CHANNELS, HYPER_CHANNELS)
        self.h_s = HyperSynthesis(LATENT_CHANNELS, HYPER_CHANNELS)
        self.prior_fusion = PriorFusion(LATENT_CHANNELS)
        self.dual_prior = DualSpatialPrior(LATENT_CHANNELS)
        self.z_density = FactorizedDensity(HYPER_CHANNELS)
        self.rate = VariableRate(LATENT_CHANNELS)
        self._z_tables: tuple[tuple, SymbolTables] | None = None
        self._exact: ExactEntropyParameters | None = None
        self._halos: dict[str, int] = {}
        self.transform_dtype = torch.float32
        self.transform_channels_last = False
        # Training only: let the entropy-model networks follow the caller's autocast (see rd_forward).
        self.entropy_networks_autocast = False

    # -- shared pieces ---------------------------------------------------------------------------
    def analyse(self, x: torch.Tensor) -> torch.Tensor:
        """g_a: the unscaled latent of a padded image batch."""
        return self.run_transform(self.g_a, x)

    def entropy_params(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Q_step >= 0.5, sigma, mu) of the latent from the decoded hyper-latent."""
        q_step, sigma, mu = self.prior_fusion(self.h_s(z_hat))
        return lower_bound(q_step, Q_STEP_MIN), sigma, mu

    def synthesise(self, y_hat: torch.Tensor, q_step: torch.Tensor, divisor: torch.Tensor) -> torch.Tensor:
        # y_hat * q_step first, then to float32: with the exact path both are float64 and this product
        # is the last step that must agree bit for bit between devices.
        return self.run_transform(self.g_s, (y_hat * q_step).float() * divisor)

    # -- transforms at inference: precision, memory layout, tiles ----------------------------------
    def set_transform_precision(self, dtype: torch.dtype = torch.float32, channels_last: bool = False) -> None:
        """Run g_a and g_s in ``dtype`` (float32, float16, bfloat16) and channels_last layout when coding.

        Only the transforms change: the networks that set the entropy coder's tables keep their own
        arithmetic (float32 or exact), so files stay decodable by any precision setting.
        """
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"transform precision must be float32, float16 or bfloat16, got {dtype}")
        self.transform_dtype = dtype
        self.transform_channels_last = channels_last
        layout = torch.channels_last if channels_last else torch.contiguous_format
        for module in (self.g_a, self.g_s):
            module.to(memory_format=layout)

    def run_transform(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Apply g_a or g_s with the precision settings, tile by tile for large images.

        Tiles carry a halo as wide as the network's receptive field, so the result is the untiled one
        up to float rounding: no seams. Whether to tile depends only on the image size, so encoder and
        decoder make the same choice.
        """
        plain = self.transform_dtype == torch.float32 and not self.transform_channels_last
        if isinstance(module, SynthesisTransform):
            scale, align, tile = Fraction(PIXELS_PER_LATENT), 1, TILE_PIXELS // PIXELS_PER_LATENT
            pixels = x.shape[-2] * x.shape[-1] * PIXELS_PER_LATENT**2
        else:
            scale, align, tile = Fraction(1, PIXELS_PER_LATENT), PIXELS_PER_LATENT, TILE_PIXELS
            pixels = x.shape[-2] * x.shape[-1]
        if pixels <= UNTILED_MAX_PIXELS:
            return module(x) if plain else self._transform_piece(module, x)
        return run_tiled(
            lambda piece: self._transform_piece(module, piece), x, scale=scale, tile=tile,
            halo=self._halo("g_s" if scale > 1 else "g_a", module, align), align=align,
        )

    def _transform_piece(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.transform_channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.transform_dtype == torch.float32:
            return module(x).float().contiguous()
        with torch.autocast(x.device.type, dtype=self.transform_dtype):
            return module(x).float().contiguous()

    def _halo(self, name: str, module: nn.Module, align: int = 1) -> int:
        """Receptive-field halo of one of the networks (by name: every encoder of a scalable model
        has the same architecture), computed once."""
        if name not in self._halos:
            self._halos[name] = halo_for(module, align)
        return self._halos[name]

    def _run_entropy_network(
        self,
        fn: Callable[..., tuple[torch.Tensor, ...]],
        inputs: tuple[torch.Tensor, ...],
        outputs: int,
        scale: Fraction,
        name: str,
    ) -> tuple[torch.Tensor, ...]:
        """``fn(*inputs)``, an entropy-model network over the whole latent, in tiles once the image is
        large. The inputs are at 1/64 (z) or 1/16 (y) of the image's resolution; whether to tile
        depends on the size alone, so encoder and decoder run identical pieces. Tiles need one tensor:
        the inputs are stacked along channels, and the ``outputs`` equal parts split off again."""
        x = inputs[0]
        pixels_per_input = PADDING_MULTIPLE if scale > 1 else PIXELS_PER_LATENT
        if x.shape[-2] * x.shape[-1] * pixels_per_input**2 <= UNTILED_MAX_PIXELS:
            return fn(*inputs)
        sizes = [t.shape[1] for t in inputs]
        align = int(1 / scale) if scale < 1 else 1
        out = run_tiled(
            lambda piece: torch.cat(fn(*piece.split(sizes, dim=1)), dim=1),
            torch.cat(inputs, dim=1),
            scale=scale,
            tile=TILE_PIXELS // pixels_per_input,
            halo=self._halo(name, self._entropy_network(name), align),
            align=align,
        )
        return out.chunk(outputs, dim=1)

    def _entropy_network(self, name: str) -> nn.Module:
        """The network whose receptive field sets the halo of :meth:`_run_entropy_network`'s tiles."""
        if name == "h_a":
            return self.h_a
        if name == "step_two":
            return self.dual_prior.net
        return nn.Sequential(self.h_s, self.prior_fusion)

    # -- training --------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, anchor: torch.Tensor) -> RDOutput:
        """Training/validation forward; ``anchor`` holds each sample's rate anchor (0..3).

        ``x``: (B, 3, H, W) in [0, 1] with H and W multiples of 64 (pad or crop first).
        """
        check_padded(x)
        return self.rd_forward(x, self.analyse(x), self.rate.anchor_q_scale(anchor))

    def rd_forward(self, x: torch.Tensor, y: torch.Tensor, q_scale: torch.Tensor) -> RDOutput:
        """Rate and reconstruction from a latent.

        Under autocast the transforms run in reduced precision. The entropy model's arithmetic
        (scaling, rounding y - mu, the rate terms) always runs in float32, since rounding in bf16 would
        quantise a different value than the codec does. Its networks (h_a, h_s, prior fusion, the
        spatial prior) follow the caller's autocast only when ``entropy_networks_autocast`` is set (the
        fast training step: they are a third of the step's work); their outputs are made float32 at
        once, so only their own rounding differs from the codec's float32 or exact evaluation.
        """
        device_type = y.device.type
        reduced = (
            self.entropy_networks_autocast
            and torch.is_autocast_enabled(device_type)
            and torch.get_autocast_dtype(device_type)
        )

        def network(fn: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]], *args: torch.Tensor):
            if not reduced:
                return fn(*args)
            with torch.autocast(device_type, dtype=reduced):
                out = fn(*args)
            return out.float() if isinstance(out, torch.Tensor) else tuple(t.float() for t in out)

        with torch.autocast(device_type, enabled=False):
            y = y.float()
            divisor = self.rate.divisor(q_scale)
            y = y / divisor
            z = network(self.h_a, y)
            if self.training:
                z_for_rate = z + torch.empty_like(z).uniform_(-0.5, 0.5)
            else:
                z_for_rate = torch.round(z)
            z_bits = self.z_density.bits(z_for_rate).sum(dim=(1, 2, 3))
            q_step, sigma, mu = network(self.entropy_params, ste_round(z))
            quantize = _TrainingQuantizer(y / q_step)
            step_two = lambda *inputs: network(self.dual_prior.step_two_params, *inputs)  # noqa: E731
            y_hat = self.dual_prior(mu, sigma, q_step, quantize, step_two=step_two)
        x_hat = self.synthesise(y_hat, q_step, divisor).float()
        num_pixels = x.shape[-2] * x.shape[-1]
        return RDOutput(x_hat=x_hat, y_bits=quantize.bits, z_bits=z_bits, bpp=(quantize.bits + z_bits) / num_pixels)

    # -- coding ----------------------------------------------------------------------------------
    def z_tables(self) -> SymbolTables:
        """Coding tables of the hyper-latent, rebuilt whenever the density's parameters change."""
        params = (self.z_density.h, self.z_density.b, self.z_density.a)
        key = tuple((p.data_ptr(), p._version) for p in params)
        if self._z_tables is None or self._z_tables[0] != key:
            self._z_tables = (key, SymbolTables(self.z_density.coding_pmfs()))
        return self._z_tables[1]

    def exact_entropy_parameters(self) -> ExactEntropyParameters:
        """The fixed-point copy of the entropy networks (it converts them again whenever their weights
        change or move)."""
        if self._exact is None:
            self._exact = ExactEntropyParameters(self)
        return self._exact

    def _z_table_index(self, z_shape: tuple[int, ...]) -> np.ndarray:
        _, c, h, w = z_shape
        return np.repeat(np.arange(c, dtype=np.int64), h * w)

    def _hyper_analysis(self, y: torch.Tensor) -> torch.Tensor:
        # Encoder only: z is transmitted, so how h_a is tiled never has to match anything.
        (z,) = self._run_entropy_network(lambda t: (self.h_a(t),), (y,), 1, Fraction(1, 4), "h_a")
        return z

    def _latent_params(
        self, z_hat: torch.Tensor, exact: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Callable]:
        """(q_step, sigma, mu) from z_hat and the step-two parameter function, by the chosen arithmetic."""
        if exact:
            fixed = self.exact_entropy_parameters()
            hyper: Callable = fixed.hyper
            z_hat = z_hat.double()
            step_two: Callable = fixed.step_two
        else:
            hyper = self.entropy_params
            step_two = self.dual_prior.step_two_params
        q_step, sigma, mu = self._run_entropy_network(hyper, (z_hat,), 3, Fraction(4), "hyper")

        def tiled_step_two(y_hat1: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, q_step: torch.Tensor):
            return self._run_entropy_network(step_two, (y_hat1, mu, sigma, q_step), 2, Fraction(1), "step_two")

        return q_step, sigma, mu, tiled_step_two

    @torch.no_grad()
    def compress_latent(
        self,
        y: torch.Tensor,
        q_scale: float,
        reconstruct: bool = True,
        options: CodingOptions = CodingOptions(),
        coder: Executor | None = None,
    ) -> tuple[CodedLatent, torch.Tensor | None]:
        """Code one latent (batch 1); returns it coded and (if asked) the decoder's reconstruction.

        ``coder``: a single-worker executor that runs the entropy coder while the networks go on.
        """
        if y.shape[0] != 1:
            raise ValueError("coding works on one image at a time")
        divisor = self.rate.divisor(torch.tensor(q_scale, device=y.device, dtype=y.dtype))
        y = y / divisor
        z_hat = torch.round(self._hyper_analysis(y)) + 0.0
        quantize = _EncodingQuantizer(options, coder)
        # z goes to the coding thread first, so it is coded while the networks compute the parameters.
        quantize.submit(_symbols_to_numpy(z_hat), self._z_table_index(z_hat.shape), self.z_tables(), 1)
        with entropy_parameter_threads(y.device, enabled=not options.exact):
            q_step, sigma, mu, step_two = self._latent_params(z_hat, options.exact)
            quantize.y = (y.double() if options.exact else y) / q_step
            y_hat = self.dual_prior(mu, sigma, q_step, quantize, step_two=step_two)
        x_hat = self.synthesise(y_hat, q_step, divisor) if reconstruct else None
        return CodedLatent(quantize.streams(), quantize.crc), x_hat

    @torch.no_grad()
    def decompress_latent(
        self,
        coded: CodedLatent,
        padded_height: int,
        padded_width: int,
        q_scale: float,
        options: CodingOptions = CodingOptions(),
    ) -> torch.Tensor:
        """Decode :meth:`compress_latent`'s output into the padded reconstruction (1, 3, H, W)."""
        if len(coded.streams) != options.num_streams:
            raise FormatError(f"expected {options.num_streams} streams, got {len(coded.streams)}")
        device = next(self.parameters()).device
        z_shape = (1, HYPER_CHANNELS, padded_height // PADDING_MULTIPLE, padded_width // PADDING_MULTIPLE)
        z_values = _checked_decoded(
            decode_substreams(
                coded.streams[:1], self._z_table_index(z_shape), self.z_tables(), skip_certain=options.skip_certain
            )
        )
        z_hat = torch.from_numpy(z_values).to(device=device, dtype=torch.float32).view(z_shape)
        with entropy_parameter_threads(device, enabled=not options.exact):
            q_step, sigma, mu, step_two = self._latent_params(z_hat, options.exact)
            dequantize = _DecodingQuantizer(coded.streams[1:], _crc_of(z_values, 0), options)
            y_hat = self.dual_prior(mu, sigma, q_step, dequantize, step_two=step_two)
        if dequantize.crc != coded.symbols_crc:
            raise FormatError(
                "decoded symbols differ from the encoder's (checksum mismatch): this file was encoded on a "
                "device or CPU whose arithmetic differs from this one; decode it where it was encoded"
            )
        divisor = self.rate.divisor(torch.tensor(q_scale, device=device, dtype=torch.float32))
        return self.synthesise(y_hat, q_step, divisor)

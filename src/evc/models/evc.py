"""The EVC model: transforms + hyperprior + dual spatial prior + variable rate, for training and coding.

Data flows one way: image -> g_a -> latent y -> (divide by the rate's step) -> hyperprior z -> symbols.
The training forward and the coding path run the same modules in the same order; they differ only in
how a value is quantised (straight-through rounding vs. rounding plus entropy coding).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from evc.entropy.coder import SymbolTables, decode_symbols, encode_symbols
from evc.entropy.dual_prior import DualSpatialPrior
from evc.entropy.factorized import FactorizedDensity
from evc.entropy.gaussian import gaussian_bits, scale_index, scale_pmfs
from evc.errors import EVCError, FormatError
from evc.models.variable_rate import VariableRate
from evc.nn.hyperprior import HYPER_CHANNELS, HyperAnalysis, HyperSynthesis, PriorFusion
from evc.nn.ops import lower_bound, ste_round
from evc.nn.transforms import LATENT_CHANNELS, AnalysisTransform, SynthesisTransform

Q_STEP_MIN = 0.5
# Spatial size of the input must be a multiple of this (four stride-2 stages, then two in h_a).
PADDING_MULTIPLE = 64
# Symbols are coded as integers; beyond this the latent is broken, not merely unusual.
_MAX_ABS_SYMBOL = 2.0**31 - 1


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


@contextmanager
def entropy_parameter_threads(device: torch.device) -> Iterator[None]:
    """Run the networks that set the entropy coder's tables with one fixed CPU thread count.

    On the CPU, convolution results depend on the thread count in the last bits (measured: 1 and 16
    threads differ from 2-8), and one flipped scale index garbles the rest of the image. Encoder and
    decoder therefore both run these networks single-threaded, whatever the process's setting.
    """
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


_GAUSSIAN_TABLES: SymbolTables | None = None


def gaussian_tables() -> SymbolTables:
    global _GAUSSIAN_TABLES
    if _GAUSSIAN_TABLES is None:
        _GAUSSIAN_TABLES = SymbolTables(scale_pmfs())
    return _GAUSSIAN_TABLES


def _symbols_to_numpy(symbols: torch.Tensor) -> np.ndarray:
    if not torch.isfinite(symbols).all() or symbols.abs().max() > _MAX_ABS_SYMBOL:
        raise EVCError("the model produced a non-finite or out-of-range latent; its weights are unusable")
    return symbols.to("cpu", torch.int64).numpy()


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
    def __init__(self, y: torch.Tensor, crc: int) -> None:
        self.y = y
        self.streams: list[bytes] = []
        self.crc = crc

    def __call__(self, step: int, mu: torch.Tensor, sigma: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        symbols = torch.round(self.y - mu) + 0.0  # + 0.0 turns -0.0 into 0.0, as the decoder has it
        values = _symbols_to_numpy(symbols[mask])
        index = scale_index(sigma)[mask].cpu().numpy()
        self.streams.append(encode_symbols(values, index, gaussian_tables()))
        self.crc = _crc_of(values, self.crc)
        return _dequantize(symbols, mu, mask)


class _DecodingQuantizer:
    def __init__(self, streams: list[bytes], crc: int) -> None:
        self.streams = streams
        self.crc = crc

    def __call__(self, step: int, mu: torch.Tensor, sigma: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        index = scale_index(sigma)[mask].cpu().numpy()
        values = decode_symbols(self.streams[step], index, gaussian_tables())
        self.crc = _crc_of(values, self.crc)
        symbols = torch.zeros_like(mu)
        symbols[mask] = torch.from_numpy(values).to(device=mu.device, dtype=mu.dtype)
        return _dequantize(symbols, mu, mask)


class EVC(nn.Module):
    """One EVC codec: encoder size X, decoder size Y (EVC-XY)."""

    num_streams = 3  # z, then the two dual-prior steps of y

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

    # -- shared pieces ---------------------------------------------------------------------------
    def analyse(self, x: torch.Tensor) -> torch.Tensor:
        """g_a: the unscaled latent of a padded image batch."""
        return self.g_a(x)

    def entropy_params(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Q_step >= 0.5, sigma, mu) of the latent from the decoded hyper-latent."""
        q_step, sigma, mu = self.prior_fusion(self.h_s(z_hat))
        return lower_bound(q_step, Q_STEP_MIN), sigma, mu

    def synthesise(self, y_hat: torch.Tensor, q_step: torch.Tensor, divisor: torch.Tensor) -> torch.Tensor:
        return self.g_s(y_hat * q_step * divisor)

    # -- training --------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, anchor: torch.Tensor) -> RDOutput:
        """Training/validation forward; ``anchor`` holds each sample's rate anchor (0..3).

        ``x``: (B, 3, H, W) in [0, 1] with H and W multiples of 64 (pad or crop first).
        """
        check_padded(x)
        return self.rd_forward(x, self.analyse(x), self.rate.anchor_q_scale(anchor))

    def rd_forward(self, x: torch.Tensor, y: torch.Tensor, q_scale: torch.Tensor) -> RDOutput:
        """Rate and reconstruction from a latent. Under autocast only the transforms run in reduced
        precision: the entropy model always runs in float32, since rounding y - mu in bf16 would
        quantise a different value than the codec does."""
        with torch.autocast(y.device.type, enabled=False):
            y = y.float()
            divisor = self.rate.divisor(q_scale)
            y = y / divisor
            z = self.h_a(y)
            if self.training:
                z_for_rate = z + torch.empty_like(z).uniform_(-0.5, 0.5)
            else:
                z_for_rate = torch.round(z)
            z_bits = self.z_density.bits(z_for_rate).sum(dim=(1, 2, 3))
            q_step, sigma, mu = self.entropy_params(ste_round(z))
            quantize = _TrainingQuantizer(y / q_step)
            y_hat = self.dual_prior(mu, sigma, q_step, quantize)
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

    def _z_table_index(self, z_shape: tuple[int, ...]) -> np.ndarray:
        _, c, h, w = z_shape
        return np.repeat(np.arange(c, dtype=np.int64), h * w)

    @torch.no_grad()
    def compress_latent(
        self, y: torch.Tensor, q_scale: float, reconstruct: bool = True
    ) -> tuple[CodedLatent, torch.Tensor | None]:
        """Code one latent (batch 1); returns it coded and (if asked) the decoder's reconstruction."""
        if y.shape[0] != 1:
            raise ValueError("coding works on one image at a time")
        divisor = self.rate.divisor(torch.tensor(q_scale, device=y.device, dtype=y.dtype))
        y = y / divisor
        z_hat = torch.round(self.h_a(y)) + 0.0
        z_values = _symbols_to_numpy(z_hat)
        z_stream = encode_symbols(z_values, self._z_table_index(z_hat.shape), self.z_tables())
        with entropy_parameter_threads(y.device):
            q_step, sigma, mu = self.entropy_params(z_hat)
            quantize = _EncodingQuantizer(y / q_step, _crc_of(z_values, 0))
            y_hat = self.dual_prior(mu, sigma, q_step, quantize)
        x_hat = self.synthesise(y_hat, q_step, divisor) if reconstruct else None
        return CodedLatent([z_stream, *quantize.streams], quantize.crc), x_hat

    @torch.no_grad()
    def decompress_latent(
        self, coded: CodedLatent, padded_height: int, padded_width: int, q_scale: float
    ) -> torch.Tensor:
        """Decode :meth:`compress_latent`'s output into the padded reconstruction (1, 3, H, W)."""
        if len(coded.streams) != self.num_streams:
            raise FormatError(f"expected {self.num_streams} streams, got {len(coded.streams)}")
        device = next(self.parameters()).device
        z_shape = (1, HYPER_CHANNELS, padded_height // PADDING_MULTIPLE, padded_width // PADDING_MULTIPLE)
        z_values = decode_symbols(coded.streams[0], self._z_table_index(z_shape), self.z_tables())
        z_hat = torch.from_numpy(z_values).to(device=device, dtype=torch.float32).view(z_shape)
        with entropy_parameter_threads(device):
            q_step, sigma, mu = self.entropy_params(z_hat)
            dequantize = _DecodingQuantizer(coded.streams[1:], _crc_of(z_values, 0))
            y_hat = self.dual_prior(mu, sigma, q_step, dequantize)
        if dequantize.crc != coded.symbols_crc:
            raise FormatError(
                "decoded symbols differ from the encoder's (checksum mismatch): this file was encoded on a "
                "device or CPU whose arithmetic differs from this one; decode it where it was encoded"
            )
        divisor = self.rate.divisor(torch.tensor(q_scale, device=device, dtype=torch.float32))
        return self.synthesise(y_hat, q_step, divisor)

"""The EVC model: transforms + hyperprior + dual spatial prior + variable rate, for training and coding.

Data flows one way: image -> g_a -> latent y -> (divide by the rate's step) -> latent codec -> g_s.
The networks and their weights live here; how the scaled latent becomes bits (quantisation, entropy
parameters, tables, streams) is :class:`~evc.entropy.latent_codec.LatentCodec`'s, and how the networks
run while coding (precision, tiles, timing) is the caller's :class:`~evc.nn.execution.Execution`. The training forward
and the coding path run the same modules in the same order; they differ only in how a value is
quantised (straight-through rounding vs. rounding plus entropy coding).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import torch
from torch import nn

from evc.entropy.dual_prior import DualSpatialPrior
from evc.entropy.factorized import FactorizedDensity
from evc.entropy.latent_codec import (
    PIXELS_PER_HYPER_LATENT,
    PIXELS_PER_LATENT,
    CodedLatent,
    CodingOptions,
    LatentCodec,
)
from evc.entropy.networks import EntropyNetworks
from evc.models.variable_rate import VariableRate
from evc.nn.execution import DEFAULT_EXECUTION, Execution
from evc.nn.hyperprior import HYPER_CHANNELS, HyperAnalysis, HyperSynthesis, PriorFusion
from evc.nn.transforms import LATENT_CHANNELS, AnalysisTransform, SynthesisTransform

# Spatial size of the input must be a multiple of this (four stride-2 stages, then two in h_a).
PADDING_MULTIPLE = PIXELS_PER_HYPER_LATENT


def check_padded(x: torch.Tensor) -> None:
    """Raise ValueError unless ``x`` is (B, 3, H, W) with H, W multiples of PADDING_MULTIPLE."""
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[-1] % PADDING_MULTIPLE or x.shape[-2] % PADDING_MULTIPLE:
        raise ValueError(
            f"expected images of shape (B, 3, H, W) with H, W multiples of {PADDING_MULTIPLE}, got {tuple(x.shape)}"
        )


@dataclass
class RDOutput:
    """Training forward result, per sample: reconstruction and estimated bits.

    ``levels``: a scalable model's result for every encoder level, cheapest first (this object is the
    last); empty for a model with one encoder. :attr:`all_levels` covers both cases.
    """

    x_hat: torch.Tensor
    y_bits: torch.Tensor
    z_bits: torch.Tensor
    bpp: torch.Tensor
    levels: list[RDOutput] = field(default_factory=list)

    @property
    def all_levels(self) -> list[RDOutput]:
        return self.levels or [self]


class EVC(nn.Module):
    """One EVC codec: encoder size X, decoder size Y (EVC-XY). ``encoder``: what stands in g_a's place,
    a scalable model's encoders (:class:`~evc.models.scalable.ScalableEVC`); default one analysis
    transform of ``encoder_size``."""

    num_levels = 1  # encoder levels (a scalable model has several)

    def __init__(self, encoder_size: str = "L", decoder_size: str = "L", encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder_size = encoder_size
        self.decoder_size = decoder_size
        self.g_a = AnalysisTransform(encoder_size) if encoder is None else encoder  # type: ignore[arg-type]
        self.g_s = SynthesisTransform(decoder_size)  # type: ignore[arg-type]
        self.h_a = HyperAnalysis(LATENT_CHANNELS, HYPER_CHANNELS)
        self.h_s = HyperSynthesis(LATENT_CHANNELS, HYPER_CHANNELS)
        self.prior_fusion = PriorFusion(LATENT_CHANNELS)
        self.dual_prior = DualSpatialPrior(LATENT_CHANNELS)
        self.z_density = FactorizedDensity(HYPER_CHANNELS)
        self.rate = VariableRate(LATENT_CHANNELS)
        self.entropy_networks = EntropyNetworks(self.h_a, self.h_s, self.prior_fusion, self.dual_prior, self.z_density)
        self.latent_codec = LatentCodec(self.entropy_networks)

    # -- shared pieces ---------------------------------------------------------------------------
    def analyse(self, x: torch.Tensor, level: int | None = None, run: Execution = DEFAULT_EXECUTION) -> torch.Tensor:
        """g_a: the unscaled latent (B, 192, H/16, W/16) of a padded image batch. ``level``: a
        scalable model's encoder level (default: the last); a model with one encoder has level 0 only.
        ``run``: the transforms' precision, layout and tiles (:class:`~evc.nn.execution.Execution`)."""
        if level not in (None, 0):
            raise ValueError(f"encoder level must be 0 for a model with one encoder, got {level}")
        return run.run_transform(self.g_a, x, 1)

    def level_latents(
        self, x: torch.Tensor, up_to: int | None = None, run: Execution = DEFAULT_EXECUTION
    ) -> list[torch.Tensor]:
        """The latent of every encoder level 0..up_to (default: all), cheapest first (coding path)."""
        return [self.analyse(x, up_to, run)]

    def synthesise(
        self, y_hat: torch.Tensor, q_step: torch.Tensor, divisor: torch.Tensor, run: Execution = DEFAULT_EXECUTION
    ) -> torch.Tensor:
        # y_hat * q_step first, then to float32: with the exact path both are float64 and this product
        # is the last step that must agree bit for bit between devices.
        return run.run_transform(self.g_s, (y_hat * q_step).float() * divisor, PIXELS_PER_LATENT)

    # -- training --------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, anchor: torch.Tensor, entropy_autocast: bool = False) -> RDOutput:
        """Training/validation forward; ``anchor`` holds each sample's rate anchor (0..3).

        ``x``: (B, 3, H, W) in [0, 1] with H and W multiples of 64 (pad or crop first).
        ``entropy_autocast``: see :meth:`rd_forward`.
        """
        check_padded(x)
        return self.rd_forward(x, self.analyse(x), self.rate.anchor_q_scale(anchor), entropy_autocast)

    def rd_forward(
        self, x: torch.Tensor, y: torch.Tensor, q_scale: torch.Tensor, entropy_autocast: bool = False
    ) -> RDOutput:
        """Rate and reconstruction from a latent.

        Under autocast the transforms run in reduced precision. The entropy model's arithmetic
        (scaling, rounding y - mu, the rate terms) always runs in float32, since rounding in bf16 would
        quantise a different value than the codec does. Its networks (h_a, h_s, prior fusion, the
        spatial prior) follow the caller's autocast only with ``entropy_autocast``, a setting of the
        training step (they are a third of the fast step's work); their outputs are made float32 at
        once, so only their own rounding differs from the codec's float32 or exact evaluation.
        """
        device_type = y.device.type
        reduced = (
            entropy_autocast
            and torch.is_autocast_enabled(device_type)
            and torch.get_autocast_dtype(device_type)
        )
        with torch.autocast(device_type, enabled=False):
            divisor = self.rate.divisor(q_scale)
            latent = self.latent_codec.forward(y.float() / divisor, noisy_z=self.training, reduced=reduced or None)
        x_hat = self.synthesise(latent.y_hat, latent.q_step, divisor).float()
        num_pixels = x.shape[-2] * x.shape[-1]
        bits = latent.y_bits + latent.z_bits
        return RDOutput(x_hat=x_hat, y_bits=latent.y_bits, z_bits=latent.z_bits, bpp=bits / num_pixels)

    # -- coding ----------------------------------------------------------------------------------
    @torch.no_grad()
    def code_latent(
        self,
        y: torch.Tensor,
        q_scale: float,
        options: CodingOptions = CodingOptions(),
        coder: Executor | None = None,
        run: Execution = DEFAULT_EXECUTION,
    ) -> tuple[Callable[[], CodedLatent], Callable[[], torch.Tensor]]:
        """Code one latent (batch 1) at ``q_scale``, returning two functions: the coded latent (waits for
        the coder thread) and the decoder's reconstruction (1, 3, H, W), which runs g_s when called.
        Call the reconstruction first to overlap g_s with the coder, or not at all where only the file
        is needed (a rate search). ``coder``: see :meth:`LatentCodec.compress`; ``run``: see
        :class:`~evc.nn.execution.Execution`."""
        if y.shape[0] != 1:
            raise ValueError("coding works on one image at a time")
        divisor = self.rate.divisor(torch.tensor(q_scale, device=y.device, dtype=y.dtype))
        coded, y_hat, q_step = self.latent_codec.compress(y / divisor, options, coder, run)
        return coded, lambda: self.synthesise(y_hat, q_step, divisor, run)

    @torch.no_grad()
    def compress_latent(
        self,
        y: torch.Tensor,
        q_scale: float,
        reconstruct: bool = True,
        options: CodingOptions = CodingOptions(),
        coder: Executor | None = None,
        run: Execution = DEFAULT_EXECUTION,
    ) -> tuple[CodedLatent, torch.Tensor | None]:
        """Code one latent (batch 1) at ``q_scale``; returns it coded and (if asked) the decoder's
        reconstruction (1, 3, H, W). ``coder``: see :meth:`LatentCodec.compress`; ``run``: see
        :class:`~evc.nn.execution.Execution`."""
        coded, reconstruction = self.code_latent(y, q_scale, options, coder, run)
        x_hat = reconstruction() if reconstruct else None
        return coded(), x_hat  # the coder thread has run alongside the synthesis

    @torch.no_grad()
    def decompress_latent(
        self,
        coded: CodedLatent,
        padded_height: int,
        padded_width: int,
        q_scale: float,
        options: CodingOptions = CodingOptions(),
        run: Execution = DEFAULT_EXECUTION,
        progress: Callable[[str], None] | None = None,
    ) -> torch.Tensor:
        """Decode :meth:`compress_latent`'s output into the padded reconstruction (1, 3, H, W).
        ``progress``: called with "synthesis" once the entropy decoding is done.
        Raises FormatError as :meth:`LatentCodec.decompress` does."""
        device = next(self.parameters()).device
        z_shape = (1, HYPER_CHANNELS, padded_height // PADDING_MULTIPLE, padded_width // PADDING_MULTIPLE)
        y_hat, q_step = self.latent_codec.decompress(coded, z_shape, options, device, run)
        if progress is not None:
            progress("synthesis")
        divisor = self.rate.divisor(torch.tensor(q_scale, device=device, dtype=torch.float32))
        return self.synthesise(y_hat, q_step, divisor, run)

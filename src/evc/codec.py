"""The public codec: images in, bytes out, and back.

    codec = evc.load("EVC-LL")
    data = codec.compress(image, quality=0.5)
    image = codec.decompress(data)
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from evc.bitstream.container import FLAG_EXACT, FLAG_SKIP_CERTAIN, MAGIC, Header, pack, parse
from evc.errors import EVCError, FormatError, ImageError, ModelError, UntrainedModelError
from evc.eval.metrics import mse
from evc.image import ColourMode, ImageInput, rgb_to_pil, rgb_to_tensor, tensor_to_rgb, to_rgb_array
from evc.models.evc import EVC, PADDING_MULTIPLE, CodedLatent, CodingOptions
from evc.models.registry import MODELS_BY_ID, ModelSpec, default_model_name, get_spec
from evc.models.scalable import ScalableEVC
from evc.models.variable_rate import q_index_to_scale, rd_loss_weight
from evc.models.weights import MODEL_KEY, apply_state, load_state, read_metadata, weights_fingerprint
from evc.ratecontrol import meet_target_bpp, meet_target_psnr

DEFAULT_QUALITY = 0.5
# Large images run through the networks in tiles, so memory grows only with the buffers that hold the
# whole image and latent (measured: about 100 bytes per pixel, 4.9 GB to encode 8000 x 6000); beyond
# this many padded pixels (134 M, e.g. 16384 x 8192, about 13 GB) evc refuses rather than risk
# exhausting memory or decoding for many minutes. Settable (Codec.max_pixels).
DEFAULT_MAX_PIXELS = 1 << 27
PRECISIONS = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class EncodeResult:
    """A coded image with what the decoder will reconstruct from it."""

    data: bytes
    reconstruction: Image.Image
    q_index: int
    width: int
    height: int
    mse: float  # on [0, 1] RGB values of the 8-bit reconstruction
    encoder_level: int | None = None

    @property
    def bpp(self) -> float:
        return len(self.data) * 8 / (self.width * self.height)

    @property
    def psnr(self) -> float:
        return 10 * math.log10(1.0 / self.mse) if self.mse > 0 else math.inf


def _pick_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise EVCError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise EVCError(f"device {device!r} requested but CUDA is not available")
    if chosen.type not in ("cpu", "cuda"):
        raise EVCError(f"device {device!r} is not supported; use cpu, cuda or cuda:N")
    return chosen


def _padded(size: int) -> int:
    return -(-size // PADDING_MULTIPLE) * PADDING_MULTIPLE


class Codec:
    """One model with its weights, ready to code images.

    ``exact`` (default): entropy parameters in exact fixed-point arithmetic, so files decode on any
    CPU or GPU; ``exact=False`` uses the faster float32 networks, and the files then decode only on
    the kind of device that wrote them (the decoder detects a mismatch and refuses). ``precision``
    and ``channels_last`` set how the transforms run (the fast path on a GPU: "float16", True); they
    never change which files decode. ``substreams`` splits each coding step of the latent into that
    many independent streams. Decoding follows whatever the file says, whatever these settings.
    """

    def __init__(
        self,
        model: EVC,
        name: str,
        device: str | torch.device | None = None,
        *,
        exact: bool = True,
        substreams: int = 1,
        precision: str = "float32",
        channels_last: bool = False,
    ) -> None:
        self.spec: ModelSpec = get_spec(name)
        self.device = _pick_device(device)
        self.model = model.to(self.device).eval()
        self.fingerprint = weights_fingerprint(self.model)
        self.max_pixels = DEFAULT_MAX_PIXELS
        self.options = CodingOptions(exact=exact, substreams=substreams)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.model.set_transform_precision(PRECISIONS[precision], channels_last)
        self._coder: ThreadPoolExecutor | None = None

    @property
    def coder(self) -> ThreadPoolExecutor:
        """One background thread for entropy coding, so it overlaps with the networks."""
        if self._coder is None:
            self._coder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evc-coder")
        return self._coder

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return f"Codec({self.name!r}, device={str(self.device)!r})"

    # -- rates -----------------------------------------------------------------------------------
    def q_index(self, quality: float) -> int:
        """The file's q index for a quality in [0, 1] (0: lowest-rate anchor, 1: highest)."""
        return self.model.rate.q_index_for_quality(quality)

    @property
    def anchor_q_indices(self) -> list[int]:
        """q index of each of the 4 trained rate anchors, lowest rate first."""
        return self.model.rate.anchor_q_indices()

    # -- encoding --------------------------------------------------------------------------------
    def compress(
        self,
        image: ImageInput,
        quality: float | None = None,
        *,
        q_index: int | None = None,
        target_bpp: float | None = None,
        target_psnr: float | None = None,
        encoder_level: int | None = None,
    ) -> bytes:
        """Code an image; the rate is set by exactly one of quality (default 0.5), q_index, target_bpp
        or target_psnr. ``encoder_level`` (scalable models) runs encoders 0..level only; by default
        every level is tried and the one with the lowest RD cost is kept."""
        needs_reconstruction = target_psnr is not None or (
            isinstance(self.model, ScalableEVC) and encoder_level is None
        )
        if needs_reconstruction or target_bpp is not None:
            return self.encode(
                image, quality, q_index=q_index, target_bpp=target_bpp, target_psnr=target_psnr,
                encoder_level=encoder_level,
            ).data
        # Plain coding at one rate: the synthesis transform is not needed.
        rgb, colour = self._image(image)
        q = self._resolve_q_index(quality, q_index)
        [(_, y)] = self._latents(rgb, encoder_level)
        coded, _ = self.model.compress_latent(
            y, q_index_to_scale(q), reconstruct=False, options=self.options, coder=self.coder
        )
        return pack(self._header(rgb, colour, q, coded.symbols_crc), coded.streams)

    def encode(
        self,
        image: ImageInput,
        quality: float | None = None,
        *,
        q_index: int | None = None,
        target_bpp: float | None = None,
        target_psnr: float | None = None,
        encoder_level: int | None = None,
    ) -> EncodeResult:
        """Like :meth:`compress`, also returning the reconstruction the decoder will produce."""
        chosen = [v is not None for v in (quality, q_index, target_bpp, target_psnr)]
        if sum(chosen) > 1:
            raise ValueError("give at most one of quality, q_index, target_bpp, target_psnr")
        rgb, colour = self._image(image)
        latents = self._latents(rgb, encoder_level)

        def encode_at(q: int) -> EncodeResult:
            return min(
                (self._encode_latent(y, rgb, colour, q, level) for level, y in latents),
                key=lambda r: rd_loss_weight(self.model.rate.lambda_for_q_index(q)) * r.mse + r.bpp,
            )

        q_best, q_worst = self.q_index(1.0), self.q_index(0.0)
        if target_bpp is not None:
            return meet_target_bpp(encode_at, q_best, q_worst, float(target_bpp))
        if target_psnr is not None:
            return meet_target_psnr(encode_at, q_best, q_worst, float(target_psnr))
        return encode_at(self._resolve_q_index(quality, q_index))

    def _image(self, image: ImageInput) -> tuple[np.ndarray, ColourMode]:
        rgb, colour = to_rgb_array(image)
        height, width = rgb.shape[:2]
        # The same measure as the decoder's: the padded size is what the networks process.
        padded_pixels = _padded(height) * _padded(width)
        if padded_pixels > self.max_pixels:
            raise ImageError(
                f"image of {width}x{height} pixels ({padded_pixels} once padded to multiples of {PADDING_MULTIPLE}) "
                f"exceeds the limit of {self.max_pixels} pixels (Codec.max_pixels)"
            )
        return rgb, colour

    def _resolve_q_index(self, quality: float | None, q_index: int | None) -> int:
        if quality is not None and q_index is not None:
            raise ValueError("give at most one of quality, q_index, target_bpp, target_psnr")
        if q_index is None:
            return self.q_index(DEFAULT_QUALITY if quality is None else quality)
        if not (isinstance(q_index, (int, np.integer)) and not isinstance(q_index, bool) and 1 <= q_index <= 0xFFFF):
            raise ValueError(f"q_index must be an integer in 1..65535, got {q_index!r}")
        return int(q_index)

    def _header(self, rgb: np.ndarray, colour: ColourMode, q_index: int, symbols_crc: int) -> Header:
        height, width = rgb.shape[:2]
        flags = (FLAG_EXACT if self.options.exact else 0) | (FLAG_SKIP_CERTAIN if self.options.skip_certain else 0)
        return Header(self.spec.model_id, self.fingerprint, colour, q_index, width, height, symbols_crc, flags)

    @torch.no_grad()
    def _latents(self, rgb: np.ndarray, encoder_level: int | None) -> list[tuple[int | None, torch.Tensor]]:
        height, width = rgb.shape[:2]
        x = rgb_to_tensor(rgb, self.device)
        x = F.pad(x, (0, _padded(width) - width, 0, _padded(height) - height))
        if not isinstance(self.model, ScalableEVC):
            if encoder_level is not None:
                raise ValueError(f"{self.name} has one encoder; encoder_level applies to scalable models only")
            return [(None, self.model.analyse(x))]
        if encoder_level is not None:
            return [(encoder_level, self.model.analyse(x, encoder_level))]
        return list(enumerate(self.model.level_latents(x)))

    def _encode_latent(
        self, y: torch.Tensor, rgb: np.ndarray, colour: ColourMode, q_index: int, level: int | None
    ) -> EncodeResult:
        height, width = rgb.shape[:2]
        coded, x_hat = self.model.compress_latent(y, q_index_to_scale(q_index), options=self.options, coder=self.coder)
        assert x_hat is not None
        recon = tensor_to_rgb(x_hat[:, :, :height, :width])
        image = rgb_to_pil(recon, colour)
        if colour == "L":  # measure what the user gets back: the gray image against the gray input
            error = mse(np.asarray(image), rgb[:, :, 0])
        else:
            error = mse(recon, rgb)
        data = pack(self._header(rgb, colour, q_index, coded.symbols_crc), coded.streams)
        return EncodeResult(data, image, q_index, width, height, error, level)

    # -- decoding --------------------------------------------------------------------------------
    def decompress(self, data: bytes) -> Image.Image:
        """Decode a file made by this model and these weights into a PIL image ("RGB" or "L")."""
        header, streams = parse(data, known_model_ids=set(MODELS_BY_ID))
        if header.model_id != self.spec.model_id:
            other = MODELS_BY_ID[header.model_id].name
            raise FormatError(f"file was made by {other}, this codec is {self.name}; load {other} to decode it")
        if header.weights_fingerprint != self.fingerprint:
            raise FormatError(
                f"file was made with other weights for {self.name} (fingerprint {header.weights_fingerprint:08x}, "
                f"loaded {self.fingerprint:08x}); decode it with the weights that encoded it"
            )
        # The decoder's work and memory grow with the padded size (a 1 x N image decodes as 64 x N'),
        # so that is what the limit bounds, checked before anything of that size is allocated.
        padded_pixels = _padded(header.width) * _padded(header.height)
        if padded_pixels > self.max_pixels:
            raise FormatError(
                f"file declares {header.width}x{header.height} pixels ({padded_pixels} once padded to multiples "
                f"of {PADDING_MULTIPLE}), over the limit of {self.max_pixels} (Codec.max_pixels)"
            )
        options = CodingOptions.for_streams(len(streams), header.exact, header.skip_certain)
        x_hat = self.model.decompress_latent(
            CodedLatent(streams, header.symbols_crc),
            _padded(header.height),
            _padded(header.width),
            q_index_to_scale(header.q_index),
            options,
        )
        return rgb_to_pil(tensor_to_rgb(x_hat[:, :, : header.height, : header.width]), header.colour)  # type: ignore[arg-type]


def load(
    name: str | None = None,
    device: str | torch.device | None = None,
    weights: str | Path | None = None,
    **options: Any,
) -> Codec:
    """Load a codec. No name: the best model that ships trained weights. ``weights``: a .safetensors
    file or folder to use instead of the shipped weights (its metadata may supply the name).
    ``options``: :class:`Codec`'s keyword options (exact, substreams, precision, channels_last)."""
    if weights is not None:
        metadata = read_metadata(weights)
        named = metadata.get(MODEL_KEY)
        if name is None:
            if named is None:
                raise ModelError(f"{weights} does not say which model it holds; pass the model name")
            name = named
        elif named is not None and get_spec(named).name != get_spec(name).name:
            raise ModelError(f"{weights} holds weights for {get_spec(named).name}, not {get_spec(name).name}")
        source = Path(weights)
    else:
        if name is None:
            name = default_model_name()
            if name is None:
                raise UntrainedModelError(None)
        spec = get_spec(name)
        if not spec.has_weights():
            raise UntrainedModelError(spec.name)
        source = spec.weights_dir
    spec = get_spec(name)
    state, _ = load_state(source)
    model = spec.build()
    apply_state(model, state, str(source))
    return Codec(model, spec.name, device, **options)


def decompress(data: bytes, device: str | torch.device | None = None, weights: str | Path | None = None) -> Image.Image:
    """Decode any evc file, loading the model its header names (shipped weights unless ``weights``)."""
    header, _ = parse(data, known_model_ids=set(MODELS_BY_ID))
    return load(MODELS_BY_ID[header.model_id].name, device=device, weights=weights).decompress(data)


@dataclass(frozen=True)
class FileInfo:
    model: str
    width: int
    height: int
    colour: str
    q_index: int
    quality: float | None  # None when the encoding weights' anchors are unknown here
    size_bytes: int
    format_version: int
    weights_fingerprint: int
    exact: bool  # entropy parameters in exact arithmetic: decodes on any device
    substreams: int

    @property
    def bpp(self) -> float:
        return self.size_bytes * 8 / (self.width * self.height)


def file_info(data: bytes) -> FileInfo:
    """Describe a file without decoding it."""
    header, streams = parse(data, known_model_ids=set(MODELS_BY_ID))
    options = CodingOptions.for_streams(len(streams), header.exact, header.skip_certain)
    spec = MODELS_BY_ID[header.model_id]
    quality = None
    if spec.has_weights():
        anchors = json.loads(read_metadata(spec.weights_dir).get("evc.anchors_q_scale", "null") or "null")
        if anchors:
            low, high = math.log(anchors[0]), math.log(anchors[-1])
            if high != low:
                quality = (math.log(q_index_to_scale(header.q_index)) - low) / (high - low)
    return FileInfo(
        spec.name, header.width, header.height, header.colour, header.q_index, quality, len(data),
        data[len(MAGIC)], header.weights_fingerprint, options.exact, options.substreams,
    )

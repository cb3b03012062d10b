"""What evc's two codecs share, without torch: the PyTorch codec (:mod:`evc.codec`) and the ONNX Runtime
one (:mod:`evc.onnx.runtime`) prepare an image, write a header, check a file and pick the file of an
encode alike.

Each piece decides what a file holds or what a caller is told, and has no better owner, so it lives
here once: the image coded and its alpha plane (:func:`prepared_image`), the header of such an image
(:func:`file_header`, through :func:`evc.bitstream.container.encoder_header`), a file read and checked
before any network runs (:func:`decodable`), the file an encode keeps at a rate (:func:`coded_probe`:
a scalable model's level at each q index, over :func:`evc.ratecontrol.coded_at`) and the result an
encode returns (:class:`Probe`, :class:`EncodeResult`).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from PIL import Image

from evc import arguments
from evc.alpha import encode_alpha
from evc.arguments import Rate
from evc.bitstream.container import Header, encoder_header, version_for
from evc.entropy.streams import CodingOptions
from evc.errors import FormatError, ImageError
from evc.fileinfo import parse_file
from evc.image import PADDING_MULTIPLE, ImageInput, InputImage, check_pixel_limit, mse, padded, rgb_to_pil, to_input
from evc.models.rates import lambda_for_q_index, rd_loss_weight
from evc.models.registry import ModelSpec
from evc.ratecontrol import Progress, coded_at


def tell(progress: Progress | None, step: str) -> None:
    """Report a coding step (e.g. "analysis") to ``progress``, if one was given."""
    if progress is not None:
        progress(step)


@dataclass(frozen=True)
class EncodeResult:
    """A coded image with what the decoder will reconstruct from it."""

    data: bytes
    reconstruction: Image.Image  # "RGB" / "L", or "RGBA" / "LA" with the input's alpha (exact)
    q_index: int
    width: int
    height: int
    mse: float  # on [0, 1] colour values of the 8-bit reconstruction (the alpha plane is lossless)
    encoder_level: int | None = None

    @property
    def bpp(self) -> float:
        """Bits per pixel of the whole file: header, metadata, the coded alpha plane, streams, CRC."""
        return len(self.data) * 8 / (self.width * self.height)

    @property
    def psnr(self) -> float:
        """PSNR in dB of the colours (RGB, or gray for gray images); the alpha plane is exact."""
        return 10 * math.log10(1.0 / self.mse) if self.mse > 0 else math.inf


def prepared_image(
    image: ImageInput, strip: object, arithmetic: str, max_pixels: int, stacklevel: int
) -> tuple[InputImage, bytes | None]:
    """The image to code and its coded alpha plane (None when opaque), for a codec of ``arithmetic``
    ("int8" or "float64") and pixel limit ``max_pixels``. ``strip``: drop EXIF and XMP. Metadata a
    format version of this arithmetic cannot hold is dropped with a warning (``stacklevel``: as the
    caller would give it to warnings.warn). Raises TypeError for a non-bool ``strip``, ImageError for
    an unusable image, one over the limit, or one with transparency this arithmetic's format cannot hold."""
    if arguments.flag("strip", strip):
        coded = dataclasses.replace(to_input(image, max_pixels), exif=None, xmp=None)
    else:
        coded = to_input(image, max_pixels)
    if (coded.exif or coded.xmp) and version_for(arithmetic, metadata=True) is None:
        warnings.warn(
            f"format version {version_for(arithmetic, metadata=False)} ({arithmetic} "
            "arithmetic) cannot hold EXIF or XMP metadata: the image's metadata is not carried",
            UserWarning, stacklevel=stacklevel + 1,
        )
        coded = dataclasses.replace(coded, exif=None, xmp=None)
    height, width = coded.rgb.shape[:2]
    # The same measure as the decoder's: the padded size is what the networks process.
    check_pixel_limit(width, height, max_pixels)
    if coded.alpha is None:
        return coded, None
    if version_for(arithmetic, metadata=True) is None:
        raise ImageError(
            f"the image has transparent pixels, which format version "
            f"{version_for(arithmetic, metadata=False)} ({arithmetic} arithmetic) "
            "cannot hold; code it with int8 arithmetic (the default) or flatten it first"
        )
    return coded, encode_alpha(coded.alpha)


def file_header(
    spec: ModelSpec, fingerprint: int, options: CodingOptions, image: InputImage, alpha_block: bytes | None,
    q_index: int, symbols_crc: int,
) -> Header:
    """The header of a file of ``spec``'s model with these weights (``fingerprint``) and ``options``,
    coding ``image`` (and its coded alpha plane) at ``q_index`` (:func:`prepared_image` keeps metadata
    and alpha only where the arithmetic's format version holds them)."""
    height, width = image.rgb.shape[:2]
    return encoder_header(
        spec.model_id, fingerprint, image.colour, q_index, width, height, symbols_crc,
        exact=options.exact, skip_certain=options.skip_certain, arithmetic=options.arithmetic,
        icc_profile=image.icc_profile, exif=image.exif, xmp=image.xmp, alpha=alpha_block,
    )


def decodable(data: bytes, spec: ModelSpec, fingerprint: int, max_pixels: int, setting: str) -> tuple[Header, list[bytes]]:
    """The header and streams of the file ``data`` (:func:`evc.fileinfo.parse_file`) for a codec of
    ``spec``'s model with weights ``fingerprint``, which decodes at most ``max_pixels`` (padded; ``setting``
    names where that limit is set, for the message). Raises FormatError for a malformed file, one of another
    model or other weights, or one declaring more pixels."""
    header, streams, made_by = parse_file(data)
    if made_by != spec:
        raise FormatError(f"file was made by {made_by.name}, this codec is {spec.name}; load {made_by.name} to decode it")
    if header.weights_fingerprint != fingerprint:
        raise FormatError(
            f"file was made with other weights for {spec.name} (fingerprint {header.weights_fingerprint:08x}, "
            f"loaded {fingerprint:08x}); decode it with the weights that encoded it"
        )
    # The decoder's work and memory grow with the padded size (a 1 x N image decodes as 64 x N'),
    # so that is what the limit bounds, checked before anything of that size is allocated.
    padded_pixels = padded(header.width) * padded(header.height)
    if padded_pixels > max_pixels:
        raise FormatError(
            f"file declares {header.width}x{header.height} pixels ({padded_pixels} once padded to multiples "
            f"of {PADDING_MULTIPLE}), over the limit of {max_pixels} ({setting})"
        )
    return header, streams


class Probe:
    """One latent coded at one q index, as a codec's encode makes it (each codec subclasses it): the
    file at once; the reconstruction, with the MSE, only when :meth:`result` asks for it, so that a rate
    search that compares file sizes never runs the synthesis. :meth:`release` drops what the
    reconstruction needs (the decoded latent); a later :meth:`result` then codes the latent again.

    A subclass sets ``data`` (the file), ``source`` (the image coded, :func:`prepared_image`'s),
    ``q_index`` and ``level`` (the encoder level, None for a model with one encoder).
    """

    data: bytes
    source: InputImage
    q_index: int
    level: int | None

    @property
    def bpp(self) -> float:
        """Bits per pixel of the whole file."""
        height, width = self.source.rgb.shape[:2]
        return len(self.data) * 8 / (width * height)

    @property
    def psnr(self) -> float:
        """PSNR in dB of the decoded colours (runs the synthesis the first time)."""
        return self.result().psnr

    def result(self) -> EncodeResult:
        """The coded image with its reconstruction, as an encode returns it."""
        raise NotImplementedError

    def release(self) -> None:
        """Drop what the reconstruction needs."""
        raise NotImplementedError

    def _encode_result(self, recon: np.ndarray) -> EncodeResult:
        """What an encode returns, from the decoder's reconstruction ``recon`` ((H, W, 3) uint8, cropped to
        the image)."""
        source = self.source
        rgb, colour = source.rgb, source.colour
        height, width = rgb.shape[:2]
        image = rgb_to_pil(recon, colour, source.icc_profile, source.exif, source.xmp)
        if colour == "L":  # measure what the user gets back: the gray image against the gray input
            error = mse(np.asarray(image), rgb[:, :, 0])
        else:
            error = mse(recon, rgb)
        if source.alpha is not None:  # lossless: the input's plane is what the decoder gives back
            image.putalpha(Image.fromarray(source.alpha, "L"))
        return EncodeResult(self.data, image, self.q_index, width, height, error, self.level)


P = TypeVar("P", bound=Probe)
L = TypeVar("L")


def coded_probe(
    rate: Rate, latents: Sequence[L], probe: Callable[[int, L], P], anchor_q_scales: Sequence[float], model: str,
    progress: Progress | None,
) -> P:
    """The file an encode keeps at ``rate``, found by :func:`evc.ratecontrol.coded_at` (``anchor_q_scales``,
    ``model`` and ``progress`` as it takes them): at each q index it codes, ``probe(q, latent)`` codes each
    of ``latents`` (one per encoder level: a scalable model's), and the one of the lowest RD cost at that
    q index's lambda is kept, which needs every level's reconstruction. A search keeps the reconstruction's
    inputs of its latest two probes only: the result is nearly always one of them, and an older one is
    coded again if not."""
    live: list[P] = []

    def encode_at(q: int) -> P:
        probes = [probe(q, latent) for latent in latents]
        if len(probes) == 1:
            kept = probes[0]
        else:
            weight = rd_loss_weight(lambda_for_q_index(q, list(anchor_q_scales)))
            kept = min(probes, key=lambda p: weight * p.result().mse + p.bpp)
        live.append(kept)
        if len(live) > 2:
            live.pop(0).release()
        return kept

    return coded_at(rate, encode_at, anchor_q_scales, model, progress=progress)

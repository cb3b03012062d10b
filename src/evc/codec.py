"""The public codec: images in, bytes out, and back.

    codec = evc.load("EVC-LL")
    data = codec.compress("photo.png", quality=0.5)   # a path, PIL image, numpy array or tensor
    image = codec.decompress(data)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from evc import arguments
from evc.alpha import decode_alpha
from evc.arguments import Rate
from evc.bitstream.container import pack
# What this codec shares with the ONNX Runtime one lives without torch (EncodeResult re-exported).
from evc.coding import EncodeResult, Probe, coded_probe, decodable, file_header, prepared_image, tell
from evc.entropy.latent_codec import CodedLatent, CodingOptions, EncoderOptions, decoding_options
from evc.fileinfo import FileInfo, file_bytes, file_info, parse_file  # noqa: F401  (without torch; re-exported)
from evc.fileinfo import weights_path as _weights_path
from evc.image import DEFAULT_MAX_PIXELS, ImageInput, InputImage, padded, padding_mode, rgb_to_pil, rgb_to_tensor, tensor_to_rgb
from evc.models.evc import EVC
from evc.models.registry import ModelSpec, get_spec, shipped_model
from evc.models.variable_rate import q_index_to_scale
from evc.models.weights import load_model, stored_copy
from evc.nn.execution import Execution
from evc.ratecontrol import Progress
from evc.threads import ThreadPolicy, per_call


class _Probe(Probe):
    """One latent coded at one q index (:class:`evc.coding.Probe`), here with the synthesis g_s.

    ``reconstruct``: run g_s now, while the coder thread finishes the streams (a plain encode).
    ``stages``: progress hook told of "entropy coding" and "synthesis".
    """

    def __init__(
        self, codec: Codec, y: torch.Tensor, source: InputImage, alpha_block: bytes | None, q_index: int,
        level: int | None, reconstruct: bool = False, stages: Progress | None = None,
    ) -> None:
        self._codec, self._y, self.source = codec, y, source
        self.q_index, self.level = q_index, level
        self._result: EncodeResult | None = None
        tell(stages, "entropy coding")
        coded, self._synthesis = self._code()
        x_hat = None
        if reconstruct:
            tell(stages, "synthesis")
            x_hat = self._synthesis()
        streams = coded()
        header = file_header(codec.spec, codec.fingerprint, codec.options, source, alpha_block, q_index, streams.symbols_crc)
        self.data = pack(header, streams.streams)
        if x_hat is not None:
            self._result = self._finish(x_hat)

    def _code(self) -> tuple[Callable[[], CodedLatent], Callable[[], torch.Tensor] | None]:
        codec = self._codec
        return codec.model.code_latent(
            self._y, q_index_to_scale(self.q_index), codec.options, codec.coder, codec.execution
        )

    def release(self) -> None:
        self._synthesis = None

    def result(self, stages: Progress | None = None) -> EncodeResult:
        """The coded image with its reconstruction, as :meth:`Codec.encode` returns it (``stages``: told
        of "synthesis" when it runs)."""
        if self._result is None:
            if self._synthesis is None:  # released: the same q codes to the same bytes again
                _, self._synthesis = self._code()
            tell(stages, "synthesis")
            self._result = self._finish(self._synthesis())
            self._synthesis = None
        return self._result

    def _finish(self, x_hat: torch.Tensor) -> EncodeResult:
        height, width = self.source.rgb.shape[:2]
        return self._encode_result(tensor_to_rgb(x_hat[:, :, :height, :width]))


class Codec:
    """One model with its weights, ready to code images.

    ``exact`` (default): entropy parameters in exact fixed-point arithmetic, so files decode on any
    CPU or GPU. ``arithmetic``: "int8" (default; 8-bit integer products, :mod:`evc.nn.exact_int8`,
    format version 3) or "float64" (:mod:`evc.nn.exact`; slower, but writes format version 2 files,
    which evc releases before version 3 also read). ``exact=False`` uses the faster float32 networks,
    and the files then decode only on the kind of device that wrote them (the decoder detects a mismatch and refuses). ``precision``
    and ``channels_last`` set how the transforms run (the fast path on a GPU: "float16", True); they
    never change which files decode. ``substreams`` (1-8) splits each coding step of the latent into
    that many independent streams. Decoding follows whatever the file says, whatever these settings.
    ``threads``: CPU threads per image, "auto" (the cores free when the image starts, see
    :mod:`evc.threads`) or a count; default: ``EVC_THREADS``, else ``OMP_NUM_THREADS``, else "auto".
    ``codec.execution`` holds how the networks run (:class:`~evc.nn.execution.Execution`: precision,
    tiles, a timing hook); change it with :func:`dataclasses.replace`.

    The codec codes with a copy of ``model`` whose weights are rounded to float16, the precision in
    which weights files store them (:func:`evc.models.weights.save_weights`): a file coded here decodes
    with the weights saved from the same model. ``model`` itself is left as it was.

    One codec may be shared by threads (a server's workers): concurrent ``compress`` and
    ``decompress`` calls give the bytes and pixels that the same calls give one at a time
    (tests/test_roundtrip.py). Their entropy coding takes turns on the codec's one coder thread.

    Raises TypeError or ValueError for a bad option, ModelError for an unknown name, EVCError for an
    unusable device.
    """

    def __init__(
        self,
        model: EVC,
        name: str,
        device: str | torch.device | None = None,
        *,
        exact: bool = True,
        arithmetic: str = "int8",
        substreams: int = 1,
        precision: str = "float32",
        channels_last: bool = False,
        threads: str | int | None = None,
    ) -> None:
        # First, so that the load below is the window in which the first image's free cores are measured.
        self.thread_policy = ThreadPolicy(threads)
        if not isinstance(model, EVC):
            raise TypeError(f"model must be an EVC model (evc.create_model), got a {type(model).__name__}")
        exact = arguments.flag("exact", exact)
        substreams = arguments.substreams(substreams)
        precision = arguments.precision(precision)
        channels_last = arguments.flag("channels_last", channels_last)
        self.spec: ModelSpec = get_spec(name)
        self.device = arguments.device(device)
        stored, self.fingerprint = stored_copy(model)
        self.model = stored.to(self.device).eval()
        self._max_pixels = DEFAULT_MAX_PIXELS
        self._encoder_options = EncoderOptions(
            self.model.latent_codec, CodingOptions(exact=exact, substreams=substreams, arithmetic=arithmetic), self.name
        )
        # How the networks run (precision, layout, tiles, timing): the codec's, not the model's. The
        # precisions are named as torch names its dtypes.
        self.execution = Execution(transform_dtype=getattr(torch, precision), channels_last=channels_last)
        self.execution.prepare(self.model.g_a, self.model.g_s)
        self._coder: ThreadPoolExecutor | None = None
        self._coder_lock = threading.Lock()  # threads sharing this codec start one coder thread

    @property
    def options(self) -> CodingOptions:
        """How this codec encodes (decoding follows each file's header). The first access with the int8
        arithmetic converts the entropy networks; weights beyond 8 bits' reach (|w| > 63 on every grid)
        then warn (UserWarning) and the codec writes format version 2 with float64 fixed point instead
        (:class:`~evc.entropy.latent_codec.EncoderOptions`)."""
        return self._encoder_options.get()

    @property
    def max_pixels(self) -> int:
        """The pixel limit of encoding and decoding, counted on the size padded to multiples of 64
        (default 2^27); larger images and files declaring them are refused before anything is allocated."""
        return self._max_pixels

    @max_pixels.setter
    def max_pixels(self, value: int) -> None:
        self._max_pixels = arguments.max_pixels(value)

    @property
    def coder(self) -> ThreadPoolExecutor:
        """One background thread for entropy coding, so it overlaps with the networks."""
        if self._coder is None:
            with self._coder_lock:
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
        """The file's q index for a quality in [0, 1] (0: lowest-rate anchor, 1: highest).
        Raises TypeError or ValueError for anything else (NaN, a bool, a string, ...)."""
        return self.model.rate.q_index_for_quality(arguments.quality(quality))

    @property
    def anchor_q_indices(self) -> list[int]:
        """q index of each of the 4 trained rate anchors, lowest rate first."""
        return self.model.rate.anchor_q_indices()

    # -- encoding --------------------------------------------------------------------------------
    def compress(
        self, image: ImageInput, quality: float | None = None, *, q_index: int | None = None,
        target_bpp: float | None = None, target_psnr: float | None = None, encoder_level: int | None = None,
        strip: bool = False, progress: Progress | None = None,
    ) -> bytes:
        """Code an image into the bytes of an .evc file.

        ``image``: a file path, an image file's bytes or a binary file object holding one (opened like
        the command line opens files: first frame, EXIF orientation, ``max_pixels``), a PIL image, a
        numpy array (H, W) / (H, W, 1|3) of uint8, uint16 or float in [0, 1], or a tensor (H, W) /
        (C, H, W) / (1, C, H, W); see :mod:`evc.image` for the colour rules.
        An ICC profile of the image is carried in the file and restored by :meth:`decompress`; so are
        its EXIF block (orientation applied, the tag removed) and XMP packet (format version 4), unless
        ``strip`` is True. An image with transparency (alpha band, palette transparency, colour key)
        has its alpha plane coded losslessly (:mod:`evc.alpha`, format version 4) and decodes to
        "RGBA" / "LA"; a fully opaque alpha is dropped.
        The rate is set by at most one of ``quality`` (in [0, 1], default 0.5), ``q_index`` (1..65535),
        ``target_bpp`` (best quality within that many bits per pixel) or ``target_psnr`` (smallest
        file reaching that many dB); bits per pixel count the whole file, alpha plane included, and the
        PSNR the colours only. A target is searched over every q index 1..65535 on real files
        (:mod:`evc.ratecontrol`); one met only outside the trained anchors (quality 0..1) is warned
        (UserWarning). ``encoder_level`` (scalable models) runs encoders 0..level only;
        by default every level is tried and the one with the lowest RD cost is kept.
        ``progress``: called with a one-line description of each step as it starts ("analysis",
        "entropy coding", a target search's "searching q for X bpp: q index N → B bpp", ...);
        it never changes the bytes.

        Raises TypeError / ValueError for bad arguments, ImageError for an unusable image (also one
        with transparency that cannot be coded: a side over 16383 pixels, or float64 arithmetic, whose
        format version 2 has no alpha), TargetUnreachable (an EVCError) when no q index meets a target.
        """
        rate = arguments.rate(quality, q_index, target_bpp, target_psnr)
        return self._encode(image, rate, encoder_level, strip, progress, reconstruct=False).data

    def encode(
        self, image: ImageInput, quality: float | None = None, *, q_index: int | None = None,
        target_bpp: float | None = None, target_psnr: float | None = None, encoder_level: int | None = None,
        strip: bool = False, progress: Progress | None = None,
    ) -> EncodeResult:
        """Like :meth:`compress` (same arguments and errors), also returning the reconstruction the
        decoder will produce, its q index, bpp and PSNR."""
        rate = arguments.rate(quality, q_index, target_bpp, target_psnr)
        return self._encode(image, rate, encoder_level, strip, progress, reconstruct=True).result()

    @per_call  # the thread count this image's encode runs with
    @torch.no_grad()
    def _encode(
        self, image: ImageInput, rate: Rate, encoder_level: object, strip: object, progress: object, reconstruct: bool
    ) -> _Probe:
        """The one path of :meth:`compress` and :meth:`encode`: the image coded at the checked ``rate``
        (at one q index, or searched for a target: :func:`evc.coding.coded_probe`); ``reconstruct``:
        with the decoder's reconstruction (``result()`` then runs nothing more)."""
        level = self._encoder_level(encoder_level)
        checked_progress = arguments.progress(progress)
        # stacklevel: past this method, its two decorators and compress / encode, to the caller's line.
        coded_image, alpha_block = prepared_image(image, strip, self.options.arithmetic, self.max_pixels, stacklevel=5)
        tell(checked_progress, "analysis")
        latents = self._latents(coded_image.rgb, level)
        # One file at a known q index runs g_s while the coder thread finishes its streams; a search's
        # probes run it only where compared (a PSNR target, a scalable model's levels).
        final = not rate.is_target

        def probe(q: int, latent: tuple[int | None, torch.Tensor]) -> _Probe:
            lvl, y = latent
            return _Probe(self, y, coded_image, alpha_block, q, lvl, final and (reconstruct or len(latents) > 1),
                          checked_progress if final else None)

        kept = coded_probe(rate, latents, probe, self.model.rate.anchor_q_scales(), self.name, checked_progress)
        if reconstruct:
            kept.result(checked_progress)
        return kept

    def _encoder_level(self, encoder_level: object) -> int | None:
        levels = self.model.num_levels
        return arguments.encoder_level(encoder_level, levels if levels > 1 else None, self.name)

    def _latents(self, rgb: np.ndarray, encoder_level: int | None) -> list[tuple[int | None, torch.Tensor]]:
        height, width = rgb.shape[:2]
        x = rgb_to_tensor(rgb, self.device)
        x = F.pad(x, (0, padded(width) - width, 0, padded(height) - height), mode=padding_mode(width, height))
        if encoder_level is not None:
            return [(encoder_level, self.model.analyse(x, encoder_level, self.execution))]
        latents = self.model.level_latents(x, run=self.execution)
        if self.model.num_levels == 1:  # one encoder: no level to report
            return [(None, latents[0])]
        return list(enumerate(latents))

    # -- decoding --------------------------------------------------------------------------------
    @per_call
    def decompress(self, data: bytes | BinaryIO, *, progress: Progress | None = None) -> Image.Image:
        """Decode a file made by this model and these weights into a PIL image ("RGB" or "L", "RGBA" or
        "LA" for a file with an alpha plane; the ICC profile the input had, if any, in
        ``image.info["icc_profile"]``, its EXIF block and XMP packet in ``["exif"]`` and ``["xmp"]``).

        ``data``: the file's bytes, or a binary file object (read from its position to its end).
        ``progress``: called with "entropy decoding", then "synthesis", as each starts.
        Raises TypeError for anything else, FormatError for any malformed, truncated, corrupt or hostile file, a file of another
        model or other weights, or one declaring more than ``max_pixels`` (padded) pixels.
        """
        data = file_bytes(data)
        progress = arguments.progress(progress)
        header, streams = decodable(data, self.spec, self.fingerprint, self.max_pixels, "Codec.max_pixels")
        options = decoding_options(len(streams), header.exact, header.skip_certain, header.exact_arithmetic)
        # Before the networks run: a damaged alpha plane is refused at once.
        alpha = None if header.alpha is None else decode_alpha(header.alpha, header.width, header.height)
        tell(progress, "entropy decoding")
        x_hat = self.model.decompress_latent(
            CodedLatent(streams, header.symbols_crc),
            padded(header.height),
            padded(header.width),
            q_index_to_scale(header.q_index),
            options,
            self.execution,
            progress,
        )
        rgb = tensor_to_rgb(x_hat[:, :, : header.height, : header.width])
        return rgb_to_pil(rgb, header.colour, header.icc_profile, header.exif, header.xmp, alpha)  # type: ignore[arg-type]


def load(
    name: str | None = None,
    device: str | torch.device | None = None,
    weights: str | Path | None = None,
    **options: Any,
) -> Codec:
    """Load a codec. No name: the best single-encoder model that ships trained weights (a scalable one
    is never the default: its encode runs several encoders). ``weights``: a .safetensors
    file or folder to use instead of the shipped weights (its metadata may supply the name).
    ``options``: :class:`Codec`'s keyword options (exact, substreams, precision, channels_last, threads).

    Raises UntrainedModelError for a model without shipped weights when ``weights`` is not given,
    ModelError for an unknown model or unusable weights, TypeError / ValueError for bad options.
    """
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a model name (see evc.MODELS) or None, got a {type(name).__name__}")
    if weights is None:
        shipped = shipped_model(name)
        source, name = shipped.weights_dir, shipped.name
    else:
        source = _weights_path(weights)
    model, spec, _ = load_model(source, name)
    return Codec(model, spec.name, device, **options)


def decompress(
    data: bytes | BinaryIO, device: str | torch.device | None = None, weights: str | Path | None = None
) -> Image.Image:
    """Decode any evc file, loading the model its header names (shipped weights unless ``weights``).
    ``data``: the file's bytes, or a binary file object (read from its position to its end).
    Raises TypeError for anything else, FormatError for a bad file, UntrainedModelError / ModelError
    when its model cannot be loaded."""
    data = file_bytes(data)
    _, _, made_by = parse_file(data)
    return load(made_by.name, device=device, weights=weights).decompress(data)

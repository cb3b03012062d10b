"""Decode and encode .evc files on ONNX Runtime, without torch: onnxruntime, numpy, constriction, Pillow.

    codec = OnnxCodec("evc-ss-onnx")          # a folder written by `evc export`
    image = codec.decompress(data)             # any file the PyTorch codec wrote with these weights
    data = codec.compress("photo.png", 0.5)    # a file the PyTorch codec decodes

It runs the exported networks (:mod:`evc.onnx.manifest`) in the order the PyTorch codec runs its own
(:meth:`evc.entropy.latent_codec.LatentCodec.compress` / ``decompress`` and the dual spatial prior's two
steps), with the same coder (:mod:`evc.entropy.coder`), stream layout (:mod:`evc.entropy.streams`),
container, header, image handling (:mod:`evc.coding`, :mod:`evc.image`) and rate mapping
(:mod:`evc.models.rates`, :mod:`evc.ratecontrol`).

What is exact: the entropy parameters are integer graphs that compute the PyTorch int8 path's integers,
so every file of format version 3 and later decodes to the same latent, integer for integer, on either
runtime, and the files this codec writes decode with the PyTorch codec. What is not: the transforms run
in float32 in each runtime's own summation order, so the pixels of a decoded image may differ by a
level, and an encoder's latent (hence its file) may differ from the PyTorch encoder's. Files with float
entropy parameters (``--arithmetic float``) or float64 fixed point (format versions 1-2) are refused.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from evc import arguments
from evc.alpha import decode_alpha
from evc.arguments import Rate
from evc.bitstream.container import FORMAT_VERSION, INT8_ARITHMETIC_SINCE, Header, pack
from evc.coding import EncodeResult, Probe, coded_probe, decodable, file_header, prepared_image, tell
from evc.entropy.coder import SymbolTables, decode_substreams, encode_substreams
from evc.entropy.streams import (
    PIXELS_PER_HYPER_LATENT,
    CodingOptions,
    check_encoded_symbols,
    checked_symbols,
    decoding_options,
    step_one_mask,
    symbols_crc,
    z_table_index,
)
from evc.errors import FormatError, ModelError
from evc.extras import require
from evc.fileinfo import file_bytes
from evc.image import DEFAULT_MAX_PIXELS, ImageInput, InputImage, network_input, padded, rgb_to_pil, to_pixels
from evc.models.rates import q_index_for_quality, q_index_to_scale
from evc.models.registry import get_spec
from evc.nn.tile_grid import TilePolicy, is_tiled, tile_windows
from evc.onnx.manifest import GRAPHS, TABLES, Manifest, unpack_pmfs
from evc.ratecontrol import Progress
from evc.threads import ThreadPolicy


# What each graph is, for the timing hook: the transforms, or h_a and the entropy-parameter networks.
_PARTS = {"g_a": "transforms", "g_s": "transforms", "h_a": "entropy networks", "hyper": "entropy networks",
          "step_two": "entropy networks"}


def _untimed(part: str) -> AbstractContextManager:
    return nullcontext()


def _symbols(rounded: np.ndarray) -> np.ndarray:
    """Integer-valued float symbols as int64; EVCError for a non-finite or out-of-range latent (as the
    PyTorch encoder refuses one)."""
    if rounded.size:
        check_encoded_symbols(float(np.abs(rounded).max()))
    return rounded.astype(np.int64)


def scale_index(sigma: np.ndarray, table: np.ndarray) -> np.ndarray:
    """:func:`evc.entropy.gaussian.scale_index` in numpy: for each sigma (float64, cast to float32 as
    there) the index of the smallest float32 ``table`` sigma >= it, the last entry beyond the table;
    uint8 (the tables number 256)."""
    index = np.searchsorted(table, sigma.astype(np.float32), side="left")
    return np.minimum(index, len(table) - 1).astype(np.uint8)


def _scaled(window: slice, scale: Fraction) -> slice:
    """A window in input pixels as the window of an output ``scale`` times the input's size (tiles and
    halos are aligned so that every scale gives whole pixels)."""
    return slice(int(window.start * scale), int(window.stop * scale))


class _Latent:
    """One image's latent as the coder sees it: y_hat and Q_step (float64, (1, C, h, w), the values the
    PyTorch codec's exact path computes), and the CRC-32 of its symbols so far."""

    def __init__(self) -> None:
        self.crc = 0
        self.y_hat: np.ndarray | None = None
        self.q_step: np.ndarray | None = None


class OnnxCodec:
    """One exported model on ONNX Runtime, ready to decode and encode images (see the module docstring).

    ``folder``: what `evc export` wrote. ``threads``: ONNX Runtime's threads per network, "auto" (the
    cores free now, :mod:`evc.threads`) or a count; default as :class:`evc.Codec`'s. ``substreams``
    (1-8): independent streams per coding step of the files it writes. ``providers``: ONNX Runtime
    execution providers (default: the CPU). ``tile_policy``: when a network runs in tiles, as
    :class:`evc.Codec`'s execution has it (default: the same); tiles never change the latent (the
    entropy networks are exact) and bound the memory of large images. ``timing``: a hook around the
    transforms ("transforms"), h_a and the entropy-parameter networks ("entropy networks") and the
    entropy coder ("coding"), for benchmarks, as :class:`evc.nn.execution.Execution`'s (default: none).

    Raises ModelError for a folder without a complete export, or one made for another format version
    (run `evc export` again), EVCError naming the extra when onnxruntime is not installed, ValueError
    for bad options.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        threads: str | int | None = None,
        substreams: int = 1,
        providers: list[str] | None = None,
    ) -> None:
        self._ort = require("onnxruntime", "onnx")  # the optional extra: named when a codec is made
        self.folder = Path(folder)
        self.manifest = manifest = Manifest.read(self.folder)
        if manifest.format_version != FORMAT_VERSION:
            raise ModelError(
                f"{self.folder} was exported by evc {manifest.evc_version} for format version {manifest.format_version}; "
                f"this evc reads and writes version {FORMAT_VERSION}: run `evc export {self.folder} --model "
                f"{manifest.model}` again"
            )
        self.spec = get_spec(manifest.model)
        if self.spec.model_id != manifest.model_id:
            raise ModelError(f"{self.folder}: model {manifest.model} has id {self.spec.model_id} here, not "
                             f"{manifest.model_id}: run `evc export {self.folder}` again")
        missing = [name for name in (*(f"{graph}.onnx" for graph in GRAPHS), TABLES) if not (self.folder / name).is_file()]
        if missing:
            raise ModelError(f"{self.folder} lacks {', '.join(missing)}: run `evc export "
                             f"{self.folder} --model {manifest.model}` again")
        self.fingerprint = manifest.weights_fingerprint
        self.options = CodingOptions(exact=True, substreams=arguments.substreams(substreams), arithmetic="int8")
        self.thread_policy = ThreadPolicy(threads)
        self._providers = providers or ["CPUExecutionProvider"]
        self._sessions: dict[str, Any] = {}
        self._tables: dict[str, SymbolTables] = {}
        self._max_pixels = DEFAULT_MAX_PIXELS
        self.tile_policy = TilePolicy()
        self.timing: Callable[[str], AbstractContextManager] = _untimed

    def _path(self, graph: str) -> Path:
        return self.folder / f"{graph}.onnx"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def device(self) -> str:
        """Where the networks run, in words (for the command line's --verbose lines)."""
        return f"ONNX Runtime {self._ort.__version__} ({', '.join(self._providers)})"

    def __repr__(self) -> str:
        return f"OnnxCodec({str(self.folder)!r}, model={self.name!r})"

    @property
    def max_pixels(self) -> int:
        """The pixel limit of encoding and decoding, counted on the size padded to multiples of 64, as
        :attr:`evc.Codec.max_pixels`."""
        return self._max_pixels

    @max_pixels.setter
    def max_pixels(self, value: int) -> None:
        self._max_pixels = arguments.max_pixels(value)

    # -- the networks and tables, loaded on first use (a decoder never loads the encoder's) -----------
    def _session(self, name: str) -> Any:
        if name not in self._sessions:
            options = self._ort.SessionOptions()
            options.intra_op_num_threads = self.thread_policy.choose()
            options.inter_op_num_threads = 1
            self._sessions[name] = self._ort.InferenceSession(
                str(self._path(name)), options, providers=self._providers
            )
        return self._sessions[name]

    def _run(self, name: str, outputs: list[str] | None = None, **inputs: np.ndarray) -> list[np.ndarray]:
        """The graph ``name``'s ``outputs`` (None: all), timed as its part."""
        with self.timing(_PARTS[name]):
            return self._run_tiled(name, outputs, inputs)

    def _run_tiled(self, name: str, outputs: list[str] | None, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """:meth:`_run`, tile by tile where the policy says so: each tile with the halo the export
        recorded, its outputs cropped back (each at its own scale)."""
        session = self._session(name)
        spatial = [key for key, value in inputs.items() if value.ndim == 4]
        height, width = inputs[spatial[0]].shape[-2:]
        input_pixel, halo = self.manifest.tiles[name]
        if not is_tiled(height, width, input_pixel, self.tile_policy):
            return session.run(outputs, inputs)
        tile = self.tile_policy.tile_pixels // input_pixel
        results: list[np.ndarray] = []
        for (rows, cols), crop, place in tile_windows(height, width, (tile, tile), (halo, halo), Fraction(1)):
            piece = {key: np.ascontiguousarray(value[:, :, rows, cols]) if key in spatial else value
                     for key, value in inputs.items()}
            got = session.run(outputs, piece)
            for i, out in enumerate(got):
                scale = Fraction(out.shape[-2], rows.stop - rows.start)  # this output's size / the input's
                if not results or len(results) <= i:
                    results.append(np.empty((*out.shape[:2], int(height * scale), int(width * scale)), out.dtype))
                results[i][:, :, _scaled(place[0], scale), _scaled(place[1], scale)] = (
                    out[:, :, _scaled(crop[0], scale), _scaled(crop[1], scale)])
        return results

    def _symbol_tables(self, kind: str) -> SymbolTables:
        """The coder's tables of y's Gaussian scales ("gaussian") or of z ("z"), from the export."""
        if not self._tables:
            with np.load(self.folder / TABLES) as stored:
                arrays = {key: stored[key] for key in stored.files}
            self._scale_table = arrays["scale_table"].astype(np.float32)
            self._tables = {prefix: SymbolTables(unpack_pmfs(arrays, prefix)) for prefix in ("gaussian", "z")}
        return self._tables[kind]

    def _encoded(self, values: np.ndarray, index: np.ndarray, tables: str, count: int) -> list[bytes]:
        """``count`` streams of the symbols ``values`` by the coder, with the ``tables`` ("z" or "gaussian")
        that ``index`` picks for each."""
        coder_tables = self._symbol_tables(tables)
        with self.timing("coding"):
            return encode_substreams(values, index, coder_tables, count, skip_certain=self.options.skip_certain)

    def _decoded(self, streams: list[bytes], index: np.ndarray, tables: str, skip_certain: bool) -> np.ndarray:
        """The symbols of ``streams`` (as :meth:`_encoded` wrote them), checked; FormatError for corrupt ones."""
        coder_tables = self._symbol_tables(tables)
        with self.timing("coding"):
            values = decode_substreams(streams, index, coder_tables, skip_certain=skip_certain)
        return checked_symbols(values)

    def _scale_index(self, sigma: np.ndarray) -> np.ndarray:
        self._symbol_tables("gaussian")  # loads the scale table with the others
        return scale_index(sigma, self._scale_table)

    # -- rates ------------------------------------------------------------------------------------------
    def q_index(self, quality: float) -> int:
        """The file's q index for a quality in [0, 1], from the same mapping and anchors as the PyTorch
        codec's. Raises TypeError or ValueError for anything else."""
        return q_index_for_quality(arguments.quality(quality), self.manifest.anchor_q_scales)

    # -- decoding ---------------------------------------------------------------------------------------
    def decompress(self, data: bytes | BinaryIO, *, progress: Progress | None = None) -> Image.Image:
        """Decode a file of this model and these weights, as :meth:`evc.Codec.decompress` does (same
        arguments, result and errors); also FormatError for a file whose entropy parameters are not in
        exact int8 arithmetic (written with ``--arithmetic float`` or ``float64``, or format versions 1-2),
        which only the PyTorch codec decodes."""
        data = file_bytes(data)
        progress = arguments.progress(progress)
        header, streams = self._decodable(data)
        # Before the networks run: a damaged alpha plane is refused at once.
        alpha = None if header.alpha is None else decode_alpha(header.alpha, header.width, header.height)
        tell(progress, "entropy decoding")
        latent = self._decode(header, streams)
        tell(progress, "synthesis")
        x_hat = self._synthesis(latent, header.q_index)
        rgb = to_pixels(x_hat[:, :, : header.height, : header.width])
        return rgb_to_pil(rgb, header.colour, header.icc_profile, header.exif, header.xmp, alpha)  # type: ignore[arg-type]

    def decode_latent(self, data: bytes | BinaryIO) -> tuple[np.ndarray, np.ndarray]:
        """The decoded latent of a file: (y_hat, Q_step), float64 (1, 192, H/16, W/16) each (padded
        size), the values the PyTorch codec's ``LatentCodec.decompress`` returns. Errors as
        :meth:`decompress`."""
        latent = self._decode(*self._decodable(file_bytes(data)))
        return latent.y_hat, latent.q_step  # type: ignore[return-value]

    def _decodable(self, data: bytes) -> tuple[Header, list[bytes]]:
        """The header and streams of a file this codec decodes (:func:`evc.coding.decodable`'s checks,
        and exact int8 entropy parameters); FormatError otherwise."""
        header, streams = decodable(data, self.spec, self.fingerprint, self.max_pixels, "OnnxCodec.max_pixels")
        if not header.exact or header.version < INT8_ARITHMETIC_SINCE:
            kind = "float32" if not header.exact else f"float64 fixed point (format version {header.version})"
            raise FormatError(f"the file's entropy parameters are in {kind} arithmetic, which only the PyTorch codec "
                              "decodes (ONNX Runtime decodes exact int8 files: format version 3 and later)")
        return header, streams

    def _decode(self, header: Header, streams: list[bytes]) -> _Latent:
        options = decoding_options(len(streams), header.exact, header.skip_certain, header.exact_arithmetic)
        z_shape = (1, self._symbol_tables("z").offsets.size, padded(header.height) // PIXELS_PER_HYPER_LATENT,
                   padded(header.width) // PIXELS_PER_HYPER_LATENT)
        z = self._decoded(streams[:1], z_table_index(z_shape), "z", options.skip_certain)
        latent = _Latent()
        latent.crc = symbols_crc(z, 0)
        count = options.substreams

        def decode_step(step: int, mu: np.ndarray, sigma: np.ndarray, mask: np.ndarray) -> np.ndarray:
            part = streams[1 + step * count : 1 + (step + 1) * count]
            values = self._decoded(part, self._scale_index(sigma[mask]), "gaussian", options.skip_certain)
            latent.crc = symbols_crc(values, latent.crc)
            symbols = np.zeros_like(mu)
            symbols[mask] = values
            return symbols

        self._dual_prior(latent, z.reshape(z_shape).astype(np.float64), decode_step)
        if latent.crc != header.symbols_crc:
            raise FormatError("decoded symbols differ from the encoder's (checksum mismatch): the file is damaged")
        return latent

    def _dual_prior(self, latent: _Latent, z_hat: np.ndarray,
                    step_symbols: Callable[[int, np.ndarray, np.ndarray, np.ndarray], np.ndarray]) -> None:
        """The entropy parameters from z_hat and the dual spatial prior's two steps (as
        :class:`evc.entropy.dual_prior.DualSpatialPrior` runs them), into ``latent``: ``step_symbols(step,
        mu, sigma, mask)`` codes or decodes a step's symbols (full-size, zero outside ``mask``; Q_step is
        in ``latent`` by then); y_hat is formed from them as the PyTorch codec forms it (``symbols + mu``
        inside the mask, in float64)."""
        q_step, sigma, mu = self._run("hyper", ["q_step", "sigma", "mu"], z_hat=z_hat)
        latent.q_step = q_step
        mask = step_one_mask(*mu.shape[1:])
        y_hat1 = np.where(mask, step_symbols(0, mu, sigma, mask) + mu, 0.0)
        mu2, sigma2 = self._run("step_two", ["mu2", "sigma2"], y_hat_step1=y_hat1, mu=mu, sigma=sigma, q_step=q_step)
        y_hat2 = np.where(~mask, step_symbols(1, mu2, sigma2, ~mask) + mu2, 0.0)
        latent.y_hat = y_hat1 + y_hat2

    def _synthesis(self, latent: _Latent, q_index: int) -> np.ndarray:
        (x_hat,) = self._run("g_s", None, y_hat=latent.y_hat, q_step=latent.q_step,
                             q_scale=np.array(q_index_to_scale(q_index), dtype=np.float32))
        return x_hat

    # -- encoding ---------------------------------------------------------------------------------------
    def compress(
        self, image: ImageInput, quality: float | None = None, *, q_index: int | None = None,
        target_bpp: float | None = None, target_psnr: float | None = None, encoder_level: int | None = None,
        strip: bool = False, progress: Progress | None = None,
    ) -> bytes:
        """Code an image into the bytes of an .evc file, as :meth:`evc.Codec.compress` does (same
        arguments, rate search and errors; a tensor needs torch, every other input does not)."""
        rate = arguments.rate(quality, q_index, target_bpp, target_psnr)
        return self._coded(image, rate, encoder_level, strip, progress, reconstruct=False).data

    def encode(
        self, image: ImageInput, quality: float | None = None, *, q_index: int | None = None,
        target_bpp: float | None = None, target_psnr: float | None = None, encoder_level: int | None = None,
        strip: bool = False, progress: Progress | None = None,
    ) -> EncodeResult:
        """Like :meth:`compress`, also returning the reconstruction the decoder will produce, its q index,
        bpp and PSNR (:class:`evc.EncodeResult`)."""
        rate = arguments.rate(quality, q_index, target_bpp, target_psnr)
        return self._coded(image, rate, encoder_level, strip, progress, reconstruct=True).result()

    def _coded(
        self, image: ImageInput, rate: Rate, encoder_level: object, strip: object, progress: object, reconstruct: bool
    ) -> _Probe:
        """The one path of :meth:`compress` and :meth:`encode`, as :meth:`evc.Codec.compress` runs it: the
        image coded at the checked ``rate``; ``reconstruct``: with the decoder's reconstruction."""
        levels = self.manifest.levels
        level = arguments.encoder_level(encoder_level, levels if levels > 1 else None, self.name)
        progress = arguments.progress(progress)
        # stacklevel: past this method and compress / encode, to the caller's line.
        source, alpha_block = prepared_image(image, strip, self.options.arithmetic, self.max_pixels, stacklevel=3)
        tell(progress, "analysis")
        x = network_input(source.rgb)
        if levels == 1:
            latents: list[tuple[int | None, np.ndarray]] = [(None, self._run("g_a", ["y"], x=x)[0])]
        else:  # ONNX Runtime runs only the encoders the requested levels need
            wanted = range(levels) if level is None else [level]
            outputs = self._run("g_a", [f"y{k}" for k in wanted], x=x)
            latents = list(zip(wanted, outputs))
        if not rate.is_target:
            tell(progress, "entropy coding")

        def probe(q: int, latent: tuple[int | None, np.ndarray]) -> _Probe:
            return _Probe(self, latent[1], source, alpha_block, q, latent[0])

        kept = coded_probe(rate, latents, probe, self.manifest.anchor_q_scales, self.name, progress)
        if reconstruct:
            kept.result()
        return kept

    def _code_latent(self, y: np.ndarray, q_index: int) -> tuple[list[bytes], _Latent]:
        """The streams of the latent ``y`` at ``q_index`` and what the decoder will decode from them, as
        :meth:`evc.entropy.latent_codec.LatentCodec.compress` codes them."""
        y_scaled, z = self._run("h_a", ["y_scaled", "z"], y=y, q_scale=np.array(q_index_to_scale(q_index), dtype=np.float32))
        z_hat = np.round(z) + np.float32(0.0)  # + 0.0 turns -0.0 into 0.0, as the decoder has it
        z_values = _symbols(z_hat).ravel()
        streams = self._encoded(z_values, z_table_index(z_hat.shape), "z", 1)
        latent = _Latent()
        latent.crc = symbols_crc(z_values, 0)
        scaled = y_scaled.astype(np.float64)

        def encode_step(step: int, mu: np.ndarray, sigma: np.ndarray, mask: np.ndarray) -> np.ndarray:
            # The latent in units of Q_step, rounded about mu, as the PyTorch encoder computes it.
            symbols = np.round(scaled / latent.q_step - mu) + 0.0
            values = _symbols(symbols[mask])
            streams.extend(self._encoded(values, self._scale_index(sigma[mask]), "gaussian", self.options.substreams))
            latent.crc = symbols_crc(values, latent.crc)
            return np.where(mask, symbols, 0.0)

        self._dual_prior(latent, z_hat.astype(np.float64), encode_step)
        return streams, latent


class _Probe(Probe):
    """One latent coded at one q index (:class:`evc.coding.Probe`), here with the exported g_s."""

    def __init__(self, codec: OnnxCodec, y: np.ndarray, source: InputImage, alpha_block: bytes | None,
                 q_index: int, level: int | None) -> None:
        self._codec, self._y, self.source = codec, y, source
        self.q_index, self.level = q_index, level
        streams, self._latent = codec._code_latent(y, q_index)
        header = file_header(codec.spec, codec.fingerprint, codec.options, source, alpha_block, q_index,
                             self._latent.crc)
        self.data = pack(header, streams)
        self._result: EncodeResult | None = None

    def release(self) -> None:
        self._latent = None  # type: ignore[assignment]

    def result(self) -> EncodeResult:
        if self._result is None:
            if self._latent is None:
                _, self._latent = self._codec._code_latent(self._y, self.q_index)
            height, width = self.source.rgb.shape[:2]
            x_hat = self._codec._synthesis(self._latent, self.q_index)
            self._result = self._encode_result(to_pixels(x_hat[:, :, :height, :width]))
            self._latent = None  # type: ignore[assignment]
        return self._result

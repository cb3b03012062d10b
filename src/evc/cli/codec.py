"""`evc encode | decode | info | models`: the codec commands.

"-" as a file name is standard input or output; output files appear complete or not at all
(evc.cli.files). ``encode`` and ``decode`` take INPUT OUTPUT, or any number of inputs with
``--out-dir DIR`` (a batch): the model is then loaded once and every file coded in the same process,
since starting (imports, weights, the exact networks) costs several times what coding one photo does.

``info`` and ``models`` need neither torch nor a model: what imports torch (evc.codec) is imported
inside the commands that code, so these two answer quickly (tests/test_startup.py keeps it so).
``encode`` and ``decode`` with ``--onnx DIR`` run on ONNX Runtime from an export that ``export`` wrote
(evc.onnx.runtime) and never import torch (tests/test_onnx.py keeps it so).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import evc
from evc import arguments
from evc.arguments import DEFAULT_MAX_PIXELS
from evc.cli.common import (
    EXIT_OK, EXIT_USAGE, USER_ERRORS, CLIError, add_option, checked, load_codec, log, one_line
)
from evc.cli.files import OutputExistsError, check_output, write_error, write_output
from evc.cli.progress import DELAY as PROGRESS_DELAY, ImageProgress
from evc.fileinfo import parse_file
from evc.icc import profile_description
from evc.models.registry import get_spec

if TYPE_CHECKING:  # Pillow too is imported by the commands that write images: `evc models` needs none of it
    from PIL import Image

STDIO = "-"
# Image formats whose extensions Pillow may not know (plugins, or none yet), for the warning on an
# .evc output named like an image; Pillow's registered extensions count too.
OTHER_IMAGE_EXTENSIONS = {".avif": "AVIF", ".heic": "HEIC", ".heif": "HEIF", ".jxl": "JPEG XL"}
# Pillow's format ids as people write them.
FORMAT_NAMES = {"WEBP": "WebP", "JPEG2000": "JPEG 2000"}
# Lossy formats whose Pillow writers take quality=1..100; evc's default is high, not Pillow's 75.
LOSSY_FORMATS = {"JPEG": "JPEG", "WEBP": "WebP", "AVIF": "AVIF"}
DEFAULT_OUTPUT_QUALITY = 95


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise CLIError(f"input {path} not found" if not path.exists() else f"input {path} is not a file")


def _stdin_bytes(what: str) -> bytes:
    if sys.stdin is None or sys.stdin.isatty():  # reading would wait for typing: refuse instead
        raise CLIError(f"input '-' reads {what} from standard input, which is a terminal; pipe or redirect a file into it")
    return sys.stdin.buffer.read()


def _read_image(name: str, max_pixels: int | None) -> Image.Image:
    """The input image, opened like the API opens paths (evc.image.open_image), or read from stdin."""
    from evc.image import open_image

    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    if name == STDIO:
        source = io.BytesIO(_stdin_bytes("an image"))
        source.name = "standard input"
        return open_image(source, limit)
    return open_image(Path(name), limit)


def _read_bytes(name: str) -> bytes:
    if name == STDIO:
        return _stdin_bytes("an .evc file")
    path = Path(name)
    _require_file(path)
    return path.read_bytes()


def _check_output(name: str, force: bool) -> None:
    if name == STDIO:
        if sys.stdout.isatty():
            raise CLIError("output '-' writes binary data to standard output, which is a terminal; redirect it")
        return
    check_output(Path(name), force)


def _write(name: str, data: bytes, force: bool) -> None:
    """Write the finished output: to stdout for '-', else through a temporary file moved into place.
    A failed write is an error naming the output (evc.cli.files.write_error)."""
    if name == STDIO:
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except BrokenPipeError:  # the reader left: main stops quietly
            raise
        except OSError as exc:  # e.g. redirected to a file on a full disk
            raise write_error("standard output", exc) from None
        return
    write_output(Path(name), lambda tmp: tmp.write_bytes(data), force)


def _image_extension_warning(name: str) -> None:
    """Warn when an .evc output is named like another image format (photo.webp): viewers and tools
    would take it for one. The file is written all the same: the name is the user's choice."""
    from PIL import Image

    path = Path(name)
    suffix = path.suffix.lower()
    # Our names first: a plugin registered by then (pillow-heif) would call .heic "HEIF".
    fmt = OTHER_IMAGE_EXTENSIONS.get(suffix) or Image.registered_extensions().get(suffix)
    if name == STDIO or fmt is None or fmt == "EVC":
        return
    warnings.warn(f"{path} will hold an EVC file, not {FORMAT_NAMES.get(fmt, fmt)}; name it {path.with_suffix('.evc')}")


def _writable_format(suffix: str) -> str | None:
    """The Pillow format that files ending in ``suffix`` are written in; None if Pillow writes none."""
    from PIL import Image

    fmt = Image.registered_extensions().get(suffix.lower())
    # evc's own Pillow plugin (registered in this process by a caller of main()) is no decode target.
    return fmt if fmt is not None and fmt in Image.SAVE and fmt != "EVC" else None


def _image_format(name: str) -> str:
    """The format of an output file, from its extension."""
    path = Path(name)
    fmt = _writable_format(path.suffix)
    if fmt is None:
        raise CLIError(f"cannot write {path}: unknown image extension {path.suffix!r} (use .png, .ppm, .tiff, .bmp, ...)")
    return fmt


# -- one file or a batch ---------------------------------------------------------------------------


def _single_files(args: argparse.Namespace) -> tuple[str, str]:
    """INPUT and OUTPUT of the one-file form (no --out-dir)."""
    where = f"see 'evc {args.command} --help'"
    if len(args.files) == 1:
        raise CLIError(f"the following arguments are required: OUTPUT (or give --out-dir DIR; {where})")
    if len(args.files) > 2:
        raise CLIError(f"{len(args.files)} files given: evc {args.command} takes INPUT OUTPUT, "
                       f"or INPUT [INPUT ...] --out-dir DIR ({where})")
    source, target = args.files
    return source, target


@dataclass(frozen=True)
class _Job:
    """One input of a batch and the file it writes."""

    source: str
    target: Path


def _batch_jobs(args: argparse.Namespace, suffix: str) -> list[_Job]:
    """Every input with its output DIR/<stem><suffix>, all checked before anything is coded, so that a
    refused batch writes nothing: no '-', no two inputs writing one file, no existing output unless
    --force. DIR itself may be missing (it is made when the first output is written)."""
    folder = Path(args.out_dir)
    if STDIO in args.files or args.out_dir == STDIO:
        raise CLIError("'-' (standard input or output) does not go with --out-dir: name the input files")
    reachable = next(p for p in (folder, *folder.parents) if p.exists())  # "." or "/" at the latest
    if not reachable.is_dir():
        raise CLIError(f"--out-dir {folder}: {reachable} is not a folder")
    jobs = [_Job(name, folder / f"{Path(name).stem}{suffix}") for name in args.files]
    writers: dict[str, str] = {}
    for job in jobs:
        key = job.target.name.casefold()  # one file on case-insensitive file systems (macOS, Windows)
        if key in writers:
            raise CLIError(f"inputs {writers[key]} and {job.source} would both write {job.target} "
                           "(the same name in --out-dir); rename one or code them in separate runs")
        writers[key] = job.source
    if folder.is_dir():
        existing = []
        for job in jobs:
            try:
                check_output(job.target, args.force)
            except OutputExistsError:
                existing.append(job.target)
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise CLIError(f"output {existing[0]} exists{more}; pass --force to overwrite; nothing was written")
    return jobs


@contextmanager
def _warnings_named(source: str) -> Iterator[None]:
    """Warnings while one file of a batch is coded, shown with its name as its errors are."""
    show = warnings.showwarning
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *where: show(f"{source}: {message}", *where)
        yield


def _run_batch(args: argparse.Namespace, jobs: list[_Job], code: Callable[[_Job], None], start: float) -> int:
    """``code`` every job in turn. A file that fails is reported ("evc: error: FILE: ...") and the others
    go on; the exit code is then 2. ``start``: when the command began (for the --verbose total)."""
    failed = 0
    for job in jobs:
        try:
            with _warnings_named(job.source):
                code(job)
        except USER_ERRORS as exc:  # this file's fault (main reports the same as the user's)
            failed += 1
            print(f"evc: error: {job.source}: {one_line(exc)}", file=sys.stderr)
    elapsed = time.perf_counter() - start
    log(args, f"{len(jobs) - failed} of {len(jobs)} files written in {elapsed:.2f} s, loading included "
              f"({elapsed / len(jobs):.2f} s per file)")
    if failed:
        print(f"evc: error: {failed} of {len(jobs)} inputs failed (the others were written)", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _write_in(job: _Job, data: bytes, force: bool) -> None:
    """Write a batch's output, making --out-dir (and its parents) with the first one."""
    try:
        job.target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(job.target, exc) from None
    _write(str(job.target), data, force)


# Options of encode and decode that choose how PyTorch runs: with --onnx each must keep its default,
# which _add_coding_options records from the parser's own declarations (args.pytorch_defaults).
_PYTORCH_OPTIONS = ("weights", "device", "precision", "channels_last", "arithmetic")


def _check_onnx_options(args: argparse.Namespace) -> None:
    """With --onnx, refuse the options that only the PyTorch codec has (the export fixes the weights,
    and ONNX Runtime runs the networks as they were exported, the entropy parameters in int8)."""
    given = [name for name, unset in args.pytorch_defaults.items() if getattr(args, name, unset) != unset]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise CLIError(f"{flags} {'does' if len(given) == 1 else 'do'} not go with --onnx: the export in {args.onnx} "
                       "holds the weights, and ONNX Runtime codes in exact int8 arithmetic on the CPU")


def _onnx_codec(args: argparse.Namespace, name: str | None) -> Any:
    """The ONNX Runtime codec of the export in --onnx DIR; CLIError when ``name`` (--model, or the
    model a file names) is another model than the export's."""
    from evc.onnx.runtime import OnnxCodec

    codec = OnnxCodec(args.onnx, threads=args.threads, substreams=getattr(args, "substreams", 1))
    if args.max_pixels is not None:
        codec.max_pixels = args.max_pixels
    other = None if name is None else get_spec(name).name
    if other is not None and other != codec.name:
        raise CLIError(f"the export in {args.onnx} is of {codec.name}, not {other}: "
                       f"run `evc export DIR --model {other}` and give that DIR to --onnx")
    return codec


class _Codecs:
    """The codecs of one command, loaded once per model: every file of a batch is coded with the same
    one, so the weights are read and the exact networks prepared once. A model that failed to load
    fails again at once for the next file that needs it. With --onnx, the ONNX Runtime codec of that
    export (evc.onnx.runtime), which has the same methods."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._loaded: dict[str | None, evc.Codec | Exception] = {}
        if args.onnx is not None:
            _check_onnx_options(args)

    def __call__(self, name: str | None) -> evc.Codec:
        if name not in self._loaded:
            start = time.perf_counter()
            try:
                codec = load_codec(self.args, name) if self.args.onnx is None else _onnx_codec(self.args, name)
            except USER_ERRORS as exc:
                self._loaded[name] = exc
                raise
            log(self.args, f"loaded {codec.name} on {codec.device} in {time.perf_counter() - start:.2f} s")
            self._loaded[name] = codec
        loaded = self._loaded[name]
        if isinstance(loaded, Exception):
            raise loaded
        return loaded


# -- encode ----------------------------------------------------------------------------------------


def cmd_encode(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    codecs = _Codecs(args)
    if args.out_dir is None:
        source, target = _single_files(args)
        _check_output(target, args.force)
        _image_extension_warning(target)
        with _read_image(source, args.max_pixels) as image:  # multi-frame files stay open until closed
            data, line = _encoded(args, codecs(args.model), image, source, target)
        _write(target, data, args.force)
        log(args, line)
        return EXIT_OK
    jobs = _batch_jobs(args, ".evc")
    codec = codecs(args.model)  # before any file: a model that cannot load stops the batch

    def encode_file(job: _Job) -> None:
        with _read_image(job.source, args.max_pixels) as image:
            data, line = _encoded(args, codec, image, job.source, str(job.target))
        _write_in(job, data, args.force)
        log(args, line)

    return _run_batch(args, jobs, encode_file, start)


def _encoded(
    args: argparse.Namespace, codec: evc.Codec, image: Image.Image, source: str, target: str
) -> tuple[bytes, str]:
    """The .evc file of ``image`` with the command's rate options, and its --verbose line."""
    rate = dict(
        q_index=args.q_index,
        target_bpp=args.target_bpp,
        target_psnr=args.target_psnr,
        encoder_level=args.encoder_level,
        strip=args.strip,
    )
    if image.info.get("icc_profile"):
        described = profile_description(image.info["icc_profile"]) or "unnamed"
        log(args, f"{source}: ICC colour profile ({described}) carried in the file and restored on decoding")
    start = time.perf_counter()
    with ImageProgress(f"encoding {source} {image.width}x{image.height}", args.quiet) as progress:
        if not args.verbose:  # the bytes only: no reconstruction unless the rate search needs one
            return codec.compress(image, args.quality, progress=progress, **rate), ""
        result = codec.encode(image, args.quality, progress=progress, **rate)
    elapsed = time.perf_counter() - start
    level = "" if result.encoder_level is None else f", encoder level {result.encoder_level}"
    return result.data, (
        f"{source} ({result.width}x{result.height}) -> {target}: {len(result.data)} bytes, "
        f"{result.bpp:.4f} bpp, {result.psnr:.2f} dB, q index {result.q_index}{level}, {elapsed:.2f} s"
    )


def _saved(image: Image.Image, fmt: str, options: dict[str, Any]) -> tuple[bytes, Image.Image | None]:
    """``image`` written in ``fmt``, and that file read back (None when Pillow cannot read the format)."""
    from PIL import Image

    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    data = buffer.getvalue()
    try:
        written = Image.open(io.BytesIO(data))
        written.load()
    except Exception:  # a write-only format (e.g. PDF): nothing to check against
        return data, None
    return data, written


def _metadata_options(fmt: str, metadata: dict[str, bytes]) -> dict[str, Any]:
    """Pillow's save options that write the decoded image's EXIF block and XMP packet in ``fmt``: Pillow
    takes ``exif=`` and ``xmp=`` for JPEG and WebP, ``exif=`` for PNG, whose XMP goes in an iTXt chunk;
    other formats ignore them (the caller checks what the written file holds)."""
    options: dict[str, Any] = dict(metadata)
    if "exif" in options and not options["exif"].startswith(b"Exif\x00\x00"):
        # A block read from WebP or TIFF lacks the prefix that JPEG needs (PNG and WebP writers drop it).
        options["exif"] = b"Exif\x00\x00" + options["exif"]
    if fmt == "TIFF":  # Pillow would turn the block into TIFF tags, not keep it: leave it out
        options.pop("exif", None)
    xmp = options.pop("xmp", None) if fmt == "PNG" else None
    if xmp is not None:
        try:
            text = xmp.decode("utf-8")
        except UnicodeDecodeError:  # an iTXt chunk holds UTF-8 text only
            return options
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", text)
        options["pnginfo"] = info
    return options


def _exif_body(block: object) -> object:
    """An EXIF block without the "Exif\\0\\0" prefix, which JPEG keeps and WebP does not."""
    if isinstance(block, str):
        block = block.encode("utf-8")
    if isinstance(block, bytes) and block.startswith(b"Exif\x00\x00"):
        return block[6:]
    return block


def _lossy_only_error(fmt: str) -> CLIError:
    return CLIError(f"--output-quality applies to lossy formats ({', '.join(LOSSY_FORMATS.values())}), not {fmt}")


def _alpha_error(fmt: str) -> CLIError:
    return CLIError(f"{fmt} files as evc writes them cannot hold the image's transparency (alpha plane): "
                    "decode it to PNG, WebP or TIFF; nothing was written")


def _alpha_kept(image: Image.Image, written: Image.Image | None) -> bool:
    """Whether the written file holds ``image``'s alpha plane exactly (True when it has none, or when the
    file cannot be read back, which is warned anyway)."""
    import numpy as np

    if "A" not in image.getbands() or written is None:
        return True
    alpha = written.getchannel("A") if "A" in written.getbands() else written.convert("RGBA").getchannel("A")
    return written.size == image.size and np.array_equal(np.asarray(alpha), np.asarray(image.getchannel("A")))


def encode_output_image(image: Image.Image, fmt: str, output_quality: int | None) -> bytes:
    """The decoded image as a file of format ``fmt``, with a warning for whatever the format changes.

    Lossy formats (JPEG, WebP, AVIF) are written at ``output_quality`` (default 95; JPEG in 4:4:4).
    A format that cannot hold the image's ICC profile gets the image converted to sRGB (warned), so its
    colours do not shift; any other difference between the file's pixels and the decoded ones is warned.
    An image with alpha ("RGBA", "LA") is written only where the file keeps its alpha exactly (PNG,
    WebP, TIFF): other formats (JPEG, PPM, ...) are refused.
    Raises CLIError for ``output_quality`` with a lossless format, or for a format that loses the alpha.
    """
    import numpy as np

    from evc.image import to_srgb

    options: dict[str, Any] = {}
    if fmt in LOSSY_FORMATS:
        options["quality"] = DEFAULT_OUTPUT_QUALITY if output_quality is None else output_quality
        if fmt == "JPEG":
            options["subsampling"] = 0  # 4:4:4: keep the decoded colour resolution
    elif output_quality is not None:
        raise _lossy_only_error(fmt)
    profile = image.info.get("icc_profile")
    if profile:
        options["icc_profile"] = profile
    metadata = {key: image.info[key] for key in ("exif", "xmp") if image.info.get(key)}
    options.update(_metadata_options(fmt, metadata))
    try:
        data, written = _saved(image, fmt, options)
    except (OSError, ValueError, KeyError):
        if "A" in image.getbands():  # Pillow's "cannot write mode RGBA as JPEG", and the like
            raise _alpha_error(fmt) from None
        raise
    if profile and written is not None and written.info.get("icc_profile") != profile:
        described = profile_description(profile) or "unnamed"
        converted = to_srgb(image)
        options.pop("icc_profile")
        if converted is None:
            warnings.warn(f"{fmt} files cannot hold the image's ICC colour profile ({described}), which "
                          "LittleCMS cannot read to convert the colours: written without it, colours may look shifted")
        else:
            warnings.warn(f"{fmt} files cannot hold the image's ICC colour profile ({described}): converted to sRGB")
            image = converted
        data, written = _saved(image, fmt, options)
    if not _alpha_kept(image, written):
        raise _alpha_error(fmt)
    if written is None:
        warnings.warn(f"evc cannot read {fmt} files back to check that they hold the decoded pixels exactly")
        return data
    lost = [name for key, name in (("exif", "EXIF"), ("xmp", "XMP")) if key in metadata
            and _exif_body(written.info.get(key)) != _exif_body(metadata[key])]
    if lost:
        warnings.warn(f"{fmt} files as evc writes them do not keep the image's {' and '.join(lost)} metadata "
                      "byte for byte (PNG, JPEG and WebP do)")
    same = written.size == image.size and np.array_equal(
        np.asarray(written.convert(image.mode)), np.asarray(image)
    )
    if fmt in LOSSY_FORMATS:
        if output_quality is None:
            warnings.warn(f"{LOSSY_FORMATS[fmt]} is lossy: written at quality {options['quality']} "
                          "(choose with --output-quality; PNG keeps the decoded pixels exactly)")
    elif not same:
        warnings.warn(f"{fmt} files cannot hold the decoded pixels exactly (mode {image.mode}): "
                      "the written image differs; PNG keeps them exactly")
    return data


def cmd_decode(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    codecs = _Codecs(args)
    if args.out_dir is None:
        source, target = _single_files(args)
        if args.format is not None and target != STDIO:
            raise CLIError("--format goes with --out-dir or OUTPUT - (standard output); "
                           "a file OUTPUT's extension chooses its format")
        fmt = _output_format(args, _format_option(args)[1] if target == STDIO else _image_format(target))
        _check_output(target, args.force)
        data, line = _decoded(args, codecs, fmt, _read_bytes(source), source, target)
        _write(target, data, args.force)
        log(args, line)
        return EXIT_OK
    suffix, fmt = _format_option(args)
    fmt = _output_format(args, fmt)
    jobs = _batch_jobs(args, suffix)
    if args.onnx is None:
        arguments.device(args.device)  # an unusable device stops the batch before any file, not at each

    def decode_file(job: _Job) -> None:
        data, line = _decoded(args, codecs, fmt, _read_bytes(job.source), job.source, str(job.target))
        _write_in(job, data, args.force)
        log(args, line)

    return _run_batch(args, jobs, decode_file, start)


def _format_option(args: argparse.Namespace) -> tuple[str, str]:
    """The extension and Pillow format --format chooses (default png: lossless, and what standard output
    has always carried)."""
    suffix = "." + (args.format or "png").lstrip(".").lower()
    fmt = _writable_format(suffix)
    if fmt is None:
        raise CLIError(f"--format {args.format}: unknown image extension (use png, ppm, tiff, bmp, ...)")
    return suffix, fmt


def _output_format(args: argparse.Namespace, fmt: str) -> str:
    """``fmt``, once --output-quality is known to fit it."""
    if args.output_quality is not None and fmt not in LOSSY_FORMATS:
        raise _lossy_only_error(fmt)
    return fmt


def _decoded(
    args: argparse.Namespace, codecs: _Codecs, fmt: str, data: bytes, source: str, target: str
) -> tuple[bytes, str]:
    """The image file (format ``fmt``) of the .evc file ``data``, and its --verbose line."""
    # Validate the container before any model is loaded (file_info would also load weights for the quality).
    header, _, made_by = parse_file(data)
    codec = codecs(made_by.name)
    start = time.perf_counter()
    with ImageProgress(f"decoding {source} {header.width}x{header.height}", args.quiet) as progress:
        image = codec.decompress(data, progress=progress)
    elapsed = time.perf_counter() - start
    return encode_output_image(image, fmt, args.output_quality), (
        f"{source} -> {target} ({header.width}x{header.height} {image.mode}), {elapsed:.2f} s"
    )


def cmd_info(args: argparse.Namespace) -> int:
    info = evc.file_info(_read_bytes(args.file), weights=args.weights)
    q = info.q_index
    if info.quality_range is not None:
        # The file stores the q index only: show every setting that gives it, so the user finds theirs.
        low, high = info.quality_range
        quality = f"{low:g} (q index {q})" if low == high else f"{low:g}-{high:g} (every quality in this range codes to q index {q})"
    elif info.quality is not None:
        side = ("above 1", "more", "highest") if info.quality > 1 else ("below 0", "less", "lowest")
        quality = f"{side[0]} (q index {q}: {side[1]} rate than the {side[2]}-rate anchor the model was trained at)"
    elif args.weights:
        quality = f"unknown: the file was made with other weights than {args.weights} (q index {q})"
    elif evc.MODELS[info.model].has_weights():
        quality = f"unknown: the file was made with other weights than the shipped ones (give them with --weights; q index {q})"
    else:
        quality = f"unknown: no weights ship for this model (give the file's weights with --weights; q index {q})"
    if info.icc_profile:
        profile = f"ICC, {profile_description(info.icc_profile) or 'unnamed'} ({len(info.icc_profile)} bytes)"
    else:
        profile = "none (sRGB)"
    metadata = ", ".join(f"{name} ({len(block)} bytes)" for name, block in (("EXIF", info.exif), ("XMP", info.xmp))
                         if block) or "none"
    rows = [
        ("file", args.file),
        ("model", info.model),
        ("size", f"{info.width}x{info.height}"),
        ("colour", "grayscale" if info.colour == "L" else "RGB"),
        ("profile", profile),
        ("metadata", metadata),
        ("alpha", "none" if info.alpha_bytes is None
                  else f"lossless alpha plane ({info.alpha_bytes} bytes, decodes as {info.colour}A)"),
        ("quality", quality),
        ("bytes", str(info.size_bytes)),
        ("bpp", f"{info.bpp:.4f}"),
        ("format", f"version {info.format_version}, weights {info.weights_fingerprint:08x}"),
        ("coding", (f"exact {info.arithmetic} arithmetic (decodes on any device)" if info.exact
                    else "float arithmetic (decodes on the kind of device that wrote it)")
                   + f", {info.substreams} sub-stream{'s' if info.substreams > 1 else ''} per step"),
    ]
    for key, value in rows:
        print(f"{key:<8} {value}")
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from evc.models.card import ModelCard, format_cards
    from evc.models.summary import FIGURES, format_model_table

    if not FIGURES.keys() >= evc.MODELS.keys():  # a model added since the figures were stored: count them
        from evc.eval.complexity import format_model_table
    for line in format_model_table(evc.MODELS):
        print(line)
    cards = [ModelCard.read(spec.weights_dir) for spec in evc.MODELS.values() if spec.has_weights()]
    for line in format_cards(cards):
        print(line)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    if folder.exists() and not folder.is_dir():
        raise CLIError(f"{folder} is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not args.force:
        raise CLIError(f"{folder} is not empty; pass --force to write the export into it (its files are replaced)")
    from evc.onnx.export import export

    start = time.perf_counter()
    manifest = export(folder, args.model, args.weights)
    log(args, f"exported {manifest.model} (weights {manifest.weights_fingerprint:08x}, format version "
              f"{manifest.format_version}) to {folder} in {time.perf_counter() - start:.1f} s")
    return EXIT_OK


def _add_coding_options(parser: argparse.ArgumentParser) -> None:
    """The options of the commands that load a codec to code an image (encode, decode)."""
    parser.add_argument("--onnx", metavar="DIR",
                        help="code on ONNX Runtime, without PyTorch, with the export `evc export DIR` wrote "
                             "(pip install 'evc[onnx]'); its latents are the PyTorch codec's, integer for integer")
    add_option(parser, "--weights")
    add_option(parser, "--device")
    add_option(parser, "--threads")
    parser.add_argument("--precision", type=checked(arguments.precision, str), default="float32",
                        metavar="{" + ",".join(arguments.PRECISIONS) + "}",
                        help="arithmetic of the image transforms (float16 + --channels-last: the GPU fast path); "
                             "never changes which files decode")
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory layout for the transforms")
    parser.add_argument("--max-pixels", type=checked(arguments.max_pixels), metavar="N",
                        help="refuse images (or files declaring images) over N pixels once padded to multiples of 64 "
                             f"(default {DEFAULT_MAX_PIXELS})")
    # After the command's own PyTorch options (encode: --arithmetic), so that each default is the declared one.
    parser.set_defaults(pytorch_defaults={name: parser.get_default(name) for name in _PYTORCH_OPTIONS})
    parser.add_argument("--verbose", "-v", action="store_true", help="a line per file with its timings on stderr")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress line (one shows on stderr when it is a terminal and an image takes "
                             f"over {PROGRESS_DELAY:g} s: the step running, a target search's q indices, the time)")


def _usage(command: str) -> str:
    """Both forms of encode / decode (argparse's own line would show one FILE list for both)."""
    return f"%(prog)s INPUT OUTPUT [options]\n       evc {command} INPUT [INPUT ...] --out-dir DIR [options]"


def register(commands: argparse._SubParsersAction) -> None:
    """Add the codec commands to the `evc` parser's subcommands."""
    enc = commands.add_parser("encode", help="compress an image into an .evc file", usage=_usage("encode"))
    enc.add_argument("files", nargs="+", metavar="FILE",
                     help="INPUT OUTPUT: an image file and the .evc file to write (- for standard input / output); "
                          "with --out-dir: any number of image files")
    add_option(enc, "--out-dir",
               help="write DIR/<name>.evc for each INPUT, loading the model once (DIR is made if missing)")
    add_option(enc, "--model")
    rate = enc.add_mutually_exclusive_group()
    rate.add_argument("--quality", type=checked(arguments.quality), help="0 (smallest) .. 1 (best); default 0.5")
    rate.add_argument("--target-bpp", type=checked(arguments.target_bpp), metavar="X",
                      help="best quality within X bits per pixel")
    rate.add_argument("--target-psnr", type=checked(arguments.target_psnr), metavar="Y",
                      help="smallest file reaching Y dB PSNR")
    rate.add_argument("--q-index", type=checked(arguments.q_index), metavar="N",
                      help="exact q index (100 x q_scale, %d..%d); one below quality 1's is warned: "
                           "more bits than the model was trained for buy little quality" % arguments.Q_INDEX_RANGE)
    add_option(enc, "--encoder-level")
    add_option(enc, "--arithmetic")
    add_option(enc, "--substreams")
    add_option(enc, "--force")
    enc.add_argument("--strip", action="store_true",
                     help="drop the image's EXIF and XMP metadata (carried by default, format version 4)")
    _add_coding_options(enc)
    enc.set_defaults(run=cmd_encode)

    dec = commands.add_parser("decode", help="decompress an .evc file into an image (format from the extension)",
                              usage=_usage("decode"))
    dec.add_argument("files", nargs="+", metavar="FILE",
                     help="INPUT OUTPUT: an .evc file and the image file to write, its format from the extension "
                          "(- for standard input / standard output, PNG unless --format says otherwise); "
                          "with --out-dir: any number of .evc files")
    add_option(dec, "--out-dir",
               help="write DIR/<name>.png (or --format's extension) for each INPUT, loading each model once "
                    "(DIR is made if missing)")
    dec.add_argument("--format", metavar="EXT",
                     help="with --out-dir: the outputs' extension, which chooses their format; with OUTPUT -: the "
                          "format written to standard output (default png; ppm, tiff, bmp, jpg, webp, ...)")
    dec.add_argument("--output-quality", type=checked(arguments.output_quality), metavar="N",
                     help=f"quality 1..100 of a lossy output format (JPEG, WebP, AVIF; default {DEFAULT_OUTPUT_QUALITY})")
    add_option(dec, "--force")
    _add_coding_options(dec)
    dec.set_defaults(run=cmd_decode)

    exp = commands.add_parser("export", help="write a model as ONNX files, for encode and decode --onnx DIR "
                                             "without PyTorch (pip install 'evc[onnx]')")
    exp.add_argument("folder", metavar="DIR", help="folder to write the ONNX files, tables and manifest into")
    add_option(exp, "--model", help="model name (default: the best shipped model, or the one --weights names)")
    add_option(exp, "--weights", help="weights file or folder (a training run's export/) instead of the model's "
                                      "shipped weights")
    add_option(exp, "--force", help="write into DIR even if it holds files")
    exp.add_argument("--verbose", "-v", action="store_true", help="a line with what was exported on stderr")
    exp.set_defaults(run=cmd_export)

    info = commands.add_parser("info", help="describe an .evc file")
    info.add_argument("file", help=".evc file, or - for standard input")
    add_option(info, "--weights", help="the weights that made the file, to name its quality (default: the shipped ones)")
    info.set_defaults(run=cmd_info)

    models = commands.add_parser("models", help="list the models, their size and whether trained weights ship")
    models.set_defaults(run=cmd_models)

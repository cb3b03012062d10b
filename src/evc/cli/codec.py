"""`evc encode | decode | info | models`: the codec commands.

"-" as a file name is standard input or output; output files appear complete or not at all
(evc.cli.files).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import evc
import evc.codec
from evc import arguments
from evc.bitstream.container import parse
from evc.cli.common import EXIT_OK, CLIError, add_option, checked, integer, load_codec, log
from evc.cli.files import check_output, write_output
from evc.image import DEFAULT_MAX_PIXELS, open_image, profile_description, to_srgb
from evc.models.registry import MODELS_BY_ID

STDIO = "-"
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
    """Write the finished output: to stdout for '-', else through a temporary file moved into place."""
    if name == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    write_output(Path(name), lambda tmp: tmp.write_bytes(data), force)


def _image_format(name: str) -> str:
    if name == STDIO:
        return "PNG"
    path = Path(name)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise CLIError(f"cannot write {path}: unknown image extension {path.suffix!r} (use .png, .ppm, .tiff, .bmp, ...)")
    return fmt


def cmd_encode(args: argparse.Namespace) -> int:
    _check_output(args.output, args.force)
    with _read_image(args.input, args.max_pixels) as image:  # multi-frame files stay open until closed
        return _encode(args, image)


def _encode(args: argparse.Namespace, image: Image.Image) -> int:
    start = time.perf_counter()
    codec = load_codec(args, args.model)
    log(args, f"loaded {codec.name} on {codec.device} in {time.perf_counter() - start:.2f} s")
    rate = dict(
        q_index=args.q_index,
        target_bpp=args.target_bpp,
        target_psnr=args.target_psnr,
        encoder_level=args.encoder_level,
    )
    if image.info.get("icc_profile"):
        described = profile_description(image.info["icc_profile"]) or "unnamed"
        log(args, f"{args.input}: ICC colour profile ({described}) carried in the file and restored on decoding")
    start = time.perf_counter()
    if not args.verbose:  # the bytes only: no reconstruction unless the rate search needs one
        data = codec.compress(image, args.quality, **rate)
        _write(args.output, data, args.force)
        return EXIT_OK
    result = codec.encode(image, args.quality, **rate)
    elapsed = time.perf_counter() - start
    _write(args.output, result.data, args.force)
    level = "" if result.encoder_level is None else f", encoder level {result.encoder_level}"
    log(
        args,
        f"{args.input} ({result.width}x{result.height}) -> {args.output}: {len(result.data)} bytes, "
        f"{result.bpp:.4f} bpp, {result.psnr:.2f} dB, q index {result.q_index}{level}, {elapsed:.2f} s",
    )
    return EXIT_OK


def _saved(image: Image.Image, fmt: str, options: dict[str, Any]) -> tuple[bytes, Image.Image | None]:
    """``image`` written in ``fmt``, and that file read back (None when Pillow cannot read the format)."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    data = buffer.getvalue()
    try:
        written = Image.open(io.BytesIO(data))
        written.load()
    except Exception:  # a write-only format (e.g. PDF): nothing to check against
        return data, None
    return data, written


def _lossy_only_error(fmt: str) -> CLIError:
    return CLIError(f"--output-quality applies to lossy formats ({', '.join(LOSSY_FORMATS.values())}), not {fmt}")


def encode_output_image(image: Image.Image, fmt: str, output_quality: int | None) -> bytes:
    """The decoded image as a file of format ``fmt``, with a warning for whatever the format changes.

    Lossy formats (JPEG, WebP, AVIF) are written at ``output_quality`` (default 95; JPEG in 4:4:4).
    A format that cannot hold the image's ICC profile gets the image converted to sRGB (warned), so its
    colours do not shift; any other difference between the file's pixels and the decoded ones is warned.
    Raises CLIError for ``output_quality`` with a lossless format.
    """
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
    data, written = _saved(image, fmt, options)
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
    if written is None:
        warnings.warn(f"evc cannot read {fmt} files back to check that they hold the decoded pixels exactly")
        return data
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
    fmt = _image_format(args.output)
    if args.output_quality is not None and fmt not in LOSSY_FORMATS:
        raise _lossy_only_error(fmt)
    _check_output(args.output, args.force)
    data = _read_bytes(args.input)
    # Validate the container before any model is loaded (file_info would also load weights for the quality).
    header, _ = parse(data, known_model_ids=set(MODELS_BY_ID))
    start = time.perf_counter()
    codec = load_codec(args, MODELS_BY_ID[header.model_id].name)
    log(args, f"loaded {codec.name} on {codec.device} in {time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    image = codec.decompress(data)
    elapsed = time.perf_counter() - start
    _write(args.output, encode_output_image(image, fmt, args.output_quality), args.force)
    log(args, f"{args.input} -> {args.output} ({header.width}x{header.height} {header.colour}), {elapsed:.2f} s")
    return EXIT_OK


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
    rows = [
        ("file", args.file),
        ("model", info.model),
        ("size", f"{info.width}x{info.height}"),
        ("colour", "grayscale" if info.colour == "L" else "RGB"),
        ("profile", profile),
        ("quality", quality),
        ("bytes", str(info.size_bytes)),
        ("bpp", f"{info.bpp:.4f}"),
        ("format", f"version {info.format_version}, weights {info.weights_fingerprint:08x}"),
        ("coding", ("exact arithmetic (decodes on any device)" if info.exact
                    else "float arithmetic (decodes on the kind of device that wrote it)")
                   + f", {info.substreams} sub-stream{'s' if info.substreams > 1 else ''} per step"),
    ]
    for key, value in rows:
        print(f"{key:<8} {value}")
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from evc.eval.complexity import format_model_table
    from evc.models.card import ModelCard, format_cards

    for line in format_model_table(evc.MODELS):
        print(line)
    cards = [ModelCard.read(spec.weights_dir) for spec in evc.MODELS.values() if spec.has_weights()]
    for line in format_cards(cards):
        print(line)
    return EXIT_OK


def _add_coding_options(parser: argparse.ArgumentParser) -> None:
    """The options of the commands that load a codec to code an image (encode, decode)."""
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
                             f"(default {evc.codec.DEFAULT_MAX_PIXELS})")
    parser.add_argument("--verbose", "-v", action="store_true", help="progress and timings on stderr")


def register(commands: argparse._SubParsersAction) -> None:
    """Add the codec commands to the `evc` parser's subcommands."""
    enc = commands.add_parser("encode", help="compress an image into an .evc file")
    enc.add_argument("input", help="image file, or - for standard input")
    enc.add_argument("output", help=".evc file, or - for standard output")
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
    enc.add_argument("--encoder-level", type=integer("encoder_level"), metavar="K",
                     help="scalable models: run encoders 0..K only")
    add_option(enc, "--arithmetic")
    add_option(enc, "--substreams")
    add_option(enc, "--force")
    _add_coding_options(enc)
    enc.set_defaults(run=cmd_encode)

    dec = commands.add_parser("decode", help="decompress an .evc file into an image (format from the extension)")
    dec.add_argument("input", help=".evc file, or - for standard input")
    dec.add_argument("output", help="image file (format from the extension), or - for PNG on standard output")
    dec.add_argument("--output-quality", type=checked(arguments.output_quality), metavar="N",
                     help=f"quality 1..100 of a lossy output format (JPEG, WebP, AVIF; default {DEFAULT_OUTPUT_QUALITY})")
    add_option(dec, "--force")
    _add_coding_options(dec)
    dec.set_defaults(run=cmd_decode)

    info = commands.add_parser("info", help="describe an .evc file")
    info.add_argument("file", help=".evc file, or - for standard input")
    add_option(info, "--weights", help="the weights that made the file, to name its quality (default: the shipped ones)")
    info.set_defaults(run=cmd_info)

    models = commands.add_parser("models", help="list the models, their size and whether trained weights ship")
    models.set_defaults(run=cmd_models)

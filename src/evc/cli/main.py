"""`evc encode | decode | info | models`.

Every failure the user can cause ends with one line on stderr ("evc: error: ...") and exit code 2;
progress and timings go to stderr only with --verbose; nothing but requested output goes to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

import evc
from evc.cli.files import check_output, write_output
from evc.errors import EVCError, UntrainedModelError

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CLIError(EVCError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise CLIError(f"{message} (see '{self.prog} --help')")


def _log(args: argparse.Namespace, message: str) -> None:
    if getattr(args, "verbose", False):
        print(message, file=sys.stderr)


def _warn(message: str) -> None:
    print(f"evc: warning: {message}", file=sys.stderr)


def _read_image(path: Path) -> Image.Image:
    if not path.is_file():
        raise CLIError(f"input {path} not found" if not path.exists() else f"input {path} is not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            frames = getattr(image, "n_frames", 1)
            image.load()
    except UnidentifiedImageError:
        raise CLIError(f"cannot read {path}: not an image format Pillow recognises") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise CLIError(f"cannot read {path}: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise CLIError(f"cannot read {path}: {exc}") from None
    if frames > 1:
        _warn(f"{path} has {frames} frames; coding the first")
    # Code what viewers show: apply the EXIF orientation, since the evc file does not carry EXIF.
    return ImageOps.exif_transpose(image)


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise CLIError(f"input {path} not found" if not path.exists() else f"input {path} is not a file")
    return path.read_bytes()


def _image_format(path: Path) -> str:
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise CLIError(f"cannot write {path}: unknown image extension {path.suffix!r} (use .png, .ppm, .tiff, .bmp, ...)")
    return fmt


def _load(args: argparse.Namespace, name: str | None) -> evc.Codec:
    try:
        return evc.load(name, device=args.device, weights=args.weights)
    except UntrainedModelError as exc:
        what = f"model {exc.model} is untrained" if exc.model else "no model is trained yet"
        raise CLIError(
            f"{what}: evc {evc.__version__} ships no trained weights for it; give weights with --weights PATH"
        ) from None


def cmd_encode(args: argparse.Namespace) -> int:
    output = Path(args.output)
    check_output(output, args.force)
    image = _read_image(Path(args.input))
    start = time.perf_counter()
    codec = _load(args, args.model)
    _log(args, f"loaded {codec.name} on {codec.device} in {time.perf_counter() - start:.2f} s")
    rate = dict(
        q_index=args.q_index,
        target_bpp=args.target_bpp,
        target_psnr=args.target_psnr,
        encoder_level=args.encoder_level,
    )
    start = time.perf_counter()
    if not args.verbose:  # the bytes only: no reconstruction unless the rate search needs one
        data = codec.compress(image, args.quality, **rate)
        write_output(output, lambda tmp: tmp.write_bytes(data), args.force)
        return EXIT_OK
    result = codec.encode(image, args.quality, **rate)
    elapsed = time.perf_counter() - start
    write_output(output, lambda tmp: tmp.write_bytes(result.data), args.force)
    level = "" if result.encoder_level is None else f", encoder level {result.encoder_level}"
    _log(
        args,
        f"{args.input} ({result.width}x{result.height}) -> {output}: {len(result.data)} bytes, "
        f"{result.bpp:.4f} bpp, {result.psnr:.2f} dB, q index {result.q_index}{level}, {elapsed:.2f} s",
    )
    return EXIT_OK


def cmd_decode(args: argparse.Namespace) -> int:
    output = Path(args.output)
    fmt = _image_format(output)
    check_output(output, args.force)
    data = _read_bytes(Path(args.input))
    info = evc.file_info(data)  # validates the container before any model is loaded
    start = time.perf_counter()
    codec = _load(args, info.model)
    _log(args, f"loaded {codec.name} on {codec.device} in {time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    image = codec.decompress(data)
    elapsed = time.perf_counter() - start
    write_output(output, lambda tmp: image.save(tmp, format=fmt), args.force)
    _log(args, f"{args.input} -> {output} ({info.width}x{info.height} {info.colour}), {elapsed:.2f} s")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    info = evc.file_info(_read_bytes(Path(args.file)))
    quality = "unknown (weights not shipped)" if info.quality is None else f"{info.quality:.3f}"
    rows = [
        ("file", args.file),
        ("model", info.model),
        ("size", f"{info.width}x{info.height}"),
        ("colour", "grayscale" if info.colour == "L" else "RGB"),
        ("quality", f"{quality} (q index {info.q_index})"),
        ("bytes", str(info.size_bytes)),
        ("bpp", f"{info.bpp:.4f}"),
        ("format", f"version {info.format_version}, weights {info.weights_fingerprint:08x}"),
    ]
    for key, value in rows:
        print(f"{key:<8} {value}")
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from evc.eval.complexity import model_complexity

    header = f"{'model':<10} {'params':>8} {'enc MAC/px':>11} {'dec MAC/px':>11} {'ent MAC/px':>11}  weights  description"
    print(header)
    for name, spec in evc.MODELS.items():
        c = model_complexity(name)
        shipped = "trained" if spec.has_weights() else "untrained"
        print(
            f"{name:<10} {c.total_params / 1e6:>7.2f}M {c.macs_per_pixel('encoder'):>11,.0f} "
            f"{c.macs_per_pixel('decoder'):>11,.0f} {c.macs_per_pixel('entropy'):>11,.0f}  {shipped:<8} {spec.description}"
        )
    return EXIT_OK


def _number_in(low: float, high: float, what: str, low_inclusive: bool = True):
    """argparse type: a finite float in [low, high] (or (low, high] when not low_inclusive)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        above_low = value >= low if low_inclusive else value > low
        if not (above_low and value <= high):  # also false for NaN
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    return parse


_quality = _number_in(0.0, 1.0, "a quality in [0, 1]")
_positive = _number_in(0.0, 1e9, "a positive number", low_inclusive=False)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="evc", description="EVC neural image codec")
    parser.add_argument("--version", action="version", version=f"evc {evc.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--weights", metavar="PATH", help="weights file or folder instead of the shipped ones")
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
        p.add_argument("--verbose", "-v", action="store_true", help="progress and timings on stderr")

    enc = commands.add_parser("encode", help="compress an image into an .evc file")
    enc.add_argument("input")
    enc.add_argument("output")
    enc.add_argument("--model", default=None, help="model name (default: the best shipped model)")
    rate = enc.add_mutually_exclusive_group()
    rate.add_argument("--quality", type=_quality, help="0 (smallest) .. 1 (best); default 0.5")
    rate.add_argument("--target-bpp", type=_positive, metavar="X", help="best quality within X bits per pixel")
    rate.add_argument("--target-psnr", type=_positive, metavar="Y", help="smallest file reaching Y dB PSNR")
    rate.add_argument("--q-index", type=int, metavar="N", help="exact q index (100 x q_scale)")
    enc.add_argument("--encoder-level", type=int, metavar="K", help="scalable models: run encoders 0..K only")
    enc.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    common(enc)
    enc.set_defaults(run=cmd_encode)

    dec = commands.add_parser("decode", help="decompress an .evc file into an image (format from the extension)")
    dec.add_argument("input")
    dec.add_argument("output")
    dec.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    common(dec)
    dec.set_defaults(run=cmd_decode)

    info = commands.add_parser("info", help="describe an .evc file")
    info.add_argument("file")
    info.set_defaults(run=cmd_info)

    models = commands.add_parser("models", help="list the models, their size and whether trained weights ship")
    models.set_defaults(run=cmd_models)

    # Listed here for --help; its own options are parsed by evc.train.cli (see main()).
    commands.add_parser("train", help="train a model (evc train --help)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["train"]:
            from evc.train.cli import run as run_training

            return run_training(argv[1:])
        args = build_parser().parse_args(argv)
        return args.run(args)
    except KeyboardInterrupt:
        print("evc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)
    except (EVCError, ValueError, OSError) as exc:
        print(f"evc: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a bug, not bad input: still no traceback unless asked for
        if os.environ.get("EVC_DEBUG"):
            raise
        print(f"evc: internal error (set EVC_DEBUG=1 for details): {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_INTERNAL


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


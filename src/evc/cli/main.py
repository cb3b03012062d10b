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
import evc.codec
import evc.models.registry
from evc.cli.files import check_output, write_output
from evc.errors import EVCError, UntrainedModelError

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


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


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise CLIError(f"input {path} not found" if not path.exists() else f"input {path} is not a file")


def _read_image(path: Path) -> Image.Image:
    _require_file(path)
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
    _require_file(path)
    return path.read_bytes()


def _image_format(path: Path) -> str:
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise CLIError(f"cannot write {path}: unknown image extension {path.suffix!r} (use .png, .ppm, .tiff, .bmp, ...)")
    return fmt


def _load(args: argparse.Namespace, name: str | None) -> evc.Codec:
    options = dict(precision=getattr(args, "precision", "float32"), channels_last=getattr(args, "channels_last", False))
    if args.command == "encode":
        options.update(exact=args.arithmetic == "exact", substreams=args.substreams)
    try:
        codec = evc.load(name, device=args.device, weights=args.weights, **options)
    except UntrainedModelError as exc:
        what = f"model {exc.model} is untrained" if exc.model else "no model is trained yet"
        raise CLIError(
            f"{what}: evc {evc.__version__} ships no trained weights for it; give weights with --weights PATH"
        ) from None
    if getattr(args, "max_pixels", None) is not None:
        codec.max_pixels = args.max_pixels
    return codec


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
        ("coding", ("exact arithmetic (decodes on any device)" if info.exact
                    else "float arithmetic (decodes on the kind of device that wrote it)")
                   + f", {info.substreams} sub-stream{'s' if info.substreams > 1 else ''} per step"),
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


def cmd_complexity(args: argparse.Namespace) -> int:
    from evc.eval.complexity import PUBLISHED, PUBLISHED_ENTROPY, model_complexity, module_breakdown

    names = [evc.models.registry.get_spec(n).name for n in args.models] if args.models else list(evc.MODELS)
    sizes = [(768, 512), (1920, 1088)]  # 1080 rows are padded to 1088
    for name in names:
        print(f"{name}  (parameters; MACs counted on convolutions)")
        print(f"  {'module':<18} {'params':>10} " + " ".join(f"{f'GMAC @{w}x{h}':>16}" for w, h in sizes))
        tables = [module_breakdown(name, w, h) for w, h in sizes]
        for rows in zip(*tables):
            label, params, _ = rows[0]
            print(f"  {label:<18} {params / 1e6:>9.3f}M " + " ".join(f"{macs / 1e9:>16.2f}" for _, _, macs in rows))
        total = model_complexity(name, *sizes[0])
        line = (f"  total {total.total_params / 1e6:.2f} M parameters; at 768x512 g_a {total.macs['encoder'] / 1e9:.1f} G, "
                f"g_s {total.macs['decoder'] / 1e9:.1f} G, entropy model {total.macs['entropy'] / 1e9:.1f} G MACs")
        print(line)
        if name in PUBLISHED:
            p, enc, dec = PUBLISHED[name]
            print(f"  paper: {p} M parameters; g_a {enc} G, g_s {dec} G, entropy model "
                  f"{PUBLISHED_ENTROPY[1]} G MACs ({PUBLISHED_ENTROPY[0]} M parameters)")
        print()
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from evc.eval.results import save_curve
    from evc.eval.runner import EVCUnderTest, evaluate, list_images

    images = list_images(args.folder)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file; give a folder")
    jobs = []
    if args.model:
        codec = _load(args, args.model)
        weights = str(args.weights) if args.weights else "shipped"
        under_test = (
            EVCUnderTest.at_anchors(codec, weights) if args.anchors
            else EVCUnderTest.at_qualities(codec, args.qualities, weights)
        )
        jobs.append((codec.name, under_test, "ours"))
    if args.baseline:
        from evc.eval.baselines import baseline_codecs, unavailable_baselines

        available, missing = baseline_codecs(), unavailable_baselines()
        keys = list(available) if args.baseline == ["all"] else args.baseline
        for key in keys:
            if key in missing:
                raise CLIError(f"baseline {key} is not available here: {missing[key]}")
            if key not in available:
                raise CLIError(f"unknown baseline {key!r}; known: {', '.join(sorted({*available, *missing}))}")
            jobs.append((key, available[key], "baseline"))
    if not jobs:
        raise CLIError("nothing to evaluate: give --model NAME and/or --baseline KEY (or --baseline all)")
    targets = [out / f"{key}.json" for key, _, _ in jobs]
    for target in targets:
        check_output(target, args.force) if out.is_dir() else None
    out.mkdir(parents=True, exist_ok=True)
    for (key, under_test, kind), target in zip(jobs, targets):
        curve = evaluate(under_test, images, kind, progress=not args.quiet)
        write_output(target, lambda tmp: save_curve(curve, tmp), args.force)
        print(f"{curve.name}: {len(images)} images -> {target}")
        ms = curve.ms_ssim or [float("nan")] * len(curve.bpp)
        for bpp, psnr, m, te, td in zip(curve.bpp, curve.psnr or [], ms, curve.encoding_time or [], curve.decoding_time or []):
            print(f"  {bpp:7.4f} bpp  {psnr:6.2f} dB  MS-SSIM {m:.4f}  encode {te * 1e3:8.1f} ms  decode {td * 1e3:8.1f} ms")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from evc.eval.bdrate import bd_rate_table, format_bd_table
    from evc.eval.published import PUBLISHED_EVC, VTM_KODAK
    from evc.eval.results import load_curve

    curves = [load_curve(p) for p in args.results]
    styles = {c.name: "ours" if c.meta.get("kind") == "ours" else "baseline" for c in curves}
    if args.published:
        missing = [p for p in PUBLISHED_EVC if not p.is_file()]
        if missing:
            raise CLIError(f"published EVC curves not found ({missing[0]}); give them as RESULTS files instead")
        published = [load_curve(p) for p in PUBLISHED_EVC]
        for c in published:
            c.name = f"{c.name} (paper)"
            styles[c.name] = "published"
        curves += published
    anchor_paths = args.anchor or [VTM_KODAK]
    for path in anchor_paths:
        if not Path(path).is_file():
            raise CLIError(f"anchor curve not found: {path} (give one with --anchor FILE)")
    anchors = [load_curve(p) for p in anchor_paths]
    for a in anchors:
        styles.setdefault(a.name, "published")
    # Live baselines measured on the same images are anchors too.
    anchors += [c for c in curves if c.meta.get("kind") == "baseline" and c not in anchors]
    metrics = ["psnr", "ms-ssim"] if args.metric == "both" else [args.metric]
    for metric in metrics:
        table = bd_rate_table(curves, anchors, metric)
        print(f"BD-rate ({metric}); negative = fewer bits than the anchor at equal quality; "
              "PCHIP on log-rate over the overlapping quality range shown in brackets")
        print(format_bd_table(curves, anchors, table, metric))
        if args.plot:
            from evc.eval.plots import plot_rd

            stem = Path(f"{args.plot}-{metric}")
            plotted = [*curves, *[a for a in anchors if a not in curves]]
            for path in plot_rd(plotted, stem, metric=metric, title=args.title, styles=styles):
                print(f"wrote {path}")
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from evc.eval.bench import PAPER_CASES, SIZES, coder_throughput, compare_paths

    if args.models or args.sizes:
        names = [evc.models.registry.get_spec(n).name for n in args.models] if args.models else list(evc.MODELS)
        sizes = [s for s in SIZES if not args.sizes or f"{s[0]}x{s[1]}" in args.sizes]
        cases = [(name, w, h) for name in names for w, h in sizes]
    else:
        cases = list(PAPER_CASES)
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"evc {evc.__version__}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"{args.arithmetic} entropy parameters, median of {args.repeat} after warm-up; times in ms")
    for device in devices:
        if torch.device(device).type == "cuda":
            print(f"device: {torch.cuda.get_device_name(torch.device(device))}")
    print(f"{'model':<9} {'weights':<8} {'device':<6} {'path':<22} {'size':<10} {'enc ms':>7} {'enc FPS':>7} "
          f"{'(g_a/s':>7} {'coder':>6} {'other)':>7} {'dec ms':>7} {'dec FPS':>7} {'(g_s':>7} {'coder':>6} "
          f"{'other)':>7} {'peak MB':>8} {'speed-up':>11}")
    for device in devices:
        rows = compare_paths(
            cases, device, weights=args.weights, exact=args.arithmetic == "exact", substreams=args.substreams,
            fast_precision=args.fast_precision, plain_only=args.plain_only, repeat=args.repeat,
        )
        for row in rows:
            r = row.result
            print(
                f"{r.model:<9} {row.weights:<8} {str(device):<6} {row.path:<22} {f'{r.width}x{r.height}':<10} "
                f"{r.encode_s * 1e3:>7.1f} {r.encode_fps:>7.2f} {r.encode_transform_s * 1e3:>7.1f} "
                f"{r.encode_coding_s * 1e3:>6.1f} {r.encode_other_s * 1e3:>7.1f} {r.decode_s * 1e3:>7.1f} "
                f"{r.decode_fps:>7.2f} {r.decode_transform_s * 1e3:>7.1f} {r.decode_coding_s * 1e3:>6.1f} "
                f"{r.decode_other_s * 1e3:>7.1f} {r.peak_memory_mb:>8.0f} "
                f"{f'{row.encode_speedup:.2f}/{row.decode_speedup:.2f}':>11}",
                flush=True,
            )
    print("coder: on the encoder it runs on a background thread, overlapped with the networks; "
          "speed-up: encode/decode against the plain float32 path")
    for width, height in sorted({(w, h) for _, w, h in cases}):
        enc_s, dec_s, n = coder_throughput(width, height - height % 16, args.repeat)
        print(f"entropy coder, {width}x{height} latent ({n} symbols, trained-like statistics): "
              f"encode {n / enc_s / 1e6:.1f} M symbols/s, decode {n / dec_s / 1e6:.1f} M symbols/s")
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


_quality = _number_in(0.0, 1.0, "a quality in [0, 1]")
_positive = _number_in(0.0, 1e9, "a positive number", low_inclusive=False)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="evc", description="EVC neural image codec")
    parser.add_argument("--version", action="version", version=f"evc {evc.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--weights", metavar="PATH", help="weights file or folder instead of the shipped ones")
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
        p.add_argument("--precision", choices=["float32", "float16", "bfloat16"], default="float32",
                       help="arithmetic of the image transforms (float16 + --channels-last: the GPU fast path); "
                            "never changes which files decode")
        p.add_argument("--channels-last", action="store_true", help="channels-last memory layout for the transforms")
        p.add_argument("--max-pixels", type=_positive_int, metavar="N",
                       help="refuse images (or files declaring images) over N pixels once padded to multiples of 64 "
                            f"(default {evc.codec.DEFAULT_MAX_PIXELS})")
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
    enc.add_argument("--arithmetic", choices=["exact", "float"], default="exact",
                     help="entropy parameters in exact fixed-point arithmetic, so the file decodes on any "
                          "device (default), or in float32: faster, but decodes only on the kind of device that wrote it")
    enc.add_argument("--substreams", type=int, choices=range(1, 9), default=1, metavar="{1..8}",
                     help="independent streams per coding step of the latent (default 1)")
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

    ev = commands.add_parser("eval", help="measure RD and speed on a folder of images (JSON results)")
    ev.add_argument("folder", help="folder of images, e.g. ../shared/data/kodak")
    ev.add_argument("--model", help="one of our models (see evc models)")
    ev.add_argument("--baseline", action="append", metavar="KEY",
                    help="a live baseline codec: jpeg420, jpeg444, webp, avif, jxl, jpeg2000, heic, or all (repeatable)")
    points = ev.add_mutually_exclusive_group()
    points.add_argument("--qualities", type=int, default=8, metavar="N", help="N qualities evenly in [0, 1] (default 8)")
    points.add_argument("--anchors", action="store_true", help="the model's 4 trained rate anchors")
    ev.add_argument("--out", default="evc-results", help="folder for the JSON results (default: evc-results)")
    ev.add_argument("--force", action="store_true", help="overwrite existing result files")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.add_argument("--weights", metavar="PATH", help="weights file or folder instead of the shipped ones")
    ev.add_argument("--device", default=None, help="cpu, cuda, cuda:N")
    ev.set_defaults(run=cmd_eval)

    compare = commands.add_parser("compare", help="BD-rates of RD results against anchors, and RD plots")
    compare.add_argument("results", nargs="+", metavar="RESULTS.json", help="curves (evc eval output or CompressAI JSON)")
    compare.add_argument("--anchor", action="append", metavar="FILE",
                         help="anchor curve (repeatable; default ../shared/rd_results/compressai_kodak/vtm.json); "
                              "live-baseline results among RESULTS are anchors too")
    compare.add_argument("--metric", choices=["psnr", "ms-ssim", "both"], default="both")
    compare.add_argument("--published", action="store_true", help="add the paper's EVC-LL/MM/SS Kodak curves")
    compare.add_argument("--plot", metavar="STEM", help="write STEM-psnr.png/.svg (and -ms-ssim)")
    compare.add_argument("--title", default="Kodak", help="plot title")
    compare.set_defaults(run=cmd_compare)

    bench = commands.add_parser(
        "bench", help="encode/decode latency and FPS (default: LL and MM at 768x512, SS and Scale-SS at 1920x1080)"
    )
    bench.add_argument("--models", nargs="+", help="these models (at --sizes, default both)")
    bench.add_argument("--device", default=None, help="default: cpu, and cuda when present")
    bench.add_argument("--sizes", nargs="+", choices=["768x512", "1920x1080"], help="these sizes (every model)")
    bench.add_argument("--repeat", type=_positive_int, default=3)
    bench.add_argument("--arithmetic", choices=["exact", "float"], default="exact",
                       help="entropy-parameter arithmetic of the files coded (default exact)")
    bench.add_argument("--substreams", type=int, choices=range(1, 9), default=1, metavar="{1..8}")
    bench.add_argument("--fast-precision", choices=["float16", "bfloat16"],
                       help="precision of the fast path (default: float16 on CUDA, bfloat16 on CPU)")
    bench.add_argument("--plain-only", action="store_true", help="time the plain float32 path only")
    bench.add_argument("--weights", metavar="PATH", help="weights to use (else shipped, else random)")
    bench.set_defaults(run=cmd_bench)

    complexity = commands.add_parser("complexity", help="parameters and MACs per module, next to the paper's")
    complexity.add_argument("--models", nargs="+", help="default: every model")
    complexity.set_defaults(run=cmd_complexity)

    # Listed here for --help; its own options are parsed by evc.train.cli (see main()).
    commands.add_parser("train", help="train a model (evc train --help)", add_help=False)
    commands.add_parser("distill", help="distil a smaller model by mask decay (evc distill --help)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["train"]:
            from evc.train.cli import run as run_training

            return run_training(argv[1:])
        if argv[:1] == ["distill"]:
            from evc.train.cli import run_distill_command

            return run_distill_command(argv[1:])
        args = build_parser().parse_args(argv)
        return args.run(args)
    except KeyboardInterrupt:
        print("evc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `evc models | head`: the reader left; stop quietly like other tools
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
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


"""`evc encode | decode | info | models | eval | compare | bench | complexity`.

Every failure the user can cause ends with one line on stderr ("evc: error: ...") and exit code 2;
warnings are one line each ("evc: warning: ..."); progress and timings go to stderr only with --verbose;
nothing but requested output goes to stdout. "-" as a file name is standard input or output.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import evc
import evc.codec
import evc.models.registry
from evc import arguments
from evc.bitstream.container import parse
from evc.cli.files import check_output, write_output
from evc.errors import EVCError, UntrainedModelError
from evc.models.card import ModelCard
from evc.image import DEFAULT_MAX_PIXELS, open_image, profile_description, to_srgb
from evc.models.registry import MODELS_BY_ID

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


STDIO = "-"
# Lossy formats whose Pillow writers take quality=1..100; evc's default is high, not Pillow's 75.
LOSSY_FORMATS = {"JPEG": "JPEG", "WEBP": "WebP", "AVIF": "AVIF"}
DEFAULT_OUTPUT_QUALITY = 95


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (the library's and ours) as one line each on stderr, like errors."""
    print(f"evc: warning: {_one_line(message)}", file=sys.stderr)


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


def _untrained_message(exc: UntrainedModelError) -> str:
    what = f"model {exc.model} is untrained" if exc.model else "no model is trained yet"
    return (
        f"{what}: evc {evc.__version__} ships no trained weights for it; train them with `evc train` "
        "(README, \"Training\") and give the run's export/ folder with --weights PATH"
    )


def _load(args: argparse.Namespace, name: str | None) -> evc.Codec:
    options: dict[str, Any] = dict(
        precision=getattr(args, "precision", "float32"), channels_last=getattr(args, "channels_last", False)
    )
    if args.command == "encode":
        options.update(exact=args.arithmetic == "exact", substreams=args.substreams)
    try:
        codec = evc.load(name, device=args.device, weights=args.weights, **options)
    except UntrainedModelError as exc:
        raise CLIError(_untrained_message(exc)) from None
    if getattr(args, "max_pixels", None) is not None:
        codec.max_pixels = args.max_pixels
    return codec


def cmd_encode(args: argparse.Namespace) -> int:
    _check_output(args.output, args.force)
    with _read_image(args.input, args.max_pixels) as image:  # multi-frame files stay open until closed
        return _encode(args, image)


def _encode(args: argparse.Namespace, image: Image.Image) -> int:
    start = time.perf_counter()
    codec = _load(args, args.model)
    _log(args, f"loaded {codec.name} on {codec.device} in {time.perf_counter() - start:.2f} s")
    rate = dict(
        q_index=args.q_index,
        target_bpp=args.target_bpp,
        target_psnr=args.target_psnr,
        encoder_level=args.encoder_level,
    )
    if image.info.get("icc_profile"):
        described = profile_description(image.info["icc_profile"]) or "unnamed"
        _log(args, f"{args.input}: ICC colour profile ({described}) carried in the file and restored on decoding")
    start = time.perf_counter()
    if not args.verbose:  # the bytes only: no reconstruction unless the rate search needs one
        data = codec.compress(image, args.quality, **rate)
        _write(args.output, data, args.force)
        return EXIT_OK
    result = codec.encode(image, args.quality, **rate)
    elapsed = time.perf_counter() - start
    _write(args.output, result.data, args.force)
    level = "" if result.encoder_level is None else f", encoder level {result.encoder_level}"
    _log(
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


def encode_output_image(image: Image.Image, fmt: str, output_quality: int | None) -> bytes:
    """The decoded image as a file of format ``fmt``, with a warning for whatever the format changes.

    Lossy formats (JPEG, WebP, AVIF) are written at ``output_quality`` (default 95; JPEG in 4:4:4).
    A format that cannot hold the image's ICC profile gets the image converted to sRGB (warned), so its
    colours do not shift; any other difference between the file's pixels and the decoded ones is warned.
    """
    options: dict[str, Any] = {}
    if fmt in LOSSY_FORMATS:
        options["quality"] = DEFAULT_OUTPUT_QUALITY if output_quality is None else output_quality
        if fmt == "JPEG":
            options["subsampling"] = 0  # 4:4:4: keep the decoded colour resolution
    elif output_quality is not None:
        raise CLIError(f"--output-quality applies to lossy formats ({', '.join(LOSSY_FORMATS.values())}), not {fmt}")
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
        raise CLIError(f"--output-quality applies to lossy formats ({', '.join(LOSSY_FORMATS.values())}), not {fmt}")
    _check_output(args.output, args.force)
    data = _read_bytes(args.input)
    # Validate the container before any model is loaded (file_info would also load weights for the quality).
    header, _ = parse(data, known_model_ids=set(MODELS_BY_ID))
    start = time.perf_counter()
    codec = _load(args, MODELS_BY_ID[header.model_id].name)
    _log(args, f"loaded {codec.name} on {codec.device} in {time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    image = codec.decompress(data)
    elapsed = time.perf_counter() - start
    _write(args.output, encode_output_image(image, fmt, args.output_quality), args.force)
    _log(args, f"{args.input} -> {args.output} ({header.width}x{header.height} {header.colour}), {elapsed:.2f} s")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    info = evc.file_info(_read_bytes(args.file), weights=args.weights)
    if info.quality is not None:
        quality = f"{info.quality:.3f}"
    elif args.weights:
        quality = f"unknown: the file was made with other weights than {args.weights}"
    elif evc.MODELS[info.model].has_weights():
        quality = "unknown: the file was made with other weights than the shipped ones (give them with --weights)"
    else:
        quality = "unknown: no weights ship for this model (give the file's weights with --weights)"
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
    cards = [ModelCard.read(spec.weights_dir) for spec in evc.MODELS.values() if spec.has_weights()]
    if cards:
        print("\nShipped weights (model cards):")
        for card in cards:
            print("\n".join(card.lines()))
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
    from evc.eval.metrics import MS_SSIM_MIN_SIDE
    from evc.eval.results import save_curve
    from evc.eval.runner import EVCUnderTest, evaluate, list_images

    images = list_images(args.folder)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file; give a folder")
    jobs = []
    if args.model or args.weights:  # weights name their model
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
        raise CLIError("nothing to evaluate: give --model NAME or --weights PATH, and/or --baseline KEY (or --baseline all)")
    targets = [out / f"{key}.json" for key, _, _ in jobs]
    for target in targets:
        check_output(target, args.force) if out.is_dir() else None
    out.mkdir(parents=True, exist_ok=True)
    for (key, under_test, kind), target in zip(jobs, targets):
        curve = evaluate(under_test, images, kind, progress=not args.quiet)
        write_output(target, lambda tmp: save_curve(curve, tmp), args.force)
        print(f"{curve.name}: {len(images)} images -> {target}")
        if curve.ms_ssim is None:
            small = [name for name, row in curve.per_image.items() if "ms-ssim-rgb" not in row]
            warnings.warn(
                f"no MS-SSIM for {curve.name}: it needs images of at least {MS_SSIM_MIN_SIDE} pixels on each side, "
                f"and {len(small)} of the {len(images)} are smaller ({', '.join(small[:3])}{', ...' if len(small) > 3 else ''})"
            )
        ms = [f"{m:.4f}" for m in curve.ms_ssim] if curve.ms_ssim else ["n/a   "] * len(curve.bpp)
        for bpp, psnr, m, te, td in zip(curve.bpp, curve.psnr or [], ms, curve.encoding_time or [], curve.decoding_time or []):
            print(f"  {bpp:7.4f} bpp  {psnr:6.2f} dB  MS-SSIM {m}  encode {te * 1e3:8.1f} ms  decode {td * 1e3:8.1f} ms")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from evc.eval.bdrate import bd_rate_table, curve_quality, format_bd_table
    from evc.eval.published import PUBLISHED_EVC, VTM_KODAK
    from evc.eval.results import ResultsError, load_curve

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
    plotted = [*curves, *[a for a in anchors if a not in curves]]

    def has(curve, metric: str) -> bool:
        try:
            curve_quality(curve, metric)
        except ResultsError:
            return False
        return True

    # Decide everything that could fail before printing or writing anything.
    metrics = ["psnr", "ms-ssim"] if args.metric == "both" else [args.metric]
    label = {"psnr": "PSNR", "ms-ssim": "MS-SSIM"}
    lacking = [m for m in metrics if not any(has(c, m) for c in plotted)]
    if args.metric != "both" and lacking:
        raise CLIError(f"none of the curves has {label[args.metric]} values")
    metrics = [m for m in metrics if m not in lacking]
    for metric in lacking:
        warnings.warn(f"none of the curves has {label[metric]} values: compared on {label[metrics[0]]} only")
    plots: dict[str, list[Path]] = {}
    if args.plot:
        stem = Path(args.plot)
        for metric in metrics:
            plots[metric] = [stem.parent / f"{stem.name}-{metric}{suffix}" for suffix in (".png", ".svg")]
            for target in plots[metric]:
                check_output(target, args.force)
    for metric in metrics:
        table = bd_rate_table(curves, anchors, metric)
        print(f"BD-rate ({metric}); negative = fewer bits than the anchor at equal quality; "
              "PCHIP on log-rate over the overlapping quality range shown in brackets")
        print(format_bd_table(curves, anchors, table, metric))
        if args.plot:
            for path in _write_plot(plotted, plots[metric], metric, args, styles):
                print(f"wrote {path}")
    return EXIT_OK


def _write_plot(curves: list, targets: list[Path], metric: str, args: argparse.Namespace, styles: dict) -> list[Path]:
    """Plot into a temporary folder beside the targets, then move each file into place (never over an
    existing file without --force)."""
    from evc.eval.plots import plot_rd

    with tempfile.TemporaryDirectory(dir=targets[0].parent, prefix=".evc-plot-") as scratch:
        made = plot_rd(curves, Path(scratch) / "plot", metric=metric, title=args.title, styles=styles)
        for source, target in zip(made, targets):
            write_output(target, lambda tmp, source=source: shutil.copyfile(source, tmp), args.force)
    return targets


def bench_cases(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    """(model, width, height) to time: --models at --sizes; --weights alone: the model they name, at
    its paper size (or --sizes); neither: the paper's real-time cases."""
    from evc.eval.bench import PAPER_CASES, SIZES

    if args.weights and not args.models:
        from evc.models.weights import MODEL_KEY, read_metadata

        named = read_metadata(args.weights).get(MODEL_KEY)
        if named is None:
            raise CLIError(f"{args.weights} does not say which model it holds; give it with --models NAME")
        name = evc.models.registry.get_spec(named).name
        if args.sizes:
            sizes = [s for s in SIZES if f"{s[0]}x{s[1]}" in args.sizes]
        else:
            sizes = [(w, h) for n, w, h in PAPER_CASES if n == name] or list(SIZES)
        return [(name, w, h) for w, h in sizes]
    if args.models or args.sizes:
        names = [evc.models.registry.get_spec(n).name for n in args.models] if args.models else list(evc.MODELS)
        sizes = [s for s in SIZES if not args.sizes or f"{s[0]}x{s[1]}" in args.sizes]
        return [(name, w, h) for name in names for w, h in sizes]
    return list(PAPER_CASES)


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from evc.eval.bench import coder_throughput, compare_paths

    cases = bench_cases(args)
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


def _number(text: str) -> int | float | str:
    """The number the text spells (an int if it is one), else the text itself."""
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return text


def _checked(check: Callable[[Any], Any], parse: Callable[[str], Any] = _number) -> Callable[[str], Any]:
    """argparse type: parse the text, then run the API's own check (evc.arguments) on it, so both say
    the same about every value. Text that is no number goes to the check as is, which names it."""

    def convert(text: str) -> Any:
        value = parse(text)
        try:
            return check(value)
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _integer(name: str) -> Callable[[str], int]:
    """argparse type for an integer whose range the API checks (it depends on the model)."""

    def convert(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None

    return convert


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="evc", description="EVC neural image codec")
    parser.add_argument("--version", action="version", version=f"evc {evc.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--weights", metavar="PATH", help="weights file or folder instead of the shipped ones")
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
        p.add_argument("--precision", type=_checked(arguments.precision, str), default="float32",
                       metavar="{" + ",".join(arguments.PRECISIONS) + "}",
                       help="arithmetic of the image transforms (float16 + --channels-last: the GPU fast path); "
                            "never changes which files decode")
        p.add_argument("--channels-last", action="store_true", help="channels-last memory layout for the transforms")
        p.add_argument("--max-pixels", type=_checked(arguments.max_pixels), metavar="N",
                       help="refuse images (or files declaring images) over N pixels once padded to multiples of 64 "
                            f"(default {evc.codec.DEFAULT_MAX_PIXELS})")
        p.add_argument("--verbose", "-v", action="store_true", help="progress and timings on stderr")

    enc = commands.add_parser("encode", help="compress an image into an .evc file")
    enc.add_argument("input", help="image file, or - for standard input")
    enc.add_argument("output", help=".evc file, or - for standard output")
    enc.add_argument("--model", default=None, help="model name (default: the best shipped model)")
    rate = enc.add_mutually_exclusive_group()
    rate.add_argument("--quality", type=_checked(arguments.quality), help="0 (smallest) .. 1 (best); default 0.5")
    rate.add_argument("--target-bpp", type=_checked(arguments.target_bpp), metavar="X",
                      help="best quality within X bits per pixel")
    rate.add_argument("--target-psnr", type=_checked(arguments.target_psnr), metavar="Y",
                      help="smallest file reaching Y dB PSNR")
    rate.add_argument("--q-index", type=_checked(arguments.q_index), metavar="N",
                      help="exact q index (100 x q_scale, 1..65535)")
    enc.add_argument("--encoder-level", type=_integer("encoder_level"), metavar="K",
                     help="scalable models: run encoders 0..K only")
    enc.add_argument("--arithmetic", choices=["exact", "float"], default="exact",
                     help="entropy parameters in exact fixed-point arithmetic, so the file decodes on any "
                          "device (default), or in float32: faster, but decodes only on the kind of device that wrote it")
    enc.add_argument("--substreams", type=_checked(arguments.substreams), default=1, metavar="{1..8}",
                     help="independent streams per coding step of the latent (default 1)")
    enc.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    common(enc)
    enc.set_defaults(run=cmd_encode)

    dec = commands.add_parser("decode", help="decompress an .evc file into an image (format from the extension)")
    dec.add_argument("input", help=".evc file, or - for standard input")
    dec.add_argument("output", help="image file (format from the extension), or - for PNG on standard output")
    dec.add_argument("--output-quality", type=_checked(arguments.output_quality), metavar="N",
                     help=f"quality 1..100 of a lossy output format (JPEG, WebP, AVIF; default {DEFAULT_OUTPUT_QUALITY})")
    dec.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    common(dec)
    dec.set_defaults(run=cmd_decode)

    info = commands.add_parser("info", help="describe an .evc file")
    info.add_argument("file", help=".evc file, or - for standard input")
    info.add_argument("--weights", metavar="PATH",
                      help="the weights that made the file, to name its quality (default: the shipped ones)")
    info.set_defaults(run=cmd_info)

    models = commands.add_parser("models", help="list the models, their size and whether trained weights ship")
    models.set_defaults(run=cmd_models)

    ev = commands.add_parser("eval", help="measure RD and speed on a folder of images (JSON results)")
    ev.add_argument("folder", help="folder of images, e.g. ../shared/data/kodak")
    ev.add_argument("--model", help="one of our models (see evc models); with --weights, the model they name")
    ev.add_argument("--baseline", action="append", metavar="KEY",
                    help="a live baseline codec: jpeg420, jpeg444, webp, avif, jxl, jpeg2000, heic, or all (repeatable)")
    points = ev.add_mutually_exclusive_group()
    points.add_argument("--qualities", type=int, default=8, metavar="N", help="N qualities evenly in [0, 1] (default 8)")
    points.add_argument("--anchors", action="store_true", help="the model's 4 trained rate anchors")
    ev.add_argument("--out", default="evc-results", help="folder for the JSON results (default: evc-results)")
    ev.add_argument("--force", action="store_true", help="overwrite existing result files")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.add_argument("--weights", metavar="PATH",
                    help="weights file or folder instead of the shipped ones (they name their model: --model optional)")
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
    compare.add_argument("--force", action="store_true", help="overwrite existing plot files")
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
    bench.add_argument("--substreams", type=_checked(arguments.substreams), default=1, metavar="{1..8}")
    bench.add_argument("--fast-precision", choices=["float16", "bfloat16"],
                       help="precision of the fast path (default: float16 on CUDA, bfloat16 on CPU)")
    bench.add_argument("--plain-only", action="store_true", help="time the plain float32 path only")
    bench.add_argument("--weights", metavar="PATH",
                       help="weights to use (else shipped, else random); alone, the model they name at its paper size")
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
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning  # one line each, like errors
        warnings.filterwarnings("always", category=UserWarning, module=r"evc(\.|$)")  # every run tells
        return _main(argv)


def _main(argv: list[str]) -> int:
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


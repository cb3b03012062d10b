"""`evc eval | compare | bench | complexity`: measurements and reports.

The reports are formatted next to their data (evc.eval.*.format_*); this module parses the options,
checks what could fail before any long work, and writes results and plots.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import warnings
from pathlib import Path

import evc
import evc.models.registry
from evc.cli.common import EXIT_OK, CLIError, add_option, load_codec, positive_int
from evc.cli.files import check_output, write_output
from evc.errors import ModelError


def cmd_eval(args: argparse.Namespace) -> int:
    from evc.eval.metrics import MS_SSIM_MIN_SIDE
    from evc.eval.results import format_points, save_curve
    from evc.eval.runner import EVCUnderTest, evaluate, list_images
    from evc.models.weights import read_metadata
    from evc.weights_keys import VERSION_KEY

    import evc.shared_data

    photo_sets = {  # flag -> (the dataset's name in the results, its photos)
        "validation_split": ("validation split", evc.shared_data.validation_photo_paths),
        "train_sample": ("training sample", evc.shared_data.train_sample_photo_paths),
    }
    chosen = [flag for flag in photo_sets if getattr(args, flag)]
    if (args.folder is not None) + len(chosen) != 1:
        raise CLIError("give one of: a folder of images, --validation-split, --train-sample (not both)")
    dataset = None
    if chosen:
        dataset, photo_paths = photo_sets[chosen[0]]
        images = photo_paths()
        missing = [p for p in images if not p.is_file()]
        if missing:
            raise CLIError(f"the {dataset} needs the training photos in {evc.shared_data.TRAIN_DIR}; {missing[0]} is missing")
    else:
        images = list_images(args.folder)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file; give a folder")
    jobs = []
    release = None  # the release of our model's weights ("v4"), for labels like "EVC-SS v4" in `evc compare`
    # Our model unless only baselines are asked for: --model, the model --weights name, or the best
    # shipped model (as `evc encode` uses).
    if args.model or args.weights or not args.baseline:
        codec = load_codec(args, args.model)
        weights = str(args.weights) if args.weights else "shipped"
        try:
            under_test = (
                EVCUnderTest.at_anchors(codec, weights, encoder_level=args.encoder_level) if args.anchors
                else EVCUnderTest.at_qualities(codec, args.qualities, weights, encoder_level=args.encoder_level)
            )
        except ValueError as exc:  # an encoder level the model does not have
            raise CLIError(str(exc)) from None
        key = codec.name if args.encoder_level is None else f"{codec.name}-level{args.encoder_level}"
        jobs.append((key, under_test, "ours"))
        release = read_metadata(args.weights or evc.models.registry.get_spec(codec.name).weights_dir).get(VERSION_KEY)
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
    targets = [out / f"{key}.json" for key, _, _ in jobs]
    for target in targets:
        check_output(target, args.force) if out.is_dir() else None
    out.mkdir(parents=True, exist_ok=True)
    for (key, under_test, kind), target in zip(jobs, targets):
        curve = evaluate(under_test, images, kind, progress=not args.quiet)
        if dataset is not None:  # not the folder of the first photo
            curve.meta["dataset"] = dataset
        if kind == "ours" and release:
            curve.meta["versions"]["weights_version"] = release
        write_output(target, lambda tmp: save_curve(curve, tmp), args.force)
        print(f"{curve.name}: {len(images)} images -> {target}")
        if curve.ms_ssim is None:
            small = [name for name, row in curve.per_image.items() if "ms-ssim-rgb" not in row]
            warnings.warn(
                f"no MS-SSIM for {curve.name}: it needs images of at least {MS_SSIM_MIN_SIDE} pixels on each side, "
                f"and {len(small)} of the {len(images)} are smaller ({', '.join(small[:3])}{', ...' if len(small) > 3 else ''})"
            )
        for line in format_points(curve):
            print(line)
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from evc.eval.bdrate import DIFFERENT_IMAGES, bd_rate_table, curve_quality, format_bd_table, format_bd_title
    from evc.eval.compare import choose_anchors, comparison_title, describe_choice, format_quality_table
    from evc.eval.labels import curve_description, curve_labels
    from evc.eval.progress import progress_bar
    from evc.eval.published import VTM_KODAK, paper_curves
    from evc.eval.results import ResultsError, format_image_sets, load_curve

    curves = [load_curve(p) for p in args.results]
    styles = {c.name: "ours" if c.meta.get("kind") == "ours" else "baseline" for c in curves}
    if args.published:
        published = paper_curves()
        styles.update((c.name, "published") for c in published)
        curves += published
    choice = None
    if args.anchor:  # the user's anchors, for every curve, like for like or not
        for path in args.anchor:
            if not Path(path).is_file():
                raise CLIError(f"anchor curve not found: {path}")
        anchors = [load_curve(p) for p in args.anchor]
        compared, unanchored = curves, []
    else:  # each curve's like-for-like anchor (evc.eval.compare), or none
        choice = choose_anchors(curves, [load_curve(VTM_KODAK)])
        anchors = choice.anchors
        compared = [c for c, a in zip(curves, choice.anchor_of) if a is not None]
        unanchored = [c for c, a in zip(curves, choice.anchor_of) if a is None]
    for a in anchors:
        styles.setdefault(a.name, "published")
    plotted = [*curves, *[a for a in anchors if all(a is not c for c in curves)]]
    labels = dict(zip((c.name for c in plotted), curve_labels(plotted, long=args.long_labels)))

    def has(curve, metric: str) -> bool:
        try:
            curve_quality(curve, metric)
        except ResultsError:
            return False
        return True

    # Decide everything that could fail before printing or writing anything.
    metrics = ["psnr", "ms-ssim"] if args.metric == "both" else [args.metric]
    label = {"psnr": "PSNR", "ms-ssim": "MS-SSIM"}
    # An anchor alone is no comparison: a metric none of the compared curves has is left out (the
    # paper's curves and results on images under 161 pixels have no MS-SSIM).
    lacking = [m for m in metrics if not any(has(c, m) for c in curves)]
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
    image_sets = format_image_sets(plotted)
    if choice is None and image_sets is not None:  # anchors the user chose on other images
        warnings.warn(
            f"not like for like: the curves were measured on different images ({image_sets}); "
            f"BD-rates between curves of different image sets are marked '{DIFFERENT_IMAGES}'"
        )

    # The report is printed once the plots are written: stdout is not interleaved with the bar.
    report = [] if choice is None else [*describe_choice(curves, choice, labels), ""]
    steps = len(metrics) * (1 + bool(args.plot))
    written: list[Path] = []
    with progress_bar(steps, "compare", "step", not args.quiet) as bar:
        for metric in metrics:
            if compared and anchors:
                table = bd_rate_table(compared, anchors, metric)
                report += [format_bd_title(metric), format_bd_table(
                    compared, anchors, table, metric, labels=labels, withhold_different=choice is not None)]
            if unanchored:
                report += [f"{label[metric]} at equal rates (no like-for-like anchor, so no BD-rate):",
                           format_quality_table(unanchored, labels, metric)]
            bar.update(1)
            if args.plot:
                title = args.title if args.title is not None else comparison_title(
                    [c for c in curves if has(c, metric)], anchors, metric)
                written += _write_plot(plotted, plots[metric], metric, args, styles, title, labels)
                bar.update(1)
    # The full descriptions behind the short labels (those that say more than the label).
    notes = [f"{labels[c.name]}: {curve_description(c)}" for c in plotted
             if labels[c.name].lower() != curve_description(c).lower().replace("_", "-")]
    if notes:
        report += ["Labels:", *notes, ""]
    report += [f"wrote {path}" for path in written]
    print("\n".join(report).rstrip("\n"))
    return EXIT_OK


def _write_plot(
    curves: list, targets: list[Path], metric: str, args: argparse.Namespace, styles: dict, title: str,
    labels: dict[str, str],
) -> list[Path]:
    """Plot into a temporary folder beside the targets, then move each file into place (never over an
    existing file without --force)."""
    from evc.eval.plots import plot_rd

    with tempfile.TemporaryDirectory(dir=targets[0].parent, prefix=".evc-plot-") as scratch:
        made = plot_rd(curves, Path(scratch) / "plot", metric=metric, title=title, styles=styles, labels=labels)
        for source, target in zip(made, targets):
            write_output(target, lambda tmp, source=source: shutil.copyfile(source, tmp), args.force)
    return targets


def bench_cases(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    """(model, width, height) to time: --models at --sizes; --weights alone: the model they name, at
    its paper size (or --sizes); neither: the paper's real-time cases. Raises CLIError for weights
    that name no model."""
    from evc.eval.bench import PAPER_CASES, SIZES

    if args.weights and not args.models:
        from evc.models.metadata import held_model, read_metadata

        try:
            name = held_model(args.weights, read_metadata(args.weights)).name
        except ModelError as exc:
            raise CLIError(f"{exc} (--models NAME)") from None
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

    from evc.eval.bench import (
        SPEED_TABLE_HEADER, SPEED_TABLE_NOTE, coder_throughput, compare_paths, format_coder_throughput,
        format_speed_row,
    )

    cases = bench_cases(args)
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"evc {evc.__version__}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"{args.arithmetic} entropy parameters, median of {args.repeat} after warm-up; times in ms")
    for device in devices:
        if torch.device(device).type == "cuda":
            print(f"device: {torch.cuda.get_device_name(torch.device(device))}")
    print(SPEED_TABLE_HEADER)
    for device in devices:
        rows = compare_paths(
            cases, device, weights=args.weights, exact=args.arithmetic != "float",
            arithmetic="float64" if args.arithmetic == "float64" else "int8", substreams=args.substreams,
            fast_precision=args.fast_precision, plain_only=args.plain_only, repeat=args.repeat,
        )
        for row in rows:
            print(format_speed_row(row, device), flush=True)  # rows come slowly: show each at once
    print(SPEED_TABLE_NOTE)
    for width, height in sorted({(w, h) for _, w, h in cases}):
        enc_s, dec_s, n = coder_throughput(width, height - height % 16, args.repeat)
        print(format_coder_throughput(width, height, enc_s, dec_s, n))
    return EXIT_OK


def cmd_complexity(args: argparse.Namespace) -> int:
    from evc.eval.complexity import format_complexity

    names = [evc.models.registry.get_spec(n).name for n in args.models] if args.models else list(evc.MODELS)
    for name in names:
        for line in format_complexity(name):
            print(line)
        print()
    return EXIT_OK


def register(commands: argparse._SubParsersAction) -> None:
    """Add the evaluation commands to the `evc` parser's subcommands."""
    ev = commands.add_parser("eval", help="measure RD and speed on a folder of images (JSON results)")
    ev.add_argument("folder", nargs="?", help="folder of images, e.g. ../shared/data/kodak")
    ev.add_argument("--validation-split", action="store_true",
                    help="the 16 training photos held out of training (evc.shared_data.VALIDATION_PHOTOS) instead of a folder")
    ev.add_argument("--train-sample", action="store_true",
                    help="16 photos the campaign trains on (evc.shared_data.TRAIN_SAMPLE_PHOTOS), the split's mix of "
                         "sources: the train-vs-split gap")
    add_option(ev, "--model", help="one of our models (see evc models); default: the one --weights name, else the "
                                   "best shipped model, unless only --baseline is given")
    ev.add_argument("--baseline", action="append", metavar="KEY",
                    help="a live baseline codec: jpeg420, jpeg444, webp, avif, jxl, jpeg2000, heic, or all (repeatable)")
    points = ev.add_mutually_exclusive_group()
    points.add_argument("--qualities", type=int, default=8, metavar="N", help="N qualities evenly in [0, 1] (default 8)")
    points.add_argument("--anchors", action="store_true", help="the model's 4 trained rate anchors")
    ev.add_argument("--out", default="evc-results", help="folder for the JSON results (default: evc-results)")
    add_option(ev, "--force", help="overwrite existing result files")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    add_option(ev, "--weights",
               help="weights file or folder instead of the shipped ones (they name their model: --model optional)")
    add_option(ev, "--device", help="cpu, cuda, cuda:N")
    add_option(ev, "--encoder-level", help="scalable models: code with encoders 0..K only; the results are named "
                                           "MODEL-levelK.json (default: every level tried, the best file kept)")
    ev.set_defaults(run=cmd_eval)

    compare = commands.add_parser(
        "compare", help="BD-rates of RD results against like-for-like anchors, and RD plots",
        description="BD-rates of RD results and RD plots. By default each curve is anchored on a curve measured "
                    "on the same images (the result files say which): a live baseline among RESULTS, first of "
                    "WebP, JPEG 4:2:0, JPEG 4:4:4, AVIF, HEIC, JPEG XL, JPEG 2000; else the published VTM curve "
                    "when the curves are on the 24 Kodak images (shown beside a live anchor there too). A curve "
                    "with no anchor on its images gets no BD-rate, which would compare the images rather than "
                    "the codecs: the report says so and gives its quality at 0.25-1 bpp instead. Tables and "
                    "legends use short codec labels; the full descriptions are listed under the tables.",
    )
    compare.add_argument("results", nargs="+", metavar="RESULTS.json", help="curves (evc eval output or CompressAI JSON)")
    compare.add_argument("--anchor", action="append", metavar="FILE",
                         help="anchor every curve on this curve instead (repeatable), even one of other images "
                              "(BD-rates then marked 'different images')")
    compare.add_argument("--metric", choices=["psnr", "ms-ssim", "both"], default="both")
    compare.add_argument("--published", action="store_true", help="add the paper's EVC-LL/MM/SS Kodak curves")
    compare.add_argument("--plot", metavar="STEM", help="write STEM-psnr.png/.svg (and -ms-ssim)")
    compare.add_argument("--title", help="plot title (default: what is compared, e.g. "
                                         "'PSNR vs bpp on 3 images (photos), anchor WebP')")
    compare.add_argument("--long-labels", action="store_true",
                         help="full curve descriptions (library versions, weights) in tables and legends")
    compare.add_argument("--quiet", action="store_true", help="no progress bar")
    add_option(compare, "--force", help="overwrite existing plot files")
    compare.set_defaults(run=cmd_compare)

    bench = commands.add_parser(
        "bench", help="encode/decode latency and FPS (default: LL and MM at 768x512, SS and Scale-SS at 1920x1080)"
    )
    bench.add_argument("--models", nargs="+", help="these models (at --sizes, default both)")
    add_option(bench, "--device", help="default: cpu, and cuda when present")
    bench.add_argument("--sizes", nargs="+", choices=["768x512", "1920x1080"], help="these sizes (every model)")
    bench.add_argument("--repeat", type=positive_int, default=3)
    add_option(bench, "--arithmetic", help="entropy-parameter arithmetic of the files coded (default exact)")
    add_option(bench, "--substreams", help=None)
    bench.add_argument("--fast-precision", choices=["float16", "bfloat16"],
                       help="precision of the fast path (default: float16 on CUDA, bfloat16 on CPU)")
    bench.add_argument("--plain-only", action="store_true", help="time the plain float32 path only")
    add_option(bench, "--weights",
               help="weights to use (else shipped, else random); alone, the model they name at its paper size")
    bench.set_defaults(run=cmd_bench)

    complexity = commands.add_parser("complexity", help="parameters and MACs per module, next to the paper's")
    complexity.add_argument("--models", nargs="+", help="default: every model")
    complexity.set_defaults(run=cmd_complexity)

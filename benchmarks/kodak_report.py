"""Regenerate docs/results.md: Kodak RD of our shipped models and the live baselines, BD-rates
against VTM and the live codecs, RD plots, CPU speed and complexity. One command:

    python benchmarks/kodak_report.py [--rerun] [--skip-bench | --plots-only]

Evaluations already in docs/results/kodak/*.json are reused unless --rerun (scripts/ship_weights.py
writes the shipped models' ones). --skip-bench keeps the previous report's speed section as it was.
--plots-only redraws the RD plots from those results and writes nothing else (after a change of style).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

import evc
from evc.eval.baselines import baseline_codecs
from evc.eval.bdrate import bd_rate, bd_rate_table, format_bd_table
from evc.eval.bench import PAPER_CASES, compare_paths
from evc.eval.complexity import PUBLISHED, model_complexity
from evc.eval.plots import plot_rd
from evc.eval.published import VTM_KODAK, paper_curves
from evc.eval.results import RDCurve, curve_arithmetic, load_curve, save_curve
from evc.eval.runner import EVCUnderTest, evaluate, list_images
from evc.shared_data import KODAK_DIR
from evc.train.speed import cpu_model_name

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results" / "kodak"
REPORT = ROOT / "docs" / "results.md"


# Short labels for tables and plots; the full names (library, version, settings) are in the codec table.
SHORT_NAMES = {
    "jpeg420": "JPEG 4:2:0", "jpeg444": "JPEG 4:4:4", "webp": "WebP", "avif": "AVIF (aom, speed 6)",
    "jxl": "JPEG XL (effort 7)", "jpeg2000": "JPEG 2000", "heic": "HEIC (x265)",
}


def evaluated(key: str, make, images, kind: str, rerun: bool, saved_only: bool = False) -> RDCurve:
    """The saved results of ``key`` (unless ``rerun``), else evaluated now and saved; ``saved_only``:
    exits when there are none rather than evaluate."""
    path = RESULTS / f"{key}.json"
    if path.is_file() and not rerun:
        return load_curve(path)
    if saved_only:
        sys.exit(f"{path} is missing: run without --plots-only to evaluate {key}")
    curve = evaluate(make(), images, kind)
    save_curve(curve, path)
    return curve


SPEED_HEADING = "## Speed on this CPU"
# Written by hand (what ships, where it stands, the dated commands behind it): each run keeps it as it is.
STATUS_HEADING = "## Status"


def kept_section(previous: str, heading: str) -> list[str]:
    """The previous report's section under ``heading`` (up to the next level-2 heading), or nothing."""
    if heading + "\n" not in previous:
        return []
    section = previous[previous.index(heading + "\n"):]
    end = section.find("\n## ", len(heading))
    return [(section if end < 0 else section[:end]).rstrip("\n"), ""]


def our_model_section(curve: RDCurve, published: list[RDCurve]) -> list[str]:
    """A shipped model's measured points, its card, and how far it is from the paper's same model."""
    from evc.models.card import ModelCard

    card = ModelCard.read(evc.MODELS[curve.name].weights_dir)
    lines = [f"### {curve.name} {card.version}", "", *[f"{line.strip()}  " for line in card.lines()[:2]], "",
             "| q index | bpp | PSNR (dB) | MS-SSIM |", "| --- | --- | --- | --- |"]
    ms = curve.ms_ssim or [float("nan")] * len(curve.bpp)
    for q, b, p, m in zip(curve.meta["settings"], curve.bpp, curve.psnr or [], ms):
        lines.append(f"| {q} | {b:.4f} | {p:.3f} | {m:.4f} |")
    arithmetic = curve_arithmetic(curve)
    lines += ["", f"Measured {curve.meta.get('date', '?')} ({curve.meta.get('machine', '?')}) by "
              "`python scripts/ship_weights.py` when these weights shipped: real files, exact entropy parameters "
              f"in {arithmetic} (int8 costs about 0.4 % rate against float64: README, exact arithmetic)."]
    paper = next((c for c in published if c.name.startswith(curve.name.replace("-", "_"))), None)
    if paper is not None:
        gap = ""
        try:
            result = bd_rate(paper, curve)
            gap = f"BD-rate {result.percent:+.1f} % against the paper's curve over {result.overlap[0]:.1f}-{result.overlap[1]:.1f} dB; "
        except evc.EVCError:
            gap = "its PSNR range does not overlap the paper's curve, so no BD-rate against it; "
        if card.earlier_runs and card.totals is not None:  # all its training runs, not only the last
            seen = (f"{card.totals.crops:,} crops of {card.crop} px in {card.totals.seconds / 3600:.1f} hours "
                    f"over all its training runs (the last on {card.device})")
        else:
            seen = f"{card.crops_seen:,} crops of {card.crop} px in {card.training_hours:.1f} hours on {card.device}"
        lines += ["", f"Against the paper's {curve.name} ({paper.psnr[0]:.2f}-{paper.psnr[-1]:.2f} dB at "
                  f"{paper.bpp[0]:.3f}-{paper.bpp[-1]:.3f} bpp): {gap}ours spans {min(curve.psnr):.2f}-{max(curve.psnr):.2f} dB "
                  f"at {min(curve.bpp):.3f}-{max(curve.bpp):.3f} bpp. The gap is compute: this model saw {seen} "
                  "(docs/training.md), a small fraction of a full GPU training."]
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rerun", action="store_true", help="re-evaluate even where results exist")
    parser.add_argument("--skip-bench", action="store_true", help="keep the previous report's speed section")
    parser.add_argument("--plots-only", action="store_true", help="redraw the RD plots from the saved results only")
    args = parser.parse_args()
    if args.plots_only and args.rerun:
        parser.error("--plots-only draws the saved results: not with --rerun")
    RESULTS.mkdir(parents=True, exist_ok=True)
    images = list_images(KODAK_DIR)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    previous = REPORT.read_text() if REPORT.is_file() else ""

    ours = []
    for name, spec in evc.MODELS.items():
        if spec.has_weights():
            # The 4 trained anchors and one interpolated rate between each pair: 7 points.
            make = lambda: EVCUnderTest.at_anchors(evc.load(name), "shipped", between=1)  # noqa: E731
            ours.append(evaluated(name, make, images, "ours", args.rerun, args.plots_only))
    live = [evaluated(key, lambda c=codec: c, images, "baseline", args.rerun, args.plots_only)
            for key, codec in baseline_codecs().items()]
    full_names = {}
    for key, curve in zip(baseline_codecs(), live):
        full_names[SHORT_NAMES[key]] = curve.name
        curve.name = SHORT_NAMES[key]
    published = paper_curves()
    vtm = load_curve(VTM_KODAK)

    styles = {c.name: "ours" for c in ours} | {c.name: "published" for c in [*published, vtm]}
    curves = [*ours, *published, *live]
    # Versions that shipped before (kept by scripts/ship_weights.py as NAME-VERSION.json): in the tables,
    # so each release's progress stays measurable; the plots show what ships.
    earlier = []
    for curve in ours:
        for path in sorted(RESULTS.glob(f"{curve.name}-v*.json")):
            old = load_curve(path)
            old.name = f"{curve.name} {path.stem.removeprefix(curve.name + '-')}"
            earlier.append(old)
    plots = {metric: RESULTS.parent / f"kodak-rd-{metric}" for metric in ("psnr", "ms-ssim")}
    for metric, stem in plots.items():
        plot_rd([*curves, vtm], stem, metric=metric, styles=styles)  # titled with the images compared
    if args.plots_only:
        print(f"wrote {', '.join(f'{stem}.png/.svg' for stem in plots.values())}")
        return
    lines = [
        "# Results on Kodak",
        "",
        f"Generated {date} by `python benchmarks/kodak_report.py` on {cpu_model_name()} "
        f"({torch.get_num_threads()} threads), evc {evc.__version__}, torch {torch.__version__}. "
        "Every number below is measured by that command unless marked as published; evaluations saved by "
        "earlier runs are reused, and each section or row gives the date of its own measurement.",
        "",
        "All 24 Kodak images, RGB PSNR and MS-SSIM on 8-bit images, bits per pixel from the real file size "
        "(headers included), means over images per rate setting. Per-image values and library versions: "
        "`docs/results/kodak/*.json` (CompressAI schema). BD-rate: PCHIP interpolation of log-rate over "
        "the overlapping quality range (given in brackets); negative = fewer bits at equal quality.",
        "",
        *kept_section(previous, STATUS_HEADING),
        "## Our models",
        "",
    ]
    for curve in ours:
        lines += our_model_section(curve, published)
    if not ours:
        lines += [
            "**No trained weights ship yet, so no EVC model of ours appears in these tables.** The paper's "
            "published EVC curves are shown for reference (marked *paper*); our trained models will be "
            "added by the same command once weights ship. Until then evc has no measured RD figure of its own.",
            "",
        ]
    for metric, label in (("psnr", "PSNR"), ("ms-ssim", "MS-SSIM")):
        anchors = [vtm, *live]
        compared = [*ours, *earlier, *published, *live]
        table = bd_rate_table(compared, anchors, metric)
        rows = [i for i, row in enumerate(table) if any(cell is not None for cell in row)]
        shown = [compared[i] for i in rows]
        table = [table[i] for i in rows]
        lines += [f"## BD-rate ({label}) against VTM (published) and the live codecs", ""]
        if len(shown) < len(compared):
            lines += [f"(Curves without {label} values are left out: the paper's EVC curves give PSNR only.)", ""]
        lines += [format_bd_table(shown, anchors, table, metric), ""]
        stem = plots[metric]
        lines += [f"![Kodak RD ({label})](results/{stem.name}.png) ([SVG](results/{stem.name}.svg))", ""]

    lines += ["## Live codecs measured here", "",
              "| codec | settings | bpp range | encode ms | decode ms | versions | measured |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for c in live:
        versions = ", ".join(f"{k} {v}" for k, v in c.meta.get("versions", {}).items())
        lines.append(
            f"| {full_names[c.name]} | {c.meta.get('setting_name')} {c.meta.get('settings')} | {min(c.bpp):.3f}-{max(c.bpp):.3f} | "
            f"{1e3 * min(c.encoding_time):.1f}-{1e3 * max(c.encoding_time):.1f} | "
            f"{1e3 * min(c.decoding_time):.1f}-{1e3 * max(c.decoding_time):.1f} | {versions} | "
            f"{c.meta.get('date', '?')}, {c.meta.get('machine', '?')} |"
        )
    # Evaluations are reused across runs of this script (--rerun measures again), so each row carries the
    # date and machine of its own measurement, not this report's.
    lines += ["", "Times are per image, single process, library threading as shipped, on the date and machine "
              "of each row (the RD values do not depend on the machine).", ""]

    lines += ["## Complexity", "", "`evc complexity` (convolution MACs; the paper's counts also include biases and "
              "activations, 0.5-1.5 % more):", "", "| model | params (M) | g_a GMAC | g_s GMAC | entropy GMAC | paper params / g_a / g_s |",
              "| --- | --- | --- | --- | --- | --- |"]
    for name in evc.MODELS:
        c = model_complexity(name)
        paper = " / ".join(str(v) for v in PUBLISHED[name]) if name in PUBLISHED else ""
        lines.append(f"| {name} | {c.total_params / 1e6:.2f} | {c.macs['encoder'] / 1e9:.1f} | {c.macs['decoder'] / 1e9:.1f} | "
                     f"{c.macs['entropy'] / 1e9:.1f} | {paper} |")
    lines += ["", "(768x512; scalable models count all four encoders.)", ""]

    if args.skip_bench:
        lines += kept_section(previous, SPEED_HEADING)
    else:
        lines += [SPEED_HEADING, "",
                  "Measured by this command with the code of `evc bench --device cpu` (the paper's cases: LL and MM "
                  "at 768x512, SS and Scale-SS at 1920x1080; synthetic image, median of 3 after warm-up, entropy "
                  "coding included, exact entropy parameters). Each case runs the plain float32 path and the fast "
                  "path (bfloat16, channels-last transforms) in the same run. Models without shipped weights run "
                  "with random weights: network time is representative, entropy-coding time is not.", "",
                  "| model | weights | size | path | encode ms | encode FPS | decode ms (coding) | decode FPS | "
                  "speed-up enc / dec |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in compare_paths(PAPER_CASES, "cpu"):
            r = row.result
            lines.append(
                f"| {r.model} | {row.weights} | {r.width}x{r.height} | {row.path} | {r.encode_s * 1e3:.0f} | "
                f"{r.encode_fps:.2f} | {r.decode_s * 1e3:.0f} ({r.decode_coding_s * 1e3:.0f}) | {r.decode_fps:.2f} | "
                f"{row.encode_speedup:.2f} / {row.decode_speedup:.2f} |"
            )
            print(lines[-1], file=sys.stderr)
        lines += ["", "The paper's real-time claims (30 FPS for EVC-LL at 768x512 and EVC-SS at 1920x1080) are GPU "
                  "figures; on this 2-core CPU both are far slower (see the FPS columns). GPU figures come from "
                  "`evc bench --device cuda` on a GPU machine.", ""]
    REPORT.write_text("\n".join(lines) + "\n")
    print(f"wrote {REPORT}")


if __name__ == "__main__":
    main()

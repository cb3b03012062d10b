"""The recipe pilots' table: training done and validation RD of each pilot, BD-rates against a reference.

    python benchmarks/pilot_table.py --runs PILOTS_DIR --results VAL_DIR --reference VAL_DIR/init/EVC-SS.json

PILOTS_DIR holds one run folder per pilot (scripts/pilots.sh); VAL_DIR/<pilot>/EVC-SS.json is that
pilot's `evc eval --validation-split --weights PILOTS_DIR/<pilot>/export --anchors` result. Prints a
Markdown table: steps, crops, crops/s over the run (its logged training time), the four anchors' bpp / dB on the validation split,
and the PSNR BD-rate against the reference (negative = fewer bits at equal quality).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from evc.eval.bdrate import bd_rate
from evc.eval.results import load_curve
from evc.train.config import read_toml


def run_summary(run: Path) -> dict[str, float]:
    """Steps, crops and mean crops/s of a run, from its train.csv and config.toml."""
    rows = list(csv.DictReader((run / "train.csv").open()))
    config = read_toml(run / "config.toml")  # the run's resolved settings
    batch, crop = config["batch_size"], config["crop"]
    steps = int(rows[-1]["step"])
    seconds = float(rows[-1]["elapsed_s"])  # the run's own training time (a new run: no earlier sessions)
    return {"steps": steps, "batch": batch, "crop": crop, "crops": steps * batch, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, type=Path)
    parser.add_argument("--results", required=True, type=Path)
    parser.add_argument("--reference", required=True, type=Path, help="curve the BD-rates are against")
    parser.add_argument("--pilots", nargs="+", default=["base", "crop256", "lr3e-4", "high"])
    args = parser.parse_args()
    reference = load_curve(args.reference)
    print(f"| pilot | batch x crop | steps | crops (128 px equivalents) | crops/s | validation split at the 4 anchors "
          f"(bpp / dB) | BD-rate vs {args.reference.parent.name} |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for pilot in args.pilots:
        result = args.results / pilot / "EVC-SS.json"
        if not result.is_file():
            print(f"| {pilot} | (not evaluated) | | | | | |")
            continue
        curve = load_curve(result)
        run = run_summary(args.runs / pilot)
        equivalents = run["crops"] * (run["crop"] / 128) ** 2
        points = ", ".join(f"{b:.3f} / {p:.2f}" for b, p in zip(curve.bpp, curve.psnr))
        bd = bd_rate(reference, curve)
        print(f"| {pilot} | {run['batch']} x {run['crop']} | {run['steps']:,} | {run['crops']:,} ({equivalents:,.0f}) "
              f"| {run['crops'] / run['seconds']:.2f} | {points} | {bd.percent:+.1f} % |")


if __name__ == "__main__":
    main()

"""Training curves of several runs side by side: a table of the logged loss (window means) and a plot.

    python benchmarks/compare_runs.py RUN_A RUN_B [...] [--plot docs/results/curves.png] [--every 2]

Each RUN is a run folder of `evc train` (its train.csv, and val.csv for the last validation).
Used for the fast-vs-plain training step check and the recipe pilots (docs/training.md).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def read_rows(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--plot", type=Path, help="write the loss curves to this PNG")
    parser.add_argument("--every", type=int, default=1, help="print every N-th logged row")
    args = parser.parse_args()

    train = {run: read_rows(run / "train.csv") for run in args.runs}
    steps = sorted({int(r["step"]) for rows in train.values() for r in rows})
    by_step = {run: {int(r["step"]): r for r in rows} for run, rows in train.items()}
    names = [run.name for run in args.runs]
    print("loss (window mean) per logged step")
    print(f"{'step':>6} " + " ".join(f"{n:>16}" for n in names))
    for i, step in enumerate(steps):
        if i % args.every and step != steps[-1]:
            continue
        cells = [f"{by_step[run][step]['loss']:>16.3f}" if step in by_step[run] else f"{'':>16}" for run in args.runs]
        print(f"{step:>6} " + " ".join(cells))
    print("\nlast validation (Kodak images at the 4 anchors: bpp / dB)")
    for run in args.runs:
        val = run / "val.csv"
        rows = read_rows(val) if val.is_file() else []
        if rows:
            last = max(r["step"] for r in rows)
            points = ", ".join(f"{r['bpp']:.3f} / {r['psnr']:.2f}" for r in rows if r["step"] == last)
            print(f"{run.name}: step {int(last)}: {points}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        # Constrained layout keeps the axis labels inside the figure; the loss's formula goes in the title,
        # which has the room (as the y label it ran into the figure's edge).
        fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
        for run in args.runs:
            rows = train[run]
            ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=run.name)
        ax.set_xlabel("step")
        ax.set_ylabel("loss (window mean, log scale)")
        ax.set_title("training loss: lambda 255^2 MSE + bpp", fontsize="medium")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="best")
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=110)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()

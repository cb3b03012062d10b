"""The paper's two methods run for real at CPU scale (issue 22): mask decay against a student trained
alone, the sparsity-loss ablation, and Scale-SS by residual representation learning (RRL).

    python scripts/paper_methods.py plan                        # each phase: state, trained minutes, command
    python scripts/paper_methods.py run [--until TIME] [PHASE]  # start the next unfinished phase in the background
    python scripts/paper_methods.py report [--no-eval]          # evaluate, BD-rates, gap closed, plot

Every phase trains on the campaign's data and recipe (docs/training.md: 16 crops of 128 px, the
validation split held out, rate parameters at 10x the lr), one at a time, on the CPU:

| phase       | what                                                                        | budget          |
| ----------- | --------------------------------------------------------------------------- | --------------- |
| teacher     | EVC-LL from scratch, lr 1e-3                                                 | 130 min trained |
| student     | EVC-SS by mask decay from the teacher (ours), then fine-tuned, lr 1e-3       | 200 + 200 steps |
| alone       | EVC-SS from scratch, lr 1e-3, for the student's steps (the paper's baseline) | 400 steps       |
| equal       | EVC-SS from scratch, lr 1e-3, for the teacher's plus the student's minutes   | equal compute   |
| ablation-*  | decay only, 60 steps, ours / l1 / l2, masks logged every 5 steps            | 60 steps each   |
| scale-ss    | Scale-SS by RRL from the shipped EVC-SS (copied when it starts), lr 3e-4     | 100 min trained |

The budget of all phases together is about 8.5 hours of the two cores (issue 22 allows about 8); the
teacher is the issue's leg of 150 minutes cut to 130 to stay near it.

`run` starts one phase in its own session (pause it with kill -STOP -- -PID) and, with --until, stops it
at that time with SIGINT: the trainer writes its checkpoint and export, and the next `run` resumes it.
Step budgets keep their schedule across sessions; time budgets count only the minutes trained. A phase
that ended writes FINISHED in its folder. Runs live in $EVC_EXPERIMENT (default
~/evc-runs/paper-methods)/<phase>/; the measured curves and report.md in $EVC_PAPER_RESULTS (default
docs/results/paper-methods), to be committed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = Path(os.environ.get("EVC_EXPERIMENT", Path.home() / "evc-runs" / "paper-methods"))
# The measured curves and report.md are small and are the experiment's record: they live in the repo, so
# that they outlive the machine that trained (the runs' folders do not).
RESULTS = Path(os.environ.get("EVC_PAPER_RESULTS", ROOT / "docs" / "results" / "paper-methods"))
DATA = os.environ.get("EVC_DATA", str(ROOT.parent / "shared" / "data" / "train"))
PYTHON = os.environ.get("PYTHON", str(ROOT / ".venv" / "bin" / "python"))

# The campaign's recipe (scripts/train_cpu.sh), with the lr of a model trained from scratch.
RECIPE = [
    "--data", DATA, "--device", "cpu", "--workers", "0", "--batch-size", "16", "--crop", "128",
    "--rate-lr-factor", "10", "--warmup-steps", "100", "--val-every", "1000000", "--val-images", "4",
]
SCRATCH_LR = ["--lr", "1e-3"]
TEACHER_MINUTES = 130
DECAY_STEPS, FINETUNE_STEPS = 200, 200
ABLATION_DECAY_STEPS = 60
SCALE_MINUTES = 100
SHIPPED_SS = ROOT / "src" / "evc" / "weights" / "EVC-SS"
# Scale-SS starts from a copy of the EVC-SS that ships when it starts, so that the comparison stays with
# that version whatever ships later.
SCALE_INIT = "init-EVC-SS"


@dataclass
class Phase:
    name: str
    what: str
    command: str  # train | distill
    args: list[str]
    export: str  # the result's folder, relative to the phase's folder
    needs: list[str] = field(default_factory=list)
    checkpoints: tuple[str, ...] = ("checkpoint.pt",)  # whose elapsed_s are the phase's trained seconds

    @property
    def folder(self) -> Path:
        return EXPERIMENT / self.name

    @property
    def finished(self) -> bool:
        return (self.folder / "FINISHED").is_file()

    @property
    def started(self) -> bool:
        return any((self.folder / c).is_file() for c in self.checkpoints)

    def trained_seconds(self) -> float:
        import torch

        total = 0.0
        for name in self.checkpoints:
            path = self.folder / name
            if path.is_file():
                total += float(torch.load(path, map_location="cpu", weights_only=False).get("elapsed_s", 0.0))
        return total

    def argv(self) -> list[str]:
        """The training command: a fresh start, or --resume from the phase's own checkpoint."""
        out = ["--out", str(self.folder)]
        if self.started:
            # The saved config holds every setting (distill: decay/config.toml, its phases' steps).
            return [PYTHON, "-m", "evc", self.command, *out, "--resume"]
        return [PYTHON, "-m", "evc", self.command, *out, *self.args]


def teacher_export() -> str:
    return str(EXPERIMENT / "teacher" / "export")


def phases() -> list[Phase]:
    every = ["--checkpoint-every", "50", "--log-every", "25"]
    distill = [*RECIPE, *SCRATCH_LR, "--teacher", teacher_export(), "--student", "EVC-SS"]
    equal_minutes = "<the teacher's plus the student's minutes>"  # known once both have finished
    student = Phase(
        "student", "EVC-SS by mask decay from the teacher (ours), then fine-tuned", "distill",
        [*distill, *every, "--sparsity", "ours", "--decay-steps", str(DECAY_STEPS),
         "--finetune-steps", str(FINETUNE_STEPS), "--mask-lr", "1e-2"],
        "finetune/export", ["teacher"], ("decay/checkpoint.pt", "finetune/checkpoint.pt"),
    )
    teacher = Phase(
        "teacher", "EVC-LL from scratch", "train",
        ["--model", "EVC-LL", *RECIPE, *SCRATCH_LR, *every, "--time-limit-minutes", str(TEACHER_MINUTES)], "export",
    )
    if student.finished:
        equal_minutes = f"{(teacher.trained_seconds() + student.trained_seconds()) / 60:.1f}"
    out = [
        teacher,
        student,
        Phase("alone", "EVC-SS from scratch for the student's steps", "train",
              ["--model", "EVC-SS", *RECIPE, *SCRATCH_LR, *every, "--steps", str(DECAY_STEPS + FINETUNE_STEPS)], "export"),
        Phase("equal", "EVC-SS from scratch for the teacher's and the student's minutes", "train",
              ["--model", "EVC-SS", *RECIPE, *SCRATCH_LR, "--checkpoint-every", "200", "--log-every", "50",
               "--time-limit-minutes", equal_minutes], "export", ["teacher", "student"]),
    ]
    for loss in ("ours", "l1", "l2"):
        out.append(Phase(
            f"ablation-{loss}", f"mask decay with the {loss} sparsity loss, decay phase only", "distill",
            [*distill, "--checkpoint-every", "20", "--log-every", "5", "--sparsity", loss,
             "--decay-steps", str(ABLATION_DECAY_STEPS), "--finetune-steps", "0", "--mask-lr", "2e-2"],
            "decay/export", ["teacher"], ("decay/checkpoint.pt",),
        ))
    out.append(Phase(
        "scale-ss", "Scale-SS by RRL from the shipped EVC-SS", "train",
        ["--model", "Scale-SS", *RECIPE, "--lr", "3e-4", "--init-weights", str(EXPERIMENT / "scale-ss" / SCALE_INIT),
         "--checkpoint-every", "100", "--log-every", "25", "--time-limit-minutes", str(SCALE_MINUTES)],
        "export",
    ))
    return out


def running() -> list[tuple[Phase, int]]:
    """Phases whose recorded process is alive."""
    alive = []
    for phase in phases():
        pid_file = phase.folder / "PID"
        if pid_file.is_file():
            pid = int(pid_file.read_text())
            stat = Path(f"/proc/{pid}/stat")
            # A process that ended but was not reaped yet (state Z) is not running.
            if stat.is_file() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
                alive.append((phase, pid))
    return alive


def cmd_plan(_: argparse.Namespace) -> int:
    alive = {p.name for p, _ in running()}
    for phase in phases():
        state = (
            "running" if phase.name in alive else "finished" if phase.finished
            else "stopped, resumable" if phase.started else "not started"
        )
        minutes = phase.trained_seconds() / 60 if phase.started else 0.0
        print(f"{phase.name:15} {state:19} {minutes:6.1f} min trained  {phase.what}")
        print(f"{'':15} {shlex.join(phase.argv())}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    alive = running()
    if alive:
        print(f"{alive[0][0].name} is running (PID {alive[0][1]}); one training at a time", file=sys.stderr)
        return 2
    table = {p.name: p for p in phases()}
    if args.phase:
        if args.phase not in table:
            print(f"unknown phase {args.phase}; phases: {', '.join(table)}", file=sys.stderr)
            return 2
        phase = table[args.phase]
    else:
        waiting = [p for p in table.values() if not p.finished]
        if not waiting:
            print("every phase has finished; next: python scripts/paper_methods.py report")
            return 0
        phase = waiting[0]
    if phase.finished:
        print(f"{phase.name} has finished already", file=sys.stderr)
        return 2
    missing = [n for n in phase.needs if not table[n].finished]
    if missing:
        print(f"{phase.name} needs {', '.join(missing)} finished first", file=sys.stderr)
        return 2
    argv = phase.argv()
    if args.until:
        seconds = int(subprocess.run(["date", "-d", args.until, "+%s"], capture_output=True, text=True, check=True).stdout)
        left = seconds - int(time.time())
        if left < 300:
            print(f"--until {args.until} leaves less than 5 minutes", file=sys.stderr)
            return 2
        # SIGINT: the trainer saves its checkpoint and export and exits; KILL only if it hangs.
        # --foreground: timeout would otherwise move the trainer into a process group of its own, which
        # the pause command below (kill -STOP -- -PID, the session's group) would miss.
        argv = ["timeout", "--foreground", "--signal=INT", "--kill-after=300", str(left), *argv]
    phase.folder.mkdir(parents=True, exist_ok=True)
    if phase.name == "scale-ss" and not phase.started:
        shutil.rmtree(phase.folder / SCALE_INIT, ignore_errors=True)
        shutil.copytree(SHIPPED_SS, phase.folder / SCALE_INIT)
    log = phase.folder / "run.log"
    script = (
        "echo -10 > /proc/self/autogroup 2> /dev/null || true\n"
        f"{shlex.join(argv)} >> {shlex.quote(str(log))} 2>&1 && touch {shlex.quote(str(phase.folder / 'FINISHED'))}"
    )
    # Its output goes to the log only: a caller reading this command's output through a pipe must not
    # wait for the training to end.
    process = subprocess.Popen(
        ["bash", "-c", script], cwd=ROOT, start_new_session=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    (phase.folder / "PID").write_text(str(process.pid))
    print(f"{phase.name}: PID {process.pid} (pause: kill -STOP -- -{process.pid}), log {log}")
    print(shlex.join(argv))
    return 0


# -- report -------------------------------------------------------------------------------------------

SETS = ("validation", "kodak")


def result_path(set_name: str, key: str) -> Path:
    return RESULTS / set_name / f"{key}.json"


def evaluations() -> list[tuple[str, Path, int | None]]:
    """(result key, weights, encoder level) of every model to measure: each finished phase's result,
    Scale-SS at each of its levels, and the EVC-SS it started from."""
    table = {p.name: p for p in phases()}
    out = [(p.name, p.folder / p.export, None) for p in table.values() if p.finished and p.name != "scale-ss"]
    if table["scale-ss"].finished:
        # The EVC-SS it started from first (every level is compared with it), then level 0 (the cheapest)
        # and level 3 (which must beat it to ship) before 1 and 2, in case time runs out.
        out.append(("shipped-ss", table["scale-ss"].folder / SCALE_INIT, None))
        out += [(f"scale-ss-level{k}", table["scale-ss"].folder / "export", k) for k in (0, 3, 1, 2)]
    return out


def evaluate_missing() -> None:
    """Code each model's files at its 4 anchors on both sets; results already written are kept."""
    import evc
    from evc.eval.results import save_curve
    from evc.eval.runner import EVCUnderTest, evaluate, list_images
    from evc.shared_data import KODAK_DIR, validation_photo_paths

    images = {"validation": validation_photo_paths(), "kodak": list_images(KODAK_DIR)}
    for key, weights, level in evaluations():
        missing = [name for name in SETS if not result_path(name, key).is_file()]
        codec = evc.load(weights=weights, device="cpu") if missing else None  # once for both sets
        for set_name in missing:
            target = result_path(set_name, key)
            curve = evaluate(EVCUnderTest.at_anchors(codec, str(weights), encoder_level=level), images[set_name], "ours")
            curve.name = key  # the phase, not the model: several phases train EVC-SS
            curve.meta["dataset"] = set_name
            target.parent.mkdir(parents=True, exist_ok=True)
            save_curve(curve, target)
            print(f"{key} on {set_name}: {target}", flush=True)


def _bd(anchor: str, test: str, set_name: str, psnr: bool = False) -> float | None:
    """BD-rate (%) of ``test`` against ``anchor``, or with ``psnr`` BD-PSNR (dB); None where a result is
    missing or the curves' quality (BD-rate) or rate (BD-PSNR) ranges do not overlap."""
    from evc.eval.bdrate import bd_quality, bd_rate
    from evc.eval.results import ResultsError, load_curve

    a, t = result_path(set_name, anchor), result_path(set_name, test)
    if not (a.is_file() and t.is_file()):
        return None
    try:
        if psnr:
            return bd_quality(load_curve(a), load_curve(t)).db
        return bd_rate(load_curve(a), load_curve(t)).percent
    except ResultsError:
        return None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f} %"


def _db(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f} dB"


def gap_closed(student: float | None, teacher: float | None, higher_is_better: bool = False) -> float | None:
    """(student by mask decay - baseline) / (teacher - baseline), both measured against the baseline
    (BD-rate: negative is better; BD-PSNR with ``higher_is_better``): 1 = the student matches the
    teacher, 0 = no better than the baseline. None when the teacher is not ahead of the baseline (no
    gap to close) or a value is missing."""
    if student is None or teacher is None:
        return None
    if (teacher <= 0) if higher_is_better else (teacher >= 0):
        return None
    return student / teacher


def _gap_cell(baseline: str, set_name: str) -> str:
    """The share of the gap closed in BD-rate, or in BD-PSNR where the quality ranges do not overlap."""
    by_rate = gap_closed(_bd(baseline, "student", set_name), _bd(baseline, "teacher", set_name))
    if by_rate is not None:
        return f"{by_rate * 100:.0f} % (BD-rate)"
    student, teacher = _bd(baseline, "student", set_name, psnr=True), _bd(baseline, "teacher", set_name, psnr=True)
    by_psnr = gap_closed(student, teacher, higher_is_better=True)
    if by_psnr is not None:
        return f"{by_psnr * 100:.0f} % (BD-PSNR; no BD-rate: the quality ranges do not overlap)"
    if teacher is not None and teacher <= 0:
        return "n/a (the teacher is not ahead)"
    return "n/a"


def report_lines() -> list[str]:
    import csv

    from evc.eval.results import load_curve

    import tomllib

    lines = ["| phase | what | steps | crops | trained minutes | validation split at the 4 anchors (bpp / dB) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for phase in phases():
        if not phase.finished:
            # A phase with no folder here may have run on another machine: its curves may still be in RESULTS.
            lines.append(f"| {phase.name} | ({'not finished' if phase.started else 'no run folder here'}) | | | | |")
            continue
        steps = crops = 0
        for name in phase.checkpoints:  # the student's two phases add up
            run = phase.folder / Path(name).parent
            rows = list(csv.DictReader((run / "train.csv").open())) if (run / "train.csv").is_file() else []
            if rows:
                steps += int(rows[-1]["step"])
                crops += int(rows[-1]["step"]) * int(tomllib.loads((run / "config.toml").read_text())["batch_size"])
        result = result_path("validation", phase.name if phase.name != "scale-ss" else "scale-ss-level3")
        points = ""
        if result.is_file():
            curve = load_curve(result)
            points = ", ".join(f"{b:.3f} / {p:.2f}" for b, p in zip(curve.bpp, curve.psnr))
        lines.append(f"| {phase.name} | {phase.what} | {steps:,} | {crops:,} | {phase.trained_seconds() / 60:.1f} | {points} |")
    lines += ["", "| test vs anchor | BD-rate, validation | BD-PSNR, validation | BD-rate, Kodak | BD-PSNR, Kodak |",
              "| --- | --- | --- | --- | --- |"]
    for test, anchor in (("teacher", "alone"), ("student", "alone"), ("equal", "alone"),
                         ("teacher", "equal"), ("student", "equal"), ("student", "teacher"), ("equal", "teacher")):
        cells = [f(_bd(anchor, test, set_name, psnr)) for set_name in SETS for f, psnr in ((_pct, False), (_db, True))]
        lines.append(f"| {test} vs {anchor} | " + " | ".join(cells) + " |")
    lines += ["", "| share of the gap closed (paper, EVC-SS: 28 %, in BD-rate) | validation split | Kodak |",
              "| --- | --- | --- |"]
    for baseline, label in (("alone", "equal steps"), ("equal", "equal compute")):
        lines.append(f"| {label} (against {baseline}) | {_gap_cell(baseline, 'validation')} | {_gap_cell(baseline, 'kodak')} |")
    lines += ["", "| ablation (decay only, merged, no fine-tune), vs ablation-ours | BD-rate, validation "
              "| BD-PSNR, validation | BD-rate, Kodak | BD-PSNR, Kodak |", "| --- | --- | --- | --- | --- |"]
    for loss in ("l1", "l2"):
        cells = [f(_bd("ablation-ours", f"ablation-{loss}", set_name, psnr))
                 for set_name in SETS for f, psnr in ((_pct, False), (_db, True))]
        lines.append(f"| ablation-{loss} | " + " | ".join(cells) + " |")
    lines += ["", "| Scale-SS level | vs the EVC-SS it started from, validation | Kodak | encode time on Kodak (s, mean) |",
              "| --- | --- | --- | --- |"]
    for k in range(4):
        key = f"scale-ss-level{k}"
        kodak = result_path("kodak", key)
        seconds = f"{sum(load_curve(kodak).encoding_time) / 4:.2f}" if kodak.is_file() else ""
        lines.append(f"| {k} | {_pct(_bd('shipped-ss', key, 'validation'))} | {_pct(_bd('shipped-ss', key, 'kodak'))} | {seconds} |")
    return lines


def plot_masks(target: Path) -> Path | None:
    """The removed and the kept masks over the decay phase, for each sparsity loss of the ablation."""
    import csv

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    runs = {loss: EXPERIMENT / f"ablation-{loss}" / "decay" / "masks.csv" for loss in ("ours", "l1", "l2")}
    runs = {loss: path for loss, path in runs.items() if path.is_file()}
    if not runs:
        return None
    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    removed, kept = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colours = {"ours": "#1f77b4", "l1": "#d62728", "l2": "#2ca02c"}
    for loss, path in runs.items():
        rows = list(csv.DictReader(path.open()))
        step = [int(r["step"]) for r in rows]
        removed.plot(step, [float(r["removed_mean"]) for r in rows], color=colours[loss], marker=".", label=f"{loss}: mean")
        removed.plot(step, [float(r["removed_max"]) for r in rows], color=colours[loss], linestyle=":", label=f"{loss}: max")
        kept.plot(step, [float(r["kept_mean"]) for r in rows], color=colours[loss], marker=".", label=f"{loss}: mean")
        kept.plot(step, [float(r["kept_min"]) for r in rows], color=colours[loss], linestyle=":", label=f"{loss}: min")
    removed.set(title="masks of the channels removed", xlabel="decay step", ylabel="relu(mask)")
    kept.set(title="masks of the channels kept", xlabel="decay step", ylabel="mask")
    for axes in (removed, kept):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=120)
    return target


def plot_rd_curves(folder: Path) -> list[Path]:
    """RD plots (PSNR against bpp) of the mask-decay experiment's models and of Scale-SS's levels beside
    the EVC-SS it started from, on each set, from the results measured so far."""
    from evc.eval.plots import plot_rd
    from evc.eval.results import load_curve

    groups = {
        "mask-decay-rd": ["teacher", "student", "alone", "equal"],
        "scale-ss-rd": ["shipped-ss"] + [f"scale-ss-level{k}" for k in range(4)],
    }
    written = []
    for stem, keys in groups.items():
        for set_name in SETS:
            curves = [load_curve(result_path(set_name, key)) for key in keys if result_path(set_name, key).is_file()]
            if len(curves) < 2:
                continue
            title = f"{'validation split (16 photos)' if set_name == 'validation' else 'Kodak (24 images)'}, 4 anchors, real files"
            written += plot_rd(curves, folder / f"{stem}-{set_name}", title=title, bpp_max=None,
                               styles={c.name: "ours" for c in curves})[:1]
    return written


def cmd_report(args: argparse.Namespace) -> int:
    if not args.no_eval:
        evaluate_missing()
    lines = report_lines()
    print("\n".join(lines))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "report.md").write_text("\n".join(lines) + "\n")
    plot = plot_masks(Path(args.plots) / "mask-decay-ablation.png")
    if plot:
        print(f"masks over the decay phase: {plot}")
    for path in plot_rd_curves(Path(args.plots)):
        print(f"RD plot: {path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("plan", help="each phase: state, trained minutes, command").set_defaults(run=cmd_plan)
    run = commands.add_parser("run", help="start the next unfinished phase (or PHASE) in the background")
    run.add_argument("phase", nargs="?")
    run.add_argument("--until", help="stop it (checkpoint and export) at this time, any `date -d` time")
    run.set_defaults(run=cmd_run)
    report = commands.add_parser("report", help="evaluate the finished phases, BD-rates, gap closed, mask plot")
    report.add_argument("--no-eval", action="store_true", help="only the results already measured")
    report.add_argument("--plots", default=str(ROOT / "docs" / "results"), help="folder of the plots (default docs/results)")
    report.set_defaults(run=cmd_report)
    args = parser.parse_args()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

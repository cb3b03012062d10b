"""Driver of the GPU kit: ``kit.py train OUT`` and ``kit.py check OUT``, run by scripts/gpu/train.sh and
check.sh (which set up Python, constriction and the log). Settings are environment variables, so a
device call stays one short command line; docs/gpu-runs.md lists them.

train: resumes MODEL (EVC-LL) from the newest weights there are (an earlier run of this warm machine,
the pack's init/, the shipped ones), runs `python -m evc train` with a time limit that leaves room for
the stop, the final validation and the copying, stops it by signal if it overruns, and writes to OUT
the fp16 weights (parts under 16 MiB), train.csv, val.csv, gpu.csv and summary.md (train.log comes
from the wrapper): at most 8 files and 64 MiB, the device tool's limits.

check: the CUDA speed benchmark (evc bench), the cross-device files (scripts/gpu/crossdev.py and
benchmarks/cross_device.py) and the CUDA tests, each under its own time limit, into check.log (the
wrapper), crossdev-gpu.json and summary.md.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_FILES, MAX_FILE_BYTES, MAX_TOTAL_BYTES = 8, 16 * 2**20, 64 * 2**20  # what the tool brings back
# What check benchmarks unless BENCH says otherwise (MODEL:WxH, comma-separated): the paper's 30 FPS
# targets, the large model at 768x512 and the small one at 1920x1080.
DEFAULT_BENCH = "EVC-LL:768x512,EVC-SS:1920x1080"


def _weights_keys():
    """The weights files' metadata keys, src/evc/weights_keys.py loaded by its path: `import evc.x` would
    run evc/__init__.py, which imports torch, seconds of the call that the trainer spends again."""
    spec = importlib.util.spec_from_file_location("evc_weights_keys", ROOT / "src/evc/weights_keys.py")
    keys = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(keys)  # type: ignore[union-attr]
    return keys


KEYS = _weights_keys()


def say(message: str) -> None:
    print(f"[kit {time.strftime('%H:%M:%S')}] {message}", flush=True)


class KitError(Exception):
    pass


def _env(name: str, default, kind=str):
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise KitError(f"environment variable {name}={raw!r} is not a valid {kind.__name__}") from None


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise KitError(f"environment variable {name}={raw!r}: use 1 or 0")


def _started() -> float:
    """When the call began (the wrapper's clock, so setup time counts against the budget)."""
    return _env("KIT_START", time.time(), float)


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


# -- the GPU, watched from outside the trainer ----------------------------------------------------------
class GpuMonitor:
    """Samples nvidia-smi every few seconds: memory used, utilisation, power (for gpu.csv and the
    summary; the trainer does not log them). Does nothing where nvidia-smi is missing (the CPU dry run)."""

    QUERY = "memory.used,memory.total,utilization.gpu,power.draw"

    def __init__(self, every_s: float = 5.0, print_every_s: float = 30.0) -> None:
        self.every_s, self.print_every_s = every_s, print_every_s
        self.rows: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.available = shutil.which("nvidia-smi") is not None

    def _sample(self) -> dict[str, float] | None:
        try:
            line = subprocess.run(
                ["nvidia-smi", f"--query-gpu={self.QUERY}", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=10,
            ).stdout.strip().splitlines()[0]
            used, total, util, power = (float(v) if v.strip() not in {"[N/A]", "N/A"} else float("nan")
                                        for v in line.split(","))
        except (OSError, subprocess.SubprocessError, IndexError, ValueError):
            return None
        return {"used_mib": used, "total_mib": total, "util_pct": util, "power_w": power}

    def _loop(self) -> None:
        start = last_print = time.time()
        while not self._stop.wait(self.every_s):
            row = self._sample()
            if row is None:
                continue
            row = {"t_s": round(time.time() - start, 1), **row}
            self.rows.append(row)
            if time.time() - last_print >= self.print_every_s:
                last_print = time.time()
                say(f"gpu: {row['used_mib'] / 1024:.1f} of {row['total_mib'] / 1024:.1f} GiB, "
                    f"{row['util_pct']:.0f} % busy, {row['power_w']:.0f} W")

    def start(self) -> None:
        if self.available:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)

    def write(self, path: Path) -> None:
        if not self.rows:
            return
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows(self.rows)

    def summary(self) -> str:
        if not self.rows:
            return "not sampled (no nvidia-smi)" if not self.available else "no samples"
        busy = [r["util_pct"] for r in self.rows[len(self.rows) // 5:]]  # past the start-up
        peak = max(r["used_mib"] for r in self.rows)
        return (f"peak {peak / 1024:.1f} of {self.rows[0]['total_mib'] / 1024:.1f} GiB used (nvidia-smi), "
                f"{sum(busy) / max(len(busy), 1):.0f} % busy on average after the first fifth")


def describe_machine() -> list[str]:
    """One line each: GPU, CPU cores, Python, torch (from package metadata: importing torch here would cost
    seconds the trainer spends again)."""
    from importlib.metadata import PackageNotFoundError, version

    lines = []
    if shutil.which("nvidia-smi"):
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True).stdout.strip()
        lines.append(f"GPU: {gpu or 'nvidia-smi answered nothing'}")
    else:
        lines.append("GPU: none (no nvidia-smi)")
    lines.append(f"CPU cores: {os.cpu_count()}")
    lines.append(f"Python {sys.version.split()[0]} at {sys.executable}")
    for package in ("torch", "numpy", "pillow", "constriction", "safetensors", "tensorboard", "tqdm"):
        try:
            lines.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            lines.append(f"{package} MISSING")
    return lines


# -- train -----------------------------------------------------------------------------------------
@dataclass
class TrainSettings:
    """The run's settings from the environment (defaults: the real EVC-LL run on one H200)."""

    model: str = "EVC-LL"
    device: str = "cuda"
    batch: int = 32
    crop: int = 256
    lr: float = 0.0  # 0: 1e-4 when resuming trained weights, 3e-4 from scratch
    warmup: int = 300
    workers: int = 0  # 0: cores - 2
    steps: int = 1_000_000  # a ceiling: the time limit ends the run
    budget_s: float = 510.0  # the whole call, setup included (the run tool's timeout is 540)
    reserve_s: float = 110.0  # trainer start-up before its clock, final validation, export, copying
    stop_margin_s: float = 45.0  # hard stop (SIGINT) this long before the budget ends
    val_images: int = 4
    log_every: int = 50
    checkpoint_every: int = 1000
    compile: bool = False
    init: str = "auto"  # auto, none, or a weights folder/file
    pack: Path = field(default_factory=lambda: ROOT / ".gpu-pack")
    run_root: Path = field(default_factory=lambda: ROOT / ".gpu-run")
    extra: list[str] = field(default_factory=list)

    @classmethod
    def from_env(cls) -> "TrainSettings":
        s = cls(
            model=_env("MODEL", cls.model), device=_env("DEVICE", cls.device), batch=_env("BATCH", cls.batch, int),
            crop=_env("CROP", cls.crop, int), lr=_env("LR", cls.lr, float), warmup=_env("WARMUP", cls.warmup, int),
            workers=_env("WORKERS", cls.workers, int), steps=_env("STEPS", cls.steps, int),
            budget_s=_env("BUDGET_S", cls.budget_s, float), reserve_s=_env("RESERVE_S", cls.reserve_s, float),
            stop_margin_s=_env("STOP_MARGIN_S", cls.stop_margin_s, float),
            val_images=_env("VAL_IMAGES", cls.val_images, int), log_every=_env("LOG_EVERY", cls.log_every, int),
            checkpoint_every=_env("CHECKPOINT_EVERY", cls.checkpoint_every, int), compile=_flag("COMPILE", False),
            init=_env("INIT", cls.init), pack=Path(_env("PACK", str(ROOT / ".gpu-pack"))).resolve(),
            run_root=Path(_env("RUN_ROOT", str(ROOT / ".gpu-run"))).resolve(),
            extra=_env("TRAIN_ARGS", "").split(),
        )
        if s.workers <= 0:
            s.workers = max(0, min(14, (os.cpu_count() or 2) - 2))
        if min(s.batch, s.crop, s.steps, s.budget_s, s.log_every, s.checkpoint_every) <= 0 or s.val_images < 0:
            raise KitError("BATCH, CROP, STEPS, BUDGET_S, LOG_EVERY, CHECKPOINT_EVERY must be positive, VAL_IMAGES >= 0")
        return s


def _has_weights(path: Path) -> bool:
    return path.is_file() and path.suffix == ".safetensors" or path.is_dir() and any(path.glob("*.safetensors"))


def _weights_meta(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    first = path if path.is_file() else sorted(path.glob("*.safetensors"))[0]
    with safe_open(str(first), framework="numpy") as f:
        return dict(f.metadata() or {})


def read_pack(pack: Path) -> dict:
    """pack.json: what the carried pack holds (pack.py prepare writes it last, so it marks a whole pack)."""
    if not (pack / "pack.json").is_file():
        raise KitError(f"no training pack at {pack} (build it here with `python scripts/gpu/pack.py prepare`, "
                       "then carry .gpu-pack)")
    return json.loads((pack / "pack.json").read_text())


def choose_init(s: TrainSettings) -> tuple[Path | None, str]:
    """The newest weights of the model: a run of this machine (a warm machine keeps .gpu-run/ between
    calls), the pack's init/ (carried), the shipped ones; else none (from scratch)."""
    if s.init == "none":
        return None, "none: from scratch (INIT=none)"
    if s.init != "auto":
        path = Path(s.init)
        if not _has_weights(path):
            raise KitError(f"INIT={s.init}: no weights there")
        return path, f"INIT={s.init}"
    latest = s.run_root / "latest"
    candidates = []
    if latest.is_file():
        candidates.append((Path(latest.read_text().strip()) / "export", "an earlier run on this machine"))
    candidates += [(s.pack / "init", "the pack (carried)"), (ROOT / "src/evc/weights" / s.model, "the shipped weights")]
    for path, what in candidates:
        if _has_weights(path) and _weights_meta(path).get(KEYS.MODEL_KEY, s.model) == s.model:
            return path, f"{what}: {path}"
    return None, "none found: from scratch"


@dataclass
class Plan:
    """The trainer run the kit starts."""

    stamp: str  # UTC, names the run
    run_dir: Path
    lr: float
    time_limit_s: float
    val_images: int
    command: list[str]


def plan_run(s: TrainSettings, init: Path | None, deadline: float) -> Plan:
    """The trainer's command line. Its time limit is what the budget leaves less RESERVE_S, and its
    learning-rate cosine follows that limit; it validates once, at its stop (on the pack's Kodak images)."""
    lr = s.lr or (1e-4 if init else 3e-4)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = s.run_root / f"{s.model}-{stamp}"
    time_limit_s = deadline - time.time() - s.reserve_s
    if time_limit_s < 30:
        raise KitError(f"only {time_limit_s:.0f} s left for training after the reserve of {s.reserve_s:.0f} s; "
                       "raise BUDGET_S or lower RESERVE_S")
    val_images = min(s.val_images, len(list((s.pack / "kodak").glob("*.png"))))
    command = [
        sys.executable, "-m", "evc", "train", "--model", s.model, "--data", str(s.pack / "train"), "--out", str(run_dir),
        "--steps", str(s.steps), "--batch-size", str(s.batch), "--crop", str(s.crop), "--lr", f"{lr:g}",
        "--warmup-steps", str(s.warmup), "--workers", str(s.workers), "--device", s.device,
        "--log-every", str(s.log_every), "--checkpoint-every", str(s.checkpoint_every),
        "--val-every", str(10**9), "--val-images", str(val_images), "--kodak", str(s.pack / "kodak"),
        "--time-limit-minutes", f"{time_limit_s / 60:.3f}", "--compile" if s.compile else "--no-compile",
    ]
    if init:
        command += ["--init-weights", str(init)]
    command.append("--cache-images")  # the trainer's default, said aloud: the pack fits the machine's memory
    return Plan(stamp, run_dir, lr, time_limit_s, val_images, command + s.extra)


def run_trainer(command: list[str], hard_stop: float) -> tuple[int, str]:
    """Run the trainer; at ``hard_stop`` (epoch seconds) interrupt it (it checkpoints and exports on
    SIGINT), then kill it 25 s later. Returns (exit status, how it ended)."""
    proc = subprocess.Popen(command, cwd=ROOT)
    try:
        return proc.wait(timeout=max(1.0, hard_stop - time.time())), "finished"
    except subprocess.TimeoutExpired:
        say("hard stop: the trainer overran its time limit; interrupting it (it saves on SIGINT)")
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=25), "interrupted at the hard stop"
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(), "killed at the hard stop"


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _float(row: dict[str, str], key: str) -> float:
    try:
        return float(row.get(key, "nan"))
    except ValueError:
        return float("nan")


@dataclass
class Outcome:
    """How the trainer ended, and what it left (copied into OUT)."""

    rc: int
    ended: str  # "finished", or how the hard stop ended it
    wall_s: float  # start-up and stop included
    parts: list[Path]  # the exported weights files
    meta: dict[str, str]  # their metadata
    steps: int  # of the export
    rows: list[dict[str, str]]  # train.csv
    validated: list[dict[str, str]]  # val.csv's rows of the exported step, one per anchor


def collect(run_dir: Path, out: Path, rc: int, ended: str, wall_s: float) -> Outcome:
    """Copy the run's weights, train.csv and val.csv into OUT."""
    export = run_dir / "export"
    parts = sorted(export.glob("*.safetensors")) if export.is_dir() else []
    meta = _weights_meta(export) if parts else {}
    if parts:
        (out / "weights").mkdir(exist_ok=True)
        for p in parts:
            shutil.copy2(p, out / "weights" / p.name)
    rows = read_csv(run_dir / "train.csv")
    if rows:
        shutil.copy2(run_dir / "train.csv", out / "train.csv")
    if (run_dir / "val.csv").is_file():
        shutil.copy2(run_dir / "val.csv", out / "val.csv")
    steps = int(meta.get(KEYS.STEPS_KEY, "0") or 0)
    # The trainer validates at its stop, the exported step, unless the hard stop or a failure came first.
    validated = [r for r in read_csv(out / "val.csv") if int(float(r["step"])) == steps]
    return Outcome(rc, ended, wall_s, parts, meta, steps, rows, validated)


def _no_validation(plan: Plan, outcome: Outcome) -> str:
    """Why the summary shows no Kodak validation."""
    if not outcome.parts:
        return "no weights"
    if not plan.val_images:
        return "no Kodak images"
    if outcome.ended != "finished":
        return "the trainer was stopped before it validated"
    return f"the trainer ended (exit status {outcome.rc}) before it validated its last export"


def summarise(s: TrainSettings, plan: Plan, outcome: Outcome, machine: list[str], start: str, pack_info: dict,
              gpu: str, call_start: float) -> str:
    """summary.md: one screen on the machine, the start, the data, the recipe, the run and the validation."""
    rows, last = outcome.rows, outcome.rows[-1] if outcome.rows else {}
    steady = rows[len(rows) // 5:] or rows  # past the start-up
    rates = sorted(_float(r, "images_per_s") for r in steady)
    data = pack_info["train"]
    lines = [
        f"# GPU training run {plan.stamp} (UTC)",
        "",
        f"- machine: {'; '.join(machine[:3])}; {', '.join(machine[3:])}",
        f"- model {s.model}, start: {start}",
        f"- data: {data['images']} images, {_mib(data['bytes'])}, scale {data['scale']} (pack of {pack_info['created']})",
        f"- recipe: batch {s.batch} x {s.crop}px, lr {plan.lr:g} (warm-up {s.warmup}), {s.workers} loader processes, "
        f"compile {'on' if s.compile else 'off'}, time limit {plan.time_limit_s / 60:.2f} min, cosine on time",
        f"- trainer: {outcome.ended}, exit status {outcome.rc}, {outcome.wall_s:.0f} s wall (start-up and stop included)",
        f"- steps {outcome.steps}, crops seen {outcome.meta.get(KEYS.IMAGES_SEEN_KEY, '?')}, training time "
        f"{_float(last, 'elapsed_s'):.0f} s" if rows else "- no training log rows",
    ]
    if rates:
        lines.append(f"- crops/s: median {rates[len(rates) // 2]:.1f} (range {rates[0]:.1f}-{rates[-1]:.1f}) over "
                     f"{len(steady)} log rows after the first fifth")
        lines.append(f"- last log row: loss {_float(last, 'loss'):.4f}, bpp {_float(last, 'bpp'):.4f}, "
                     f"PSNR {_float(last, 'psnr'):.2f} dB, lr {_float(last, 'lr'):.2e}")
    lines.append(f"- GPU memory: {gpu}")
    if outcome.validated:
        lines.append(f"- Kodak validation ({plan.val_images} images, real files, by the trainer at its stop):")
        lines += [f"  - anchor {r['anchor']} (q {r['q_index']}): {float(r['bpp']):.4f} bpp, {float(r['psnr']):.2f} dB"
                  for r in outcome.validated]
    else:
        lines.append(f"- Kodak validation: none ({_no_validation(plan, outcome)})")
    lines.append(f"- weights: {', '.join(p.name for p in outcome.parts) or 'NONE'}")
    lines.append(f"- call: {time.time() - call_start:.0f} s of the {s.budget_s:.0f} s budget")
    return "\n".join(lines) + "\n"


def check_out_limits(out: Path) -> list[str]:
    """Problems with OUT against the device tool's limits on what comes back."""
    files = [p for p in out.rglob("*") if p.is_file()]
    problems = []
    if len(files) > MAX_FILES:
        problems.append(f"{len(files)} files in OUT (at most {MAX_FILES} come back)")
    big = [f"{p.relative_to(out)} ({_mib(p.stat().st_size)})" for p in files if p.stat().st_size > MAX_FILE_BYTES]
    if big:
        problems.append(f"files over 16 MiB: {', '.join(big)}")
    total = sum(p.stat().st_size for p in files)
    if total > MAX_TOTAL_BYTES:
        problems.append(f"{_mib(total)} in OUT (at most 64 MiB come back)")
    return problems


def deliver(out: Path, summary: str, outcome: Outcome) -> int:
    """Write summary.md and check OUT against the tool's limits (gpu.csv, the least needed file, goes
    first); 0 when weights came out and all of OUT comes back."""
    (out / "summary.md").write_text(summary)
    problems = check_out_limits(out)
    if problems and (out / "gpu.csv").exists():
        (out / "gpu.csv").unlink()
        problems = check_out_limits(out)
    print("\n" + summary, flush=True)
    for problem in problems:
        say(f"error: {problem}")
    if not outcome.parts:
        say("error: the run exported no weights")
    return 0 if outcome.parts and not problems else 1


def train(out: Path) -> int:
    """Call 1: train MODEL for what the call's budget leaves, then bring its weights, logs and summary to OUT."""
    call_start = _started()
    s = TrainSettings.from_env()
    deadline = call_start + s.budget_s
    say(f"train {s.model} on {s.device}: budget {s.budget_s:.0f} s from the call's start, "
        f"{deadline - time.time():.0f} s left now")
    machine = describe_machine()
    for line in machine:
        say(line)
    pack_info = read_pack(s.pack)

    init, init_why = choose_init(s)
    init_meta = _weights_meta(init) if init else {}
    say(f"start from: {init_why}" + (f" ({init_meta.get(KEYS.STEPS_KEY, '?')} steps, "
                                     f"{init_meta.get(KEYS.DATE_KEY, '?')})" if init else ""))
    s.run_root.mkdir(parents=True, exist_ok=True)
    plan = plan_run(s, init, deadline)
    say("trainer: " + " ".join(plan.command[1:]))
    (s.run_root / "latest").write_text(str(plan.run_dir) + "\n")  # so a later call on this machine resumes from it

    monitor = GpuMonitor()
    monitor.start()
    trainer_start = time.time()
    rc, ended = run_trainer(plan.command, deadline - s.stop_margin_s)
    wall_s = time.time() - trainer_start
    monitor.stop()
    say(f"trainer {ended} with exit status {rc} after {wall_s:.0f} s")

    outcome = collect(plan.run_dir, out, rc, ended, wall_s)
    monitor.write(out / "gpu.csv")
    start = init_why + (f", {init_meta.get(KEYS.STEPS_KEY, '?')} steps before" if init else "")
    return deliver(out, summarise(s, plan, outcome, machine, start, pack_info, monitor.summary(), call_start), outcome)


# -- check -----------------------------------------------------------------------------------------
@dataclass
class Step:
    name: str
    command: list[str]
    cap_s: float
    needed: bool = True  # a failure makes the check fail


def _weights_for(model: str, run_root: Path, pack: Path) -> tuple[str | None, str]:
    """Weights to benchmark: this machine's new run, the pack's init, the shipped ones (in the tree, or
    staged by pack.py and carried in .gpu-stash), else seeded random ones."""
    latest = run_root / "latest"
    candidates = [(Path(latest.read_text().strip()) / "export", "trained this session")] if latest.is_file() else []
    candidates += [(pack / "init", "the pack's init"), (ROOT / "src/evc/weights" / model, "shipped"),
                   (ROOT / ".gpu-stash/src/evc/weights" / model, "shipped (staged, carried)")]
    for path, what in candidates:
        if _has_weights(path) and _weights_meta(path).get(KEYS.MODEL_KEY) == model:
            return str(path), what
    return None, "random (seeded): network time is representative, entropy coding time is not"


def check(out: Path) -> int:
    start = _started()
    budget = _env("BUDGET_S", 170.0, float)
    device = _env("DEVICE", "cuda")
    run_root = Path(_env("RUN_ROOT", str(ROOT / ".gpu-run"))).resolve()
    pack = Path(_env("PACK", str(ROOT / ".gpu-pack"))).resolve()
    bench = os.environ.get("BENCH", DEFAULT_BENCH)
    bench_cases = [] if bench.strip().lower() in {"", "none"} else bench.split(",")
    cap_s = _env("STEP_CAP_S", 0.0, float)  # one cap for every step (the CPU dry run); 0: each step's own
    bench_args = _env("BENCH_ARGS", "").split()
    crossdev_models = _env("CROSSDEV_MODELS", "").split()
    deadline = start + budget
    machine = describe_machine()
    for line in machine:
        say(line)
    python = sys.executable
    steps: list[Step] = []
    # Most telling first: the here<->there files, then the CUDA tests, then speed.
    steps.append(Step("crossdev (committed CPU files <-> this device)",
                      [python, "scripts/gpu/crossdev.py", "verify", "--device", device, "--out", str(out / "crossdev-gpu.json"),
                       *(["--models", *crossdev_models] if crossdev_models else [])], 50))
    cuda_test_files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                             if "torch.cuda.is_available()" in p.read_text())
    steps.append(Step("CUDA tests", [python, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-k", "cuda or gpu",
                                     *cuda_test_files], 50))
    for case in filter(None, bench_cases):
        model, _, size = case.partition(":")
        weights, what = _weights_for(model, run_root, pack)
        steps.append(Step(f"bench {model} {size} ({what.split(':')[0]})",
                          [python, "-m", "evc", "bench", "--device", device, "--models", model, "--sizes", size,
                           *(["--weights", weights] if weights else []), *bench_args], 45))
    if device.startswith("cuda"):
        steps.append(Step("benchmarks/cross_device.py (EVC-SS, both arithmetics, in-process)",
                          [python, "benchmarks/cross_device.py", "--images", "scripts/gpu/crossdev/sources", "--count", "2"], 30,
                          needed=False))
    results = []
    for step in steps:
        left = deadline - time.time() - 5
        if left < 10:
            results.append((step, "SKIPPED (no time left)", 0.0))
            continue
        timeout = min(cap_s or step.cap_s, left)
        say(f"--- {step.name} (at most {timeout:.0f} s): {' '.join(step.command[1:])}")
        t0 = time.time()
        try:
            rc = subprocess.run(step.command, cwd=ROOT, timeout=timeout).returncode
            status = "PASS" if rc == 0 else f"FAIL (exit {rc})"
        except subprocess.TimeoutExpired:
            status = f"FAIL (over {timeout:.0f} s)"
        results.append((step, status, time.time() - t0))
    lines = [f"# GPU check {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M')} UTC", "",
             f"- machine: {'; '.join(machine[:3])}; {', '.join(machine[3:])}", ""]
    lines += [f"- {status:<24} {step.name}, {secs:.0f} s" for step, status, secs in results]
    lines += ["", "Numbers: check.log (bench tables, per-file cross-device lines, test report). Decode the files",
              "made here on the CPU at home: python scripts/gpu/crossdev.py home FILES/crossdev-gpu.json",
              f"- call: {time.time() - start:.0f} s of the {budget:.0f} s budget"]
    summary = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(summary)
    print("\n" + summary, flush=True)
    failed = [s for s, status, _ in results if s.needed and not status.startswith("PASS")]
    problems = check_out_limits(out)
    for problem in problems:
        say(f"error: {problem}")
    return 1 if failed or problems else 0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in {"train", "check"}:
        print("usage: kit.py train|check OUT", file=sys.stderr)
        return 2
    out = Path(argv[1]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return train(out) if argv[0] == "train" else check(out)
    except KitError as exc:
        say(f"error: {exc}")
        (out / "summary.md").write_text(f"# GPU kit {argv[0]}: error\n\n{exc}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

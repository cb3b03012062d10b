"""Training throughput on a shared CPU: crops/s alone, next to one busy process and next to a test-suite
run, for the thread policies a training can run under, side by side in one run.

    python benchmarks/train_share.py                       # EVC-SS, 16x128, every policy, 30 s windows
    python benchmarks/train_share.py --seconds 60 --policies before after

Each measurement is a fresh training process in a session of its own (as `scripts/train_cpu.sh` starts a
leg), with the policy's environment set before torch starts its thread pools; it runs a few warm-up steps,
then trains for ``--seconds`` through evc.train's Trainer (data loading, forward, backward, Adam) and
reports crops/s. The competing load runs in a session of its own too, as another user's job would:
- busy: one CPU-bound Python process (a spin loop);
- tests: `python -m pytest -q` of this repository (one thread per process, as CI runs it), restarted if
  it ends before the window does.

Policies (the thread count is the CPU's core count, 2 here, unless the policy says otherwise):
- before: data loading in the step's thread, OpenMP's default wait (libgomp spins ~300,000 iterations at
  each barrier before it sleeps): how the legs ran until 2026-12-03;
- after: the next batch made in a thread while the step runs (evc.train.data.Prefetcher), what
  `evc train --workers 0` does now;
- passive: after, with OMP_WAIT_POLICY=PASSIVE (waiting threads sleep at once): tried, measured slower;
- one-thread: after, with one compute thread;
- follow: after, with the thread count chosen by evc.threads every few seconds: what `evc train` does
  since 2026-12-04 (threads is the count at the window's end).
Each runs with the session's scheduling weight that scripts/train_cpu.sh gives a leg (autogroup nice -10,
where the kernel lets us set it), and again at the default weight (``...@0``): the fair share a plain
process gets. This machine is shared and noisy: read the ratios to the alone column of the same policy.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARDS = REPO.parent / "shared" / "data" / "train"

POLICIES: dict[str, dict[str, object]] = {
    "before": {"env": {}, "prefetch": False, "threads": None},
    "after": {"env": {}, "prefetch": True, "threads": None},
    "passive": {"env": {"OMP_WAIT_POLICY": "PASSIVE"}, "prefetch": True, "threads": None},
    "one-thread": {"env": {}, "prefetch": True, "threads": 1},
    "follow": {"env": {}, "prefetch": True, "threads": None, "follow": True},
}
LOADS = ("alone", "busy", "tests")


def measure(
    model: str, batch: int, crop: int, seconds: float, prefetch: bool, data: str, follow: bool = False
) -> dict[str, float]:
    """crops/s of training steps over ``seconds`` after 3 warm-up steps (in this process); with ``follow``
    the thread count follows the free cores after every step, as `evc train` does, with a settling time of
    2 choices before the window."""
    import torch

    from evc.train.config import TrainConfig
    from evc.train.trainer import FOLLOW_FREE_CORES_EVERY_S, Trainer

    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(
            model=model, data=[data], out=str(Path(tmp) / "run"), steps=10**6, batch_size=batch, crop=crop,
            workers=0, prefetch=prefetch, device="cpu", val_images=0, warmup_steps=0, holdout=False,
        )
        trainer = Trainer(config)
        trainer.data.fill_cache()  # the cache's steady state, as in a leg after its first minutes
        batches = trainer.batches()
        for _ in range(3):
            trainer.train_step(*next(batches))
        settle = time.perf_counter() + (2 * FOLLOW_FREE_CORES_EVERY_S if follow else 0)
        while time.perf_counter() < settle:
            trainer.follow_free_cores()
            trainer.train_step(*next(batches))
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            trainer.train_step(*next(batches))
            steps += 1
            if follow:
                trainer.follow_free_cores()
        elapsed = time.perf_counter() - start
        if hasattr(batches, "close"):
            batches.close()
        return {"crops_per_s": steps * batch / elapsed, "threads": torch.get_num_threads(), "steps": steps}


def _start_session(command: list[str], env: dict[str, str], nice_group: int | None) -> subprocess.Popen:
    """A process in a new session (its own scheduling autogroup), optionally weighted by ``nice_group``."""
    def setup() -> None:
        if nice_group is not None:
            try:
                Path("/proc/self/autogroup").write_text(str(nice_group))
            except OSError:
                pass

    return subprocess.Popen(
        command, env=env, cwd=REPO, start_new_session=True, preexec_fn=setup,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )


def _stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


class Load:
    """The competing work of one measurement, in its own session, running until stopped."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.process: subprocess.Popen | None = None
        self._env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        self._env.pop("OMP_WAIT_POLICY", None)

    def _command(self) -> list[str]:
        if self.kind == "busy":
            return [sys.executable, "-c", "while True: pass"]
        return ["bash", "-c", f"while true; do {sys.executable} -m pytest -q -x -p no:cacheprovider > /dev/null 2>&1; done"]

    def __enter__(self) -> Load:
        if self.kind != "alone":
            self.process = _start_session(self._command(), self._env, None)
            time.sleep(3)  # let it get going (the test run imports torch first)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            _stop(self.process)


def run_policy(name: str, group: int | None, load: str, args: argparse.Namespace, data: str) -> dict[str, float]:
    policy = POLICIES[name]
    unset = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(policy["env"])  # type: ignore[arg-type]
    if policy["threads"]:
        env["OMP_NUM_THREADS"] = str(policy["threads"])
    spec = dict(model=args.model, batch=args.batch, crop=args.crop, seconds=args.seconds,
                prefetch=policy["prefetch"], data=data, follow=policy.get("follow", False))
    with Load(load):
        child = _start_session([sys.executable, __file__, "--one", json.dumps(spec)], env, group)
        out, _ = child.communicate()
    if child.returncode != 0:
        sys.exit(f"measurement failed: {name} {load}")
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="EVC-SS")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=30.0, help="timed window of each measurement")
    parser.add_argument("--policies", nargs="+", default=["before", "after", "passive", "follow", "before@0", "after@0", "follow@0"],
                        help="policy[@autogroup nice] (default nice -10, as scripts/train_cpu.sh)")
    parser.add_argument("--loads", nargs="+", default=list(LOADS), choices=LOADS)
    parser.add_argument("--images", type=int, default=12, help="training photos to crop from (cached)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one measurement, JSON out
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(**json.loads(args.one))))
        return

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "photos"
        data.mkdir()
        entries = json.loads((SHARDS / "manifest.json").read_text())[: args.images]
        for entry in entries:
            (data / Path(entry["file"]).name).symlink_to(SHARDS / entry["file"])
        from evc.train.speed import cpu_model_name

        print(f"training crops/s on a shared CPU: {cpu_model_name()}, {os.cpu_count()} cores, {args.model} "
              f"{args.batch}x{args.crop}, {args.seconds:g} s windows")
        print(f"{'policy':<16} " + " ".join(f"{load:>17}" for load in args.loads))
        for spec in args.policies:
            name, _, group_text = spec.partition("@")
            if name not in POLICIES:
                sys.exit(f"unknown policy {name}; known: {', '.join(POLICIES)}")
            group = int(group_text) if group_text else -10
            results = [run_policy(name, group, load, args, str(data)) for load in args.loads]
            rates = [r["crops_per_s"] for r in results]
            threads = [f"{r['threads']}t" for r in results]  # torch's thread count at the window's end
            cells = [f"{rates[0]:>10.2f} {threads[0]}"] + [
                f"{r:>6.2f} ({r / rates[0]:>4.0%}) {t}" for r, t in zip(rates[1:], threads[1:])
            ]
            print(f"{name + ' @' + str(group):<16} " + " ".join(cells), flush=True)


if __name__ == "__main__":
    main()

"""`evc encode` / `evc decode` next to busy processes: the thread policy (evc.threads) against the old path.

    python benchmarks/thread_policy.py [--image PATH] [--busy 0 1 2] [--repeats 2]

For each number of busy processes (Python loops, one core each, started before and stopped after),
times one `evc encode` and one `evc decode` process of the image with the shipped weights, under three
settings, and prints the median wall time of the repeats and its ratio to the quiet time of the same
setting and to the policy's quiet time:

- auto: the policy (EVC_THREADS=auto);
- old: every usable CPU (torch's default before the policy, EVC_THREADS=<cpus>);
- 1: one thread (EVC_THREADS=1).

The files of every setting are compared byte for byte (the exact path does not depend on threads).
Each run is a fresh process, so the times include starting Python, importing and loading the model.
Run it on an otherwise quiet machine (pause a training: kill -STOP -- -PID, then kill -CONT -- -PID).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from evc.threads import usable_cpus

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"


def _run(args: list[str], threads: str) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["EVC_THREADS"] = threads
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "evc", *args], check=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=KODAK / "kodim01.png")
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cpus = usable_cpus()
    settings = {"auto": "auto", "old": str(cpus), "1": "1"}  # auto first: the others' reference
    print(f"{args.image.name}, {cpus} usable CPUs, median wall time of {args.repeats} fresh processes (s); "
          "ratios: to the same setting quiet / to auto quiet")
    print(f"{'busy':>4} {'setting':>7} | {'encode':>7} {'x quiet':>7} {'x auto':>7} | {'decode':>7} {'x quiet':>7} {'x auto':>7}")
    quiet: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        files: dict[str, bytes] = {}
        for busy in args.busy:
            spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
            try:
                time.sleep(1.0)  # let the load settle into /proc/stat
                for name, value in settings.items():
                    coded, decoded = Path(tmp, f"{name}.evc"), Path(tmp, f"{name}.png")
                    enc = [_run(["encode", str(args.image), str(coded), "--force"], value) for _ in range(args.repeats)]
                    dec = [_run(["decode", str(coded), str(decoded), "--force"], value) for _ in range(args.repeats)]
                    e, d = statistics.median(enc), statistics.median(dec)
                    files[name] = coded.read_bytes()
                    quiet.setdefault(name, (e, d))
                    qe, qd = quiet[name]
                    ae, ad = quiet.get("auto", (e, d))
                    print(f"{busy:>4} {name:>7} | {e:>7.2f} {e / qe:>7.2f} {e / ae:>7.2f} | {d:>7.2f} {d / qd:>7.2f} {d / ad:>7.2f}",
                          flush=True)
            finally:
                for spinner in spinners:
                    spinner.kill()
                    spinner.wait()
        same = len(set(files.values())) == 1
        print(f"files identical across settings: {same}")


if __name__ == "__main__":
    main()

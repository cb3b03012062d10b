"""What starting `evc` costs: one process per image against one `--out-dir` process for them all.

    python benchmarks/cli_startup.py [--images 4] [--kodak DIR] [--model NAME] [--device cpu]

For the first N Kodak images (default 4, from ../shared/data/kodak beside the repository) it runs
`python -m evc encode IMAGE OUT.evc` once per image, then `python -m evc encode IMAGE... --out-dir DIR`
once, and the same for `decode`; it prints wall and CPU time per image of both (CPU: user + system of
the child processes, all threads) and their ratio, and checks that both ways write the same bytes.
It then splits one single-image process into its parts, timed inside a fresh process: starting
Python, importing evc's command line, loading the model, preparing the exact networks and coding
tables, and coding (reading the input and writing the output included). Set OMP_NUM_THREADS to choose
the threads of every process; wall times mean little on a machine busy with other work, CPU times more.
About 80 s of CPU time in all (on a 2-core machine beside a training run: 80 s to 8 minutes of wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KODAK = REPO.parent / "shared" / "data" / "kodak"
LABEL = 46  # width of the first column


def _env() -> dict[str, str]:
    """The children run this checkout's evc, whatever is installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    env.pop("EVC_DEBUG", None)
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_process(argv: list[str]) -> tuple[float, float, str]:
    """Run ``argv``; (wall s, CPU s, stdout). Fails loudly if the command fails."""
    cpu, start = _children_cpu(), time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env=_env())
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
    return wall, _children_cpu() - cpu, result.stdout


def evc_argv(*args: object) -> list[str]:
    return [sys.executable, "-m", "evc", *map(str, args)]


def compare(
    command: str, inputs: list[Path], suffix: str, folder: Path, options: list[str]
) -> tuple[list[Path], list[Path]]:
    """Time ``command`` once per input, then once for all; print both per image; return the outputs."""
    separate, batch = folder / f"{command}-separate", folder / f"{command}-batch"
    separate.mkdir()
    wall = cpu = 0.0
    singles = []
    for path in inputs:
        target = separate / f"{path.stem}{suffix}"
        w, c, _ = timed_process(evc_argv(command, path, target, *options))
        wall, cpu = wall + w, cpu + c
        singles.append(target)
    batch_wall, batch_cpu, _ = timed_process(evc_argv(command, *inputs, "--out-dir", batch, *options))
    batched = [batch / f"{path.stem}{suffix}" for path in inputs]
    n = len(inputs)
    print(f"{command + f': {n} processes, one image each':<{LABEL}} {wall / n:8.2f} {cpu / n:8.2f}")
    print(f"{command + ': 1 process, --out-dir':<{LABEL}} {batch_wall / n:8.2f} {batch_cpu / n:8.2f}")
    print(f"{'  ratio (separate / one)':<{LABEL}} {wall / batch_wall:8.2f} {cpu / batch_cpu:8.2f}")
    return singles, batched


def split_child(command: str, source: Path, target: Path, model: str | None, device: str) -> None:
    """Inside a fresh process: time each part of one `evc encode` / `evc decode` (the library calls the
    command makes), and print them as JSON."""
    parts: dict[str, tuple[float, float]] = {}
    clock = [time.perf_counter(), time.process_time()]

    def lap(name: str) -> None:
        now = [time.perf_counter(), time.process_time()]
        parts[name] = (now[0] - clock[0], now[1] - clock[1])
        clock[:] = now

    import evc.cli.main  # noqa: F401  (what `evc` imports before it parses the command line)
    import evc
    from evc.bitstream.container import parse
    from evc.cli.codec import encode_output_image
    from evc.entropy.latent_codec import gaussian_tables
    from evc.models.registry import MODELS_BY_ID

    lap("import evc")
    data = source.read_bytes() if command == "decode" else None
    if data is not None:
        model = MODELS_BY_ID[parse(data)[0].model_id].name
    codec = evc.load(model, device=device)
    lap("load model")
    latent_codec = codec.model.latent_codec  # what the first image would otherwise prepare
    latent_codec.exact_parameters()
    latent_codec.z_tables()
    gaussian_tables()
    lap("prepare exact networks and tables")
    if data is None:
        target.write_bytes(codec.compress(source))
    else:
        target.write_bytes(encode_output_image(codec.decompress(data), "PNG", None))  # as `evc decode` writes
    lap("code (read, code, write)")
    print(json.dumps(parts))


def split(command: str, source: Path, target: Path, options: argparse.Namespace) -> None:
    """Print the parts of one single-image process: Python's start, then split_child's parts."""
    start_wall, start_cpu, _ = timed_process([sys.executable, "-c", "pass"])
    argv = [sys.executable, __file__, "--split-child", command, str(source), str(target), "--device", options.device]
    if options.model:
        argv += ["--model", options.model]
    wall, cpu, out = timed_process(argv)
    parts = {"start Python": (start_wall, start_cpu), **{k: tuple(v) for k, v in json.loads(out).items()}}
    print(f"{f'{command}: one process, one image ({source.name})':<{LABEL}} {'wall s':>8} {'CPU s':>8}")
    for name, (w, c) in parts.items():
        print(f"{'  ' + name:<{LABEL}} {w:8.2f} {c:8.2f}")
    rest = (wall - sum(w for w, _ in parts.values()), cpu - sum(c for _, c in parts.values()))
    print(f"{'  rest (exit, unaccounted)':<{LABEL}} {rest[0]:8.2f} {rest[1]:8.2f}")
    print(f"{'  whole process':<{LABEL}} {wall:8.2f} {cpu:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4, help="how many Kodak images (default 4)")
    parser.add_argument("--kodak", type=Path, default=KODAK)
    parser.add_argument("--model", default=None, help="default: the best shipped model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--split-child", nargs=3, metavar=("COMMAND", "SOURCE", "TARGET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.split_child:
        command, source, target = args.split_child
        split_child(command, Path(source), Path(target), args.model, args.device)
        return
    images = sorted(args.kodak.glob("kodim*.png"))[: args.images]
    if not images:
        raise SystemExit(f"no kodim*.png in {args.kodak}")
    options = ["--device", args.device] + (["--model", args.model] if args.model else [])
    print(f"{len(images)} Kodak images ({images[0].name} ...), device {args.device}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="evc-cli-startup-") as tmp:
        folder = Path(tmp)
        print(f"{'per image':<{LABEL}} {'wall s':>8} {'CPU s':>8}")
        singles, batched = compare("encode", images, ".evc", folder, options)
        same = all(a.read_bytes() == b.read_bytes() for a, b in zip(singles, batched))
        decoded_singles, decoded_batched = compare("decode", batched, ".png", folder, options)
        same_png = all(a.read_bytes() == b.read_bytes() for a, b in zip(decoded_singles, decoded_batched))
        print(f"same .evc files both ways: {same}; same decoded PNG files: {same_png}")
        split("encode", images[0], folder / "split.evc", args)
        split("decode", batched[0], folder / "split.png", args)


if __name__ == "__main__":
    main()

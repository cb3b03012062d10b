"""ONNX Runtime against PyTorch (issue 41): encode and decode speed, the transforms and the entropy
networks apart, each row's own peak memory, and a one-image command's wall time from process start.

    python benchmarks/onnx_runtime.py [--sizes 768x512 1920x1080] [--repeat 3] [--model EVC-SS]
                                      [--weights PATH] [--onnx DIR] [--threads auto|N]

The model (shipped EVC-SS by default) is exported to a temporary folder unless --onnx names an export
of it. Each row runs in its own fresh process, which loads the codec, codes the image once to warm up
and then ``repeat`` times (median); its peak memory is that process's peak resident set (everything the
row needed, the runtime and the weights included, nothing of another row: Linux's VmHWM of the child). Both runtimes decode the
same file (written by the PyTorch codec) and encode the same synthetic image (evc.eval.bench's).
Columns: ``total`` is a whole compress / decompress call (image and container conversions included);
``transforms`` g_a or g_s; ``entropy nets`` h_a (encoder) and the entropy-parameter networks (exact
int8 on both runtimes); ``coder`` the ANS coder, on the PyTorch encoder overlapped with the networks on
a thread of its own. Then one `evc encode` / `evc decode` command per runtime and size, its wall time
from process start (Python's start, imports and loading the weights included). ``--threads`` sets
EVC_THREADS (and OMP_NUM_THREADS) of every child; both runtimes follow it. Markdown on stdout.
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
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNTIMES = ("pytorch", "onnxruntime")
DIRECTIONS = ("encode", "decode")

# One row, in a fresh process: argv = runtime, direction, image.png, file.evc, export, model, weights, repeat.
_ROW = r'''
import json, resource, statistics, sys, time
from contextlib import contextmanager
runtime, direction, png, evc_file, export, model, weights, repeat = sys.argv[1:9]
repeat = int(repeat)
from PIL import Image
image = Image.open(png)
image.load()
data = open(evc_file, "rb").read()
parts = {}

@contextmanager
def timed(part):
    start = time.perf_counter()
    try:
        yield
    finally:
        parts[part] = parts.get(part, 0.0) + time.perf_counter() - start

if runtime == "onnxruntime":
    from evc.onnx.runtime import OnnxCodec
    codec = OnnxCodec(export)
    codec.timing = timed  # "transforms", "entropy networks", "coding"
else:
    import dataclasses
    import evc
    codec = evc.load(model, device="cpu", weights=weights or None)
    codec.execution = dataclasses.replace(codec.execution, timing=timed)  # the same parts
work = (lambda: codec.compress(image, 0.5)) if direction == "encode" else (lambda: codec.decompress(data))
work()  # warm-up
totals, runs = [], []
for _ in range(repeat):
    parts.clear()
    start = time.perf_counter()
    work()
    totals.append(time.perf_counter() - start)
    runs.append(dict(parts))
def peak_mb():
    # VmHWM: this process's own peak (ru_maxrss would start at the forking parent's resident size).
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

median = lambda key: statistics.median(run.get(key, 0.0) for run in runs)
print(json.dumps({"total": statistics.median(totals), "transforms": median("transforms"),
                  "entropy nets": median("entropy networks"), "coder": median("coding"),
                  "peak_mb": peak_mb(),
                  "torch": "torch" in sys.modules}))
'''


def _env(threads: str | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if threads is not None:
        env["EVC_THREADS"] = threads
        env["OMP_NUM_THREADS"] = "1" if threads == "auto" else threads
    return env


def _child(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv[:4])} failed:\n{done.stderr}")
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["768x512", "1920x1080"], metavar="WxH")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", default="EVC-SS")
    parser.add_argument("--weights", help="weights instead of the model's shipped ones")
    parser.add_argument("--onnx", metavar="DIR", help="an export of the model (default: exported now)")
    parser.add_argument("--threads", help="EVC_THREADS of every child (default: as set here)")
    args = parser.parse_args()

    import evc
    from evc.eval.bench import synthetic_image
    from evc.train.speed import cpu_model_name

    env = _env(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        export = Path(args.onnx) if args.onnx else work / "export"
        if not args.onnx:
            from evc.onnx.export import export as write_export

            write_export(export, args.model, args.weights)
        codec = evc.load(args.model, device="cpu", weights=args.weights)
        import onnxruntime
        import torch

        print(f"ONNX Runtime {onnxruntime.__version__} against PyTorch {torch.__version__}, {args.model}, "
              f"{cpu_model_name()}, EVC_THREADS={env.get('EVC_THREADS', 'unset')}, median of {args.repeat}, "
              f"{date.today().isoformat()}; command: python benchmarks/onnx_runtime.py "
              f"--sizes {' '.join(args.sizes)} --repeat {args.repeat}\n")
        print("| runtime | size | coding | total ms | transforms ms | entropy nets ms | coder ms | peak MB |")
        print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
        commands = []
        for size in args.sizes:
            width, height = (int(v) for v in size.split("x"))
            png, evc_file = work / f"{size}.png", work / f"{size}.evc"
            synthetic_image(width, height).save(png)
            evc_file.write_bytes(codec.compress(png, 0.5))
            for direction in DIRECTIONS:
                for runtime in RUNTIMES:
                    done = _child(["-c", _ROW, runtime, direction, str(png), str(evc_file), str(export), args.model,
                                   args.weights or "", str(args.repeat)], env)
                    row = json.loads(done.stdout.splitlines()[-1])
                    assert runtime == "pytorch" or not row["torch"], "the ONNX Runtime row imported torch"
                    print(f"| {runtime} | {size} | {direction} | {row['total'] * 1e3:.0f} | "
                          f"{row['transforms'] * 1e3:.0f} | {row['entropy nets'] * 1e3:.0f} | {row['coder'] * 1e3:.0f} | "
                          f"{row['peak_mb']:.0f} |")
                    # The one-image command, from process start to exit.
                    source, target = (png, work / "out.evc") if direction == "encode" else (evc_file, work / "out.png")
                    onnx = ["--onnx", str(export)] if runtime == "onnxruntime" else ["--device", "cpu"]
                    weights = ["--weights", args.weights] if args.weights and runtime == "pytorch" else []
                    model = ["--model", args.model] if direction == "encode" and runtime == "pytorch" else []
                    argv = ["-m", "evc", direction, str(source), str(target), "--force", *onnx, *weights, *model]
                    start = time.perf_counter()
                    children = resource.getrusage(resource.RUSAGE_CHILDREN)
                    _child(argv, env)
                    wall = time.perf_counter() - start
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
                    commands.append((runtime, size, direction, wall, cpu))
        print("\n| runtime | size | command | wall s from process start | CPU s |")
        print("| --- | --- | --- | ---: | ---: |")
        for runtime, size, direction, wall, cpu in commands:
            print(f"| {runtime} | {size} | evc {direction} | {wall:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()

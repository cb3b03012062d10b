"""evc from a wheel, installed without the source tree (issue 21): `evc eval DIR` (the shipped model),
`evc eval --baseline`, `evc compare --published` and `evc info` find everything they need in the package.

Builds the wheel offline from a copy of the checkout (pip, setuptools from this environment, no build
isolation), installs it into a temporary folder, and runs the commands there in one fresh interpreter
whose only evc is the installed one. About 15 s of CPU; wall time grows with the machine's load.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from conftest import smooth_image

ROOT = Path(__file__).resolve().parents[1]

# Runs inside the installed package's interpreter: each command as `python -m evc ...` would run it
# (runpy, so evc/__main__.py too), its exit status, stdout and stderr collected as JSON.
DRIVER = textwrap.dedent('''
    import contextlib, io, json, runpy, sys
    from pathlib import Path

    site = Path(sys.argv[1]).resolve()
    results = []
    for argv in json.loads(sys.argv[2]):
        out, err = io.StringIO(), io.StringIO()
        sys.argv = ["evc", *argv]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_module("evc", run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
        results.append({"argv": argv, "code": code, "out": out.getvalue(), "err": err.getvalue()})
    outside = sorted(name for name, module in sys.modules.items() if name.split(".")[0] == "evc"
                     and getattr(module, "__file__", None) and site not in Path(module.__file__).resolve().parents)
    print(json.dumps({"results": results, "outside": outside}))
''')


def _build_and_install(tmp: Path) -> Path:
    """The wheel of a copy of the checkout (so no build/ lands in it), installed under ``tmp``/site."""
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp / "dist", source],
                   check=True, capture_output=True)
    (wheel,) = (tmp / "dist").glob("evc-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", tmp / "site", wheel],
                   check=True, capture_output=True)
    return tmp / "site"


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="building the wheel needs setuptools")
def test_installed_wheel_evaluates_compares_and_reads_files(tmp_path):
    site = _build_and_install(tmp_path)
    work = tmp_path / "work"  # the working folder: no source tree, no ../shared
    (work / "imgs").mkdir(parents=True)
    for i in range(2):
        Image.fromarray(smooth_image(64, 64, seed=i)).save(work / "imgs" / f"kodim0{i + 1}.png")
    commands = [
        ["eval", "imgs", "--qualities", "2", "--out", "res", "--quiet", "--device", "cpu"],
        ["eval", "imgs", "--baseline", "jpeg420", "--baseline", "webp", "--out", "res", "--quiet"],
        ["compare", "res/EVC-SS.json", "res/webp.json", "--published", "--metric", "psnr", "--plot", "res/rd"],
        ["encode", "imgs/kodim01.png", "kodim01.evc", "--device", "cpu"],
        ["info", "kodim01.evc"],
    ]
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-c", DRIVER, str(site), json.dumps(commands)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["outside"] == []  # every evc module came from the installed wheel
    evaluate, baselines, compare, encode, info = report["results"]
    for result in report["results"]:
        assert result["code"] == 0, result
    assert "EVC-SS: 2 images -> res/EVC-SS.json" in evaluate["out"]
    for name in ("jpeg420", "webp"):
        assert f"2 images -> res/{name}.json" in baselines["out"], baselines
    assert (work / "kodim01.evc").stat().st_size > 0
    assert json.loads((work / "res" / "EVC-SS.json").read_text())["meta"]["versions"]["weights"] == "shipped"
    assert sorted(p.name for p in (work / "res").glob("*.json")) == ["EVC-SS.json", "jpeg420.json", "webp.json"]
    # The shipped published curves, anchored on VTM (Kodak); ours on the 2 images' live WebP (issue 39).
    assert "| curve | BD-rate (PSNR) vs WebP | BD-rate (PSNR) vs VTM |" in compare["out"]
    assert "| EVC-LL (paper) | other images | -1.0 % (32.5-37.9 dB) |" in compare["out"]
    assert "Anchor WebP: live baseline measured on the same images (2 images (imgs))" in compare["out"]
    assert (work / "res" / "rd-psnr.png").is_file()
    assert "EVC-SS" in info["out"] and "64x64" in info["out"]

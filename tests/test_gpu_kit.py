"""The GPU kit (scripts/gpu/) without a GPU: the same scripts on the CPU with a tiny pack, the staging of
shipped weights, the travel-size budget, and the committed cross-device files (docs/gpu-runs.md)."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import smooth_image
from evc.weights_keys import MODEL_KEY, STEPS_KEY

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / "scripts" / "gpu"
DEVICE_LACKS = ("pytorch_msssim", "imagecodecs", "pillow_heif")  # installed here, not on the GPU machine


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"gpu_kit_{name}", KIT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


pack = _load("pack")


def _run(args: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    # One thread per process: the runs are tiny, and 2-thread OpenMP on a busy 2-core machine costs
    # several times the CPU time in spinning (measured: 24 s against 4 s for the trainer's dry run).
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True).stdout


def _fake_weights(folder: Path, model: str, size: int) -> None:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    save_file({"w": np.zeros(size // 2, np.float16)}, str(folder / f"{model}.part1of1.safetensors"),
              metadata={MODEL_KEY: model, STEPS_KEY: "7"})


def test_the_kit_reads_weights_metadata_without_torch(tmp_path) -> None:
    """kit.py and pack.py take the metadata keys from src/evc/weights_keys.py, loaded by its path, and
    read the metadata with safetensors alone: importing evc would import torch, seconds of a device call."""
    _fake_weights(tmp_path / "w", "EVC-LL", 100)
    code = (f"import sys; sys.path.insert(0, {str(KIT)!r}); from pathlib import Path; import kit, pack; "
            f"w = Path({str(tmp_path / 'w')!r}); "
            "print(kit._weights_meta(w)[kit.KEYS.STEPS_KEY], pack._weights_steps(w)['model'], "
            "sorted(m for m in ('torch', 'evc') if m in sys.modules))")
    result = _run([sys.executable, "-c", code], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["7", "EVC-LL", "[]"]


def test_staging_hides_shipped_weights_and_restores_them(tmp_path, monkeypatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / ".gitignore").write_text("/.gpu-pack/\n/.gpu-stash/\n/.whl/\n")
    (repo / "code.py").write_text("print(1)\n")
    _fake_weights(repo / "src/evc/weights/EVC-SS", "EVC-SS", 300_000)
    _fake_weights(repo / "src/evc/weights/EVC-LL", "EVC-LL", 200_000)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "x")
    before, _ = pack.tree_bytes(repo)
    hidden, _ = pack.tree_bytes(repo, hide_weights=True)
    assert before - hidden > 500_000

    assert pack.stage(repo) == ["EVC-LL", "EVC-SS"]
    assert pack.tree_bytes(repo)[0] == hidden  # the stash is ignored: it does not travel
    # ... unless the check call carries it (to benchmark the shipped models), which it does when it fits.
    ll, ss = ".gpu-stash/src/evc/weights/EVC-LL", ".gpu-stash/src/evc/weights/EVC-SS"
    assert pack.check_call_carry(repo) == (ll, ss)
    assert pack.travel_report(repo, (ll, ss))[0] == before
    # only the benchmarked models travel, and only those that fit: one over the limit stays home
    _fake_weights(repo / ".gpu-stash/src/evc/weights/Scale-SS", "Scale-SS", 100_000)
    assert pack.check_call_carry(repo) == (ll, ss)
    monkeypatch.setattr(pack, "LIMIT", before - 250_000)
    assert pack.check_call_carry(repo) == (ll,)  # EVC-SS (300 kB) no longer fits beside it
    shutil.rmtree(repo / ".gpu-stash/src/evc/weights/Scale-SS")
    assert pack.shipped(repo, "EVC-LL") == repo / ".gpu-stash/src/evc/weights/EVC-LL"
    with pytest.raises(pack.PackError):
        _fake_weights(repo / "src/evc/weights/EVC-SS", "EVC-SS", 10)
        pack.restore(repo)  # weights that reappeared are never overwritten
    (repo / "src/evc/weights/EVC-SS" / "EVC-SS.part1of1.safetensors").unlink()
    assert pack.restore(repo) == ["EVC-LL", "EVC-SS"]
    assert _git(repo, "status", "--porcelain") == ""


def test_staging_refuses_a_stash_git_would_send(tmp_path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _fake_weights(repo / "src/evc/weights/EVC-SS", "EVC-SS", 1000)
    with pytest.raises(pack.PackError, match="not ignored"):
        pack.stage(repo)


def test_what_travels_leaves_room_for_training_data() -> None:
    """With every shipped model hidden and EVC-LL's weights carried as the run's start, the tree, the
    wheels and the Kodak validation images must leave at least 16 MiB of the 64 MiB for training images."""
    tree, _ = pack.tree_bytes(ROOT, hide_weights=True)
    ll = pack.shipped(ROOT, "EVC-LL")
    init = pack.folder_bytes(ll) if ll else 0
    wheels = pack.folder_bytes(ROOT / ".whl") or 420_000  # constriction 0.5.0 cp312: 405,717 bytes
    kodak = 4 * 650_000  # kodim01-04 PNGs are 0.55-0.65 MB
    left = pack.LIMIT - tree - init - wheels - kodak
    assert left >= 16 * 2**20, f"{left / 2**20:.1f} MiB left for training images"


def test_bench_flags_the_check_uses_exist(capsys) -> None:
    from evc.cli.main import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--help"])
    help_text = capsys.readouterr().out
    kit_source = (KIT / "kit.py").read_text()
    for flag in ("--device", "--models", "--sizes", "--weights"):
        assert f'"{flag}"' in kit_source and flag in help_text
    assert "768x512" in help_text and "1920x1080" in help_text


@pytest.fixture
def tiny_pack(tmp_path) -> Path:
    train, kodak = tmp_path / "photos", tmp_path / "kodak"
    train.mkdir()
    kodak.mkdir()
    for i in range(3):
        Image.fromarray(smooth_image(80 + 8 * i, 96, seed=i)).save(train / f"photo{i}.png")
    Image.fromarray(smooth_image(64, 64, seed=7)).save(kodak / "kodim01.png")
    out = tmp_path / "pack"
    result = _run([sys.executable, str(KIT / "pack.py"), "prepare", "--no-stage", "--skip-wheels", "--pack", str(out),
                   "--data", str(train), "--kodak", str(kodak), "--val-images", "1", "--init", "none",
                   "--min-side", "64", "--max-data-mib", "0.5"])
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((out / "train" / "manifest.json").read_text())
    assert len(manifest) == 3 and all(e["file"].endswith(".jpg") for e in manifest)
    assert "travel:" in result.stdout
    return out


def test_dry_run_of_train_and_check_on_the_cpu(tiny_pack, tmp_path) -> None:
    """train.sh and check.sh as a GPU session runs them, on the CPU: EVC-SS, 2 steps of 2 64-px crops.
    The budgets are generous: a loaded 2-core machine is far slower than the GPU machine."""
    # Packages the GPU machine lacks (docs: KINDS.md's list) fail to import here too; constriction,
    # also missing there, comes from the carried wheel.
    absent = tmp_path / "absent"
    for name in DEVICE_LACKS:
        (absent / name).mkdir(parents=True)
        (absent / name / "__init__.py").write_text("raise ImportError('not on the GPU machine')\n")
    env = {"PYTHONPATH": str(absent), "PYTHON": sys.executable, "MODEL": "EVC-SS", "DEVICE": "cpu", "BATCH": "2", "CROP": "64", "STEPS": "2",
           "WARMUP": "1", "WORKERS": "0", "VAL_IMAGES": "1", "LOG_EVERY": "1", "PACK": str(tiny_pack),
           "RUN_ROOT": str(tmp_path / "runs"), "BUDGET_S": "1500", "RESERVE_S": "30", "INIT": "auto"}
    out = tmp_path / "out"
    result = _run(["bash", str(KIT / "train.sh"), str(out)], env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    parts = sorted((out / "weights").glob("EVC-SS.part*.safetensors"))
    assert parts and all(p.stat().st_size <= 16 * 2**20 for p in parts)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8 and sum(p.stat().st_size for p in files) <= 64 * 2**20
    summary = (out / "summary.md").read_text()
    assert "steps 2, crops seen 4" in summary and "Kodak validation (1 images" in summary
    assert "kit: train.sh" in (out / "train.log").read_text()  # the log holds everything printed
    with open(out / "val.csv", newline="") as f:
        assert len([r for r in csv.DictReader(f) if r["step"] == "2"]) == 4  # the 4 rate anchors

    # The check call on the same machine (it finds the run's weights in RUN_ROOT, as a warm machine would).
    # Also the check of the committed cross-device files (EVC-SS): a codec or format change that alters
    # them must remake them (python scripts/gpu/crossdev.py make), or the GPU check fails.
    check_env = {**env, "BENCH": "none", "CROSSDEV_MODELS": "EVC-SS", "BUDGET_S": "1500", "STEP_CAP_S": "600"}
    checked = tmp_path / "checked"
    result = _run(["bash", str(KIT / "check.sh"), str(checked)], check_env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = (checked / "summary.md").read_text()
    assert "PASS" in summary and "FAIL" not in summary
    made = checked / "crossdev-gpu.json"
    assert len(json.loads(made.read_text())["files"]) == 2
    home = _run([sys.executable, str(KIT / "crossdev.py"), "home", str(made)], {"PYTHONPATH": str(ROOT / "src")})
    assert home.returncode == 0 and "crossdev home: PASS" in home.stdout, home.stdout + home.stderr


def test_train_refuses_a_missing_pack(tmp_path) -> None:
    out = tmp_path / "out"
    result = _run(["bash", str(KIT / "train.sh"), str(out)],
                  {"PYTHON": sys.executable, "PACK": str(tmp_path / "nothing"), "DEVICE": "cpu"})
    assert result.returncode != 0
    assert "no training pack" in (out / "summary.md").read_text()
    assert "no training pack" in (out / "train.log").read_text()

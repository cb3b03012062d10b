"""`evc distill`: mask decay from a teacher to a student, merge, fine-tune, resume; on tiny data."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import evc
from evc.cli.main import main as evc_main
from evc.models.weights import read_metadata, save_weights

from conftest import smooth_image


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("distill")
    data = root / "images"
    data.mkdir()
    for i in range(4):
        Image.fromarray(smooth_image(80, 96, seed=i)).save(data / f"img{i}.png")
    save_weights(evc.create_model("EVC-LL", seed=0), root / "teacher", "EVC-LL")
    return data, root / "teacher"


def _args(data: Path, teacher: Path, out: Path, *extra: str) -> list[str]:
    return [
        "distill", "--teacher", str(teacher), "--student", "EVC-SS", "--data", str(data), "--out", str(out),
        "--batch-size", "1", "--crop", "64", "--workers", "0", "--val-images", "0", "--log-every", "1",
        "--warmup-steps", "0", *extra,
    ]


def _mask_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "decay" / "masks.csv") as f:
        return list(csv.DictReader(f))


def test_ours_removes_exactly_and_yields_the_student(setup, tmp_path) -> None:
    data, teacher = setup
    out = tmp_path / "run"
    assert evc_main(_args(data, teacher, out, "--decay-steps", "10", "--finetune-steps", "2")) == 0
    rows = _mask_rows(out)
    assert len(rows) == 10 and float(rows[0]["removed_max"]) > 0
    assert float(rows[-1]["removed_max"]) == 0.0 and float(rows[-1]["removed_zero_fraction"]) == 1.0
    # Ours does not pull on the kept masks: at the default mask lr they stay near 1 after 10 steps.
    assert 0.9 < float(rows[-1]["kept_min"]) <= float(rows[-1]["kept_mean"]) < 1.1
    merged = read_metadata(out / "decay" / "export")
    assert merged["evc.model"] == "EVC-SS" and merged["evc.distilled_from"] == "EVC-LL" and merged["evc.sparsity"] == "ours"
    final = read_metadata(out / "finetune" / "export")
    assert final["evc.model"] == "EVC-SS" and final["evc.training_steps"] == "2"
    codec = evc.load(weights=out / "finetune" / "export", device="cpu")
    result = codec.encode(smooth_image(48, 64), 0.5)
    assert np.array_equal(np.asarray(codec.decompress(result.data)), np.asarray(result.reconstruction))


def test_l2_leaves_the_removed_masks_above_zero(setup, tmp_path) -> None:
    data, teacher = setup
    out = tmp_path / "l2"
    args = _args(data, teacher, out, "--decay-steps", "4", "--finetune-steps", "0", "--sparsity", "l2", "--mask-lr", "0.3")
    assert evc_main(args) == 0
    assert float(_mask_rows(out)[-1]["removed_max"]) > 0  # L2's pull fades near zero
    assert read_metadata(out / "decay" / "export")["evc.model"] == "EVC-SS"


def test_resume_and_refusals(setup, tmp_path, capsys) -> None:
    data, teacher = setup
    out = tmp_path / "run"
    args = _args(data, teacher, out, "--decay-steps", "3", "--finetune-steps", "1")
    assert evc_main(args) == 0
    assert evc_main(args) == 2
    assert "already holds a distillation" in capsys.readouterr().err
    assert evc_main(["distill", "--out", str(out), "--resume", "--finetune-steps", "2"]) == 0
    assert read_metadata(out / "finetune" / "export")["evc.training_steps"] == "2"
    assert evc_main(["distill", "--data", str(data), "--out", str(tmp_path / "x")]) == 2  # no teacher
    assert evc_main(_args(data, teacher, tmp_path / "y", "--student", "EVC-LL")) == 2  # not smaller
    err = capsys.readouterr().err
    assert "--teacher" in err and "not smaller" in err and "Traceback" not in err

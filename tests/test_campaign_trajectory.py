"""benchmarks/campaign_trajectory.py: the campaign's BD-rate table and plot from the committed curves."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "campaign_trajectory.py"


def _load():
    spec = importlib.util.spec_from_file_location("campaign_trajectory", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


trajectory = _load()


def test_the_committed_manifest_gives_the_documented_bd_rates() -> None:
    # docs/training.md's legs-at-a-glance row of leg 5: Kodak -5.0 / -13.2 / +19.4 / +79.7 % against
    # WebP / JPEG XL / AVIF / VTM, validation -6.3 / -7.4 / +29.5 %.
    points = trajectory.read_manifest(trajectory.MANIFEST)
    table = trajectory.bd_rates(points)
    leg5 = [p.label for p in points].index("leg 5")
    kodak, validation = table["kodak"][leg5], table["validation"][leg5]
    assert [round(kodak[n], 1) for n in ("WebP", "JPEG XL", "AVIF", "VTM")] == [-5.0, -13.2, 19.4, 79.7]
    assert [round(validation[n], 1) for n in ("WebP", "JPEG XL", "AVIF")] == [-6.3, -7.4, 29.5]
    # Training only adds: the lineage's crops grow from point to point, and v1 is worse than leg 5.
    assert [p.total_crops for p in points] == sorted(p.total_crops for p in points)
    assert table["kodak"][[p.label for p in points].index("v1")]["AVIF"] > kodak["AVIF"]


def test_table_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert trajectory.main(["--plot", str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out
    assert "| leg 5 | 2026-12-05 |" in out and "+19.4 %" in out
    assert "| v0 |" in out and out.count("| - |") >= 3  # v0 has no validation curve: dashes, not numbers
    png, svg = tmp_path / "t.png", tmp_path / "t.svg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    first = svg.read_bytes()
    assert trajectory.main(["--plot", str(tmp_path / "t")]) == 0
    assert svg.read_bytes() == first  # same data, same file


def test_a_missing_curve_or_a_malformed_manifest_is_a_clear_error(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "trajectory.json"
    manifest.write_text(json.dumps({"points": [{"label": "x", "date": "d", "total_crops": 1, "total_hours": 1,
                                                "arithmetic": "int8", "kodak": "nowhere.json",
                                                "validation": None}]}))
    assert trajectory.main(["--manifest", str(manifest)]) == 2
    assert "nowhere.json" in capsys.readouterr().err
    manifest.write_text(json.dumps({"points": [{"label": "x"}]}))
    assert trajectory.main(["--manifest", str(manifest)]) == 2
    assert "lacks or misstates a field" in capsys.readouterr().err
    manifest.write_text("[1, 2")
    assert trajectory.main(["--manifest", str(manifest)]) == 2
    assert "not a trajectory manifest" in capsys.readouterr().err
    assert trajectory.main(["--manifest", str(tmp_path / "absent.json")]) == 2
    assert "manifest not found" in capsys.readouterr().err


def test_the_train_vs_split_gap_of_leg_ii_1() -> None:
    # docs/training.md: II-1's EMA export, -12.4 % against WebP on the training sample, -5.8 % on the
    # split: a gap of -6.5 points; the points without a training-sample curve have none.
    points = trajectory.read_manifest(trajectory.MANIFEST)
    gaps = trajectory.train_split_gaps(points, trajectory.bd_rates(points))
    labels = [p.label for p in points]
    assert round(gaps[labels.index("II-1 (v4)")], 1) == -6.5
    assert gaps[labels.index("leg 5")] is None

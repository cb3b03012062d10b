"""scripts/paper_methods.py (issue 22): which phase runs next, with which command, and the gap closed.

Nothing trains here: the phases' folders are faked (checkpoints holding only their training time).
"""

from __future__ import annotations

import argparse
import os
import runpy
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "paper_methods.py"


@pytest.fixture
def methods(tmp_path, monkeypatch) -> dict:
    monkeypatch.setenv("EVC_EXPERIMENT", str(tmp_path))
    monkeypatch.setenv("EVC_PAPER_RESULTS", str(tmp_path / "results"))
    return runpy.run_path(str(SCRIPT), run_name="paper_methods")


def _finish(folder: Path, minutes_per_checkpoint: dict[str, float]) -> None:
    for name, minutes in minutes_per_checkpoint.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"elapsed_s": minutes * 60, "step": 1}, folder / name)
    (folder / "FINISHED").touch()


def test_phases_run_in_order_and_resume(methods, tmp_path, capsys) -> None:
    phases = {p.name: p for p in methods["phases"]()}
    assert list(phases)[:2] == ["teacher", "student"]
    assert "--resume" not in phases["teacher"].argv() and "EVC-LL" in phases["teacher"].argv()
    # The equal-compute baseline's budget is unknown until the teacher and the student have finished.
    assert "<the teacher's plus the student's minutes>" in phases["equal"].argv()
    assert methods["cmd_run"](argparse.Namespace(phase="student", until=None)) == 2
    assert "needs teacher" in capsys.readouterr().err
    assert not (tmp_path / "student").exists()  # nothing started

    _finish(tmp_path / "teacher", {"checkpoint.pt": 130.0})
    _finish(tmp_path / "student", {"decay/checkpoint.pt": 40.0, "finetune/checkpoint.pt": 9.5})
    phases = {p.name: p for p in methods["phases"]()}
    argv = phases["equal"].argv()
    assert argv[argv.index("--time-limit-minutes") + 1] == "179.5"
    assert phases["student"].trained_seconds() == pytest.approx(49.5 * 60)
    # A phase with a checkpoint resumes from its folder's saved settings.
    (tmp_path / "alone").mkdir()
    torch.save({"elapsed_s": 60.0}, tmp_path / "alone" / "checkpoint.pt")
    assert methods["phases"]()[2].argv()[-3:] == ["--out", str(tmp_path / "alone"), "--resume"]
    assert methods["cmd_run"](argparse.Namespace(phase="teacher", until=None)) == 2
    assert "finished already" in capsys.readouterr().err


def test_a_recorded_process_counts_only_while_alive(methods, tmp_path) -> None:
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "PID").write_text(str(os.getpid()))
    assert [(p.name, pid) for p, pid in methods["running"]()] == [("teacher", os.getpid())]
    (tmp_path / "teacher" / "PID").write_text("999999999")  # no such process
    assert methods["running"]() == []


def test_gap_closed() -> None:
    gap_closed = runpy.run_path(str(SCRIPT), run_name="paper_methods")["gap_closed"]
    assert gap_closed(-10.0, -40.0) == pytest.approx(0.25)  # a quarter of the teacher's lead
    assert gap_closed(5.0, -40.0) == pytest.approx(-0.125)  # worse than the student alone
    assert gap_closed(-10.0, 3.0) is None  # the teacher is not ahead: no gap to close
    assert gap_closed(None, -40.0) is None
    # BD-PSNR: higher is better
    assert gap_closed(0.5, 2.0, higher_is_better=True) == pytest.approx(0.25)
    assert gap_closed(0.5, -1.0, higher_is_better=True) is None


def test_rd_plots_from_the_results_measured(methods, tmp_path) -> None:
    """A plot per set that has at least two of the experiment's curves; none where fewer exist."""
    from evc.eval.results import RDCurve, save_curve

    for key, shift in (("teacher", 1.0), ("alone", 0.0)):
        curve = RDCurve(name=key, bpp=[0.2, 0.3, 0.45, 0.6], psnr=[25 + shift, 26 + shift, 27 + shift, 27.5 + shift])
        target = methods["result_path"]("validation", key)
        target.parent.mkdir(parents=True, exist_ok=True)
        save_curve(curve, target)
    written = methods["plot_rd_curves"](tmp_path / "plots")
    assert [p.name for p in written] == ["mask-decay-rd-validation.png"]
    assert written[0].stat().st_size > 10_000
    assert not (tmp_path / "plots" / "mask-decay-rd-kodak.png").exists()

"""scripts/train_cpu.sh, dry-run: the deadline arithmetic of a campaign leg (issue 19, item 1)."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train_cpu.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("date") is None,
                                reason="needs bash and GNU date")


def _dry_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EVC_CAMPAIGN": str(tmp_path / "campaign"), "EVC_DRY_RUN": "1"}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def _minutes(out: str) -> int:
    found = re.search(r"--time-limit-minutes (\d+)", out)
    assert found, out
    return int(found.group(1))


def test_relative_deadline(tmp_path: Path) -> None:
    run = _dry_run(tmp_path, "--until", "+60 min")
    assert run.returncode == 0, run.stderr
    assert _minutes(run.stdout) in (58, 59)  # a minute goes to start-up


def test_clock_time_already_past_means_tomorrow(tmp_path: Path) -> None:
    # "--until 00:10" typed at 21:40 must not refuse (or train 0 minutes): it is tonight's 00:10.
    past = (dt.datetime.now() - dt.timedelta(minutes=2)).strftime("%H:%M")
    run = _dry_run(tmp_path, "--until", past)
    assert run.returncode == 0, run.stderr
    assert 24 * 60 - 5 <= _minutes(run.stdout) <= 24 * 60


def test_past_date_and_nonsense_are_refused(tmp_path: Path) -> None:
    run = _dry_run(tmp_path, "--until", "2001-01-01 10:00")
    assert run.returncode == 2 and "less than 5 minutes" in run.stderr
    run = _dry_run(tmp_path, "--until", "half past never")
    assert run.returncode == 2 and "not a time" in run.stderr
    run = _dry_run(tmp_path, "ten")
    assert run.returncode == 2 and "MINUTES must be a number" in run.stderr


def test_a_leg_cut_before_its_first_checkpoint_does_not_hide_the_newest_export(tmp_path: Path) -> None:
    # A session stopped a minute into a leg leaves a folder with a log and no checkpoint or export: the
    # next leg must continue the leg before it, not fall back to the shipped weights.
    campaign = tmp_path / "campaign"
    done, cut = campaign / "leg-20261204-2142", campaign / "leg-20261205-0020"
    (done / "export").mkdir(parents=True)
    (done / "FINISHED").touch()
    cut.mkdir()
    (cut / "train.log").write_text("step 50: ...\n")
    os.utime(done, (1_000_000, 1_000_000))  # the cut leg is the most recently written
    run = _dry_run(tmp_path, "60")
    assert run.returncode == 0, run.stderr
    assert f"--init-weights {done / 'export'}" in run.stdout, run.stdout
    assert "--resume" not in run.stdout

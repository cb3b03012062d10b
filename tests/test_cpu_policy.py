"""evc's CPU policy: OpenMP threads that sleep when they wait (evc.cpu_policy), in force once evc is imported."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from evc.cpu_policy import configure_openmp


def _spin_count(code: str, **env: str) -> str:
    """GOMP_SPINCOUNT as libgomp reports it when torch loads it in a fresh process running ``code``."""
    environ = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    environ.update(OMP_DISPLAY_ENV="VERBOSE", **env)
    done = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r"GOMP_SPINCOUNT = '(\d+)'", done.stderr)
    assert found, "libgomp did not report its settings: " + done.stderr[-500:]
    return found.group(1)


def test_importing_evc_makes_waiting_threads_sleep() -> None:
    assert _spin_count("import torch") == "300000"  # libgomp's own default: spin before sleeping
    assert _spin_count("import evc") == "0"  # evc's policy, set before evc imports torch
    assert _spin_count("import evc", OMP_WAIT_POLICY="ACTIVE") != "0"  # the user's choice stands


def test_an_explicit_setting_is_left_alone() -> None:
    environ = {"GOMP_SPINCOUNT": "1000"}
    assert not configure_openmp(environ) and environ == {"GOMP_SPINCOUNT": "1000"}
    environ = {"OMP_WAIT_POLICY": "active"}
    assert not configure_openmp(environ) and environ == {"OMP_WAIT_POLICY": "active"}
    environ = {}
    assert configure_openmp(environ) and environ == {"OMP_WAIT_POLICY": "PASSIVE"}

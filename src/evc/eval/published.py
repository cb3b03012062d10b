"""Where the published reference data lives in a development checkout (../shared next to the repo)."""

from __future__ import annotations

from pathlib import Path

SHARED_DIR = Path(__file__).resolve().parents[4] / "shared"
KODAK_DIR = SHARED_DIR / "data" / "kodak"
RD_RESULTS_DIR = SHARED_DIR / "rd_results"
VTM_KODAK = RD_RESULTS_DIR / "compressai_kodak" / "vtm.json"
# The paper's Kodak curves (the authors' release), for plots and tables next to ours.
PUBLISHED_EVC = tuple(RD_RESULTS_DIR / "evc_kodak" / f"evc_kodak_EVC_{s}.json" for s in ("LL", "MM", "SS"))

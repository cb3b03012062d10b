"""Where the published reference data lives in a development checkout (../shared next to the repo)."""

from __future__ import annotations

from evc.shared_data import KODAK_DIR, SHARED_DIR

__all__ = ["KODAK_DIR", "PUBLISHED_EVC", "RD_RESULTS_DIR", "SHARED_DIR", "VTM_KODAK"]

RD_RESULTS_DIR = SHARED_DIR / "rd_results"
VTM_KODAK = RD_RESULTS_DIR / "compressai_kodak" / "vtm.json"
# The paper's Kodak curves (the authors' release), for plots and tables next to ours.
PUBLISHED_EVC = tuple(RD_RESULTS_DIR / "evc_kodak" / f"evc_kodak_EVC_{s}.json" for s in ("LL", "MM", "SS"))

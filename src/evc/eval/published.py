"""The published Kodak curves evc uses, shipped inside the package (published_curves/, see its README):
VTM, `evc compare`'s anchor for curves on the 24 Kodak images, and the paper's EVC-LL / MM / SS
points. Package data, so they are found from an installed wheel as from a checkout.
"""

from __future__ import annotations

from pathlib import Path

from evc.eval.results import RDCurve, load_curve

__all__ = ["PUBLISHED_DIR", "PUBLISHED_EVC", "PAPER_SUFFIX", "VTM_KODAK", "paper_curves"]

PUBLISHED_DIR = Path(__file__).resolve().parent / "published_curves"
VTM_KODAK = PUBLISHED_DIR / "vtm_kodak.json"
# The paper's Kodak curves (the authors' release), for plots and tables next to ours.
PUBLISHED_EVC = tuple(PUBLISHED_DIR / f"evc_kodak_EVC_{s}.json" for s in ("LL", "MM", "SS"))
# Appended to the paper's curve names, so tables and legends tell them from our models of the same name.
PAPER_SUFFIX = " (paper)"


def paper_curves() -> list[RDCurve]:
    """The paper's EVC-LL, MM and SS Kodak curves (PSNR only), named "<name> (paper)".

    Raises ResultsError if a shipped file is missing or unreadable (a broken install).
    """
    curves = [load_curve(path) for path in PUBLISHED_EVC]
    for curve in curves:
        curve.name += PAPER_SUFFIX
    return curves

"""What `evc eval` and `evc compare` show a new user (issue 21 items 2-5): the shipped model by default,
the published curves inside the package, comparisons across different image sets said as such, and
plots a reader can read. Each test fails on the code before the fix (said in its docstring)."""

from __future__ import annotations

import fnmatch
import json
import tomllib
from pathlib import Path

import pytest

import evc
from evc.eval.published import PUBLISHED_EVC, VTM_KODAK, paper_curves
from evc.shared_data import SHARED_DIR

ROOT = Path(__file__).resolve().parents[1]
RD_RESULTS = SHARED_DIR / "rd_results"
KODAK_NAMES = [f"kodim{i:02d}.png" for i in range(1, 25)]


# -- item 3: the published curves ship with the package --------------------------------------------


def test_published_curves_are_package_data():
    """Before: they were read from ../shared/rd_results beside the checkout, absent from a wheel."""
    package = Path(evc.__file__).resolve().parent
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["evc"]
    for path in (VTM_KODAK, *PUBLISHED_EVC):
        assert path.is_file() and package in path.parents
        relative = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative
    assert [c.name for c in paper_curves()] == ["EVC_LL (paper)", "EVC_MM (mask decay) (paper)", "EVC_SS (mask decay) (paper)"]


@pytest.mark.skipif(not RD_RESULTS.is_dir(), reason="shared/rd_results is not available")
def test_shipped_curves_hold_the_shared_numbers():
    """The copies hold the sources' names and numbers; only the image set is added to their meta."""
    sources = {VTM_KODAK: "compressai_kodak/vtm.json"}
    sources.update({path: f"evc_kodak/{path.name}" for path in PUBLISHED_EVC})
    for shipped, source in sources.items():
        mine, theirs = json.loads(shipped.read_text()), json.loads((RD_RESULTS / source).read_text())
        assert (mine["name"], mine["results"]) == (theirs["name"], theirs["results"])
        assert mine["meta"] == {**theirs.get("meta", {}), "dataset": "kodak", "images": 24, "image_names": KODAK_NAMES}

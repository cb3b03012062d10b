"""What `evc eval` and `evc compare` show a new user (issue 21 items 2-5): the shipped model by default,
the published curves inside the package, comparisons across different image sets said as such, and
plots a reader can read. Each test fails on the code before the fix (said in its docstring)."""

from __future__ import annotations

import fnmatch
import json
import tomllib
from pathlib import Path

import pytest
from PIL import Image

import evc
from evc.cli.main import main
from evc.eval.published import PUBLISHED_EVC, VTM_KODAK, paper_curves
from evc.models.registry import default_model_name
from evc.shared_data import SHARED_DIR

from conftest import smooth_image

ROOT = Path(__file__).resolve().parents[1]
RD_RESULTS = SHARED_DIR / "rd_results"
KODAK_NAMES = [f"kodim{i:02d}.png" for i in range(1, 25)]


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- item 2: `evc eval DIR` evaluates the shipped model --------------------------------------------


def test_eval_without_model_evaluates_the_shipped_model(capsys, tmp_path):
    """Before: "nothing to evaluate: give --model NAME ..." (exit 2), while `evc encode` used the shipped model."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(smooth_image(64, 64, seed=1)).save(folder / "a.png")
    code, out, err = run(capsys, "eval", folder, "--qualities", 2, "--out", tmp_path / "r", "--quiet", "--device", "cpu")
    shipped = default_model_name()
    if shipped is None:  # nothing ships: the message says how to get weights
        assert code == 2 and "no model is trained yet" in err
        return
    assert code == 0, err
    data = json.loads((tmp_path / "r" / f"{shipped}.json").read_text())
    assert data["meta"]["versions"]["weights"] == "shipped" and len(data["results"]["bpp"]) == 2
    # --baseline alone still measures the baselines only
    code, out, err = run(capsys, "eval", folder, "--baseline", "jpeg420", "--out", tmp_path / "b", "--quiet")
    assert code == 0, err
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["jpeg420.json"]


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

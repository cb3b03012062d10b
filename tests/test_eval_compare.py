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
from evc.eval.bdrate import bd_rate, format_bd_table
from evc.eval.published import PUBLISHED_EVC, VTM_KODAK, paper_curves
from evc.eval.results import RDCurve, different_images, format_image_sets, image_set, load_curve
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


def ours(names: list[str], dataset: str = "kodak", name: str = "EVC-SS", ms_ssim: bool = False) -> RDCurve:
    """A curve as `evc eval` writes it, measured on ``names``: a little below VTM at 0.3-0.9 bpp."""
    bpp, psnr = [0.3, 0.5, 0.7, 0.9], [29.0, 31.0, 32.5, 33.6]
    ms = [0.95, 0.97, 0.98, 0.985] if ms_ssim else None
    per_image = {n: {"bpp": bpp, "psnr-rgb": psnr} for n in names}
    meta = {"kind": "ours", "images": len(names), "dataset": dataset}
    return RDCurve(name, bpp, psnr, ms, meta=meta, per_image=per_image)


def save(curve: RDCurve, path: Path) -> Path:
    path.write_text(json.dumps(curve.to_json()))
    return path


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


# -- item 4: not like for like, said -------------------------------------------------------------


def test_image_sets_compare_by_names_then_count_then_dataset():
    vtm = load_curve(VTM_KODAK)
    assert image_set(vtm).describe() == "24 images (kodak)"
    assert different_images(ours(KODAK_NAMES[:4]), vtm)
    assert not different_images(ours(KODAK_NAMES), vtm)
    # the same photos in another folder, or as other files, are the same set
    assert not different_images(ours([n.replace(".png", ".ppm") for n in KODAK_NAMES], dataset="copy"), vtm)
    assert different_images(ours(KODAK_NAMES[1:] + ["kodim99.png"]), vtm)  # same count, other images
    no_names = RDCurve("c", [0.5, 1.0], [30.0, 33.0], meta={"images": 24, "dataset": "Kodak"})
    assert not different_images(no_names, vtm)  # count and dataset agree (letter case aside)
    assert different_images(RDCurve("c", [0.5, 1.0], [30.0, 33.0], meta={"images": 24, "dataset": "clic"}), vtm)
    unknown = RDCurve("CompressAI JPEG", [0.5, 1.0], [30.0, 33.0])
    assert not image_set(unknown).known and not different_images(unknown, ours(KODAK_NAMES[:4]))
    assert format_image_sets([ours(KODAK_NAMES), vtm]) is None
    assert format_image_sets([ours(KODAK_NAMES[:4]), vtm]) == "EVC-SS: 4 images (kodak); VTM: 24 images (kodak)"


def test_bd_table_marks_rates_across_image_sets():
    vtm = load_curve(VTM_KODAK)
    subset, whole = ours(KODAK_NAMES[:4]), ours(KODAK_NAMES)
    results = [[bd_rate(vtm, subset)], [bd_rate(vtm, whole)]]
    assert results[0][0].different_images and not results[1][0].different_images
    assert results[0][0].percent == pytest.approx(results[1][0].percent)  # the same numbers: only the label differs
    table = format_bd_table([subset, whole], [vtm], results).splitlines()
    assert table[2].endswith(" dB, different images) |") and table[3].endswith(" dB) |")


def test_compare_says_when_image_sets_differ(capsys, tmp_path):
    """Before: 4 Kodak images against the published 24-image curves gave a BD-rate with no warning."""
    subset = save(ours(KODAK_NAMES[:4]), tmp_path / "subset.json")
    code, out, err = run(capsys, "compare", subset, "--published", "--metric", "psnr", "--plot", tmp_path / "sub")
    assert code == 0, err
    assert err.count("\n") == 1 and err.startswith("evc: warning: not like for like")
    assert "EVC-SS: 4 images (kodak); " in err and "VTM: 24 images (kodak)" in err
    row = next(line for line in out.splitlines() if line.startswith("| EVC-SS |"))
    assert row.endswith(" dB, different images) |")
    assert "| EVC_LL (paper) | -1.0 % (32.5-37.9 dB) |" in out  # 24 against 24: no mark

    whole = save(ours(KODAK_NAMES), tmp_path / "whole.json")
    code, out, err = run(capsys, "compare", whole, "--published", "--metric", "psnr", "--plot", tmp_path / "all")
    assert code == 0 and err == ""
    assert "different images" not in out


def test_compare_leaves_out_a_metric_only_the_anchor_has(capsys, tmp_path):
    """Before: the default anchor (VTM) has MS-SSIM, so a comparison of PSNR-only curves printed a table
    of n/a and a plot of VTM alone."""
    whole = save(ours(KODAK_NAMES), tmp_path / "whole.json")
    code, out, err = run(capsys, "compare", whole, "--published")
    assert code == 0 and "BD-rate (ms-ssim)" not in out
    assert err == "evc: warning: none of the curves has MS-SSIM values: compared on PSNR only\n"

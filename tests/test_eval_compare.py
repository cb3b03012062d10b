"""What `evc eval` and `evc compare` show a new user (issue 21 items 2-5): the shipped model by default,
the published curves inside the package, comparisons across different image sets said as such, and
plots a reader can read. Each test fails on the code before the fix (said in its docstring)."""

from __future__ import annotations

import fnmatch
import io
import json
import sys
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
    # EVC-SS ships (src/evc/weights); with nothing shipped, test_cli's refusal test covers the message.
    assert shipped == "EVC-SS" and code == 0, err
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
    """Before (issue 21): 4 Kodak images against the published 24-image curves gave a BD-rate with no
    warning, under a plot titled "Kodak". Since issue 39 that curve has no default anchor at all (see
    test_compare_gives_no_bd_rate_without_a_like_for_like_anchor); an anchor the user names is still
    used, its BD-rates marked."""
    subset = save(ours(KODAK_NAMES[:4]), tmp_path / "subset.json")
    code, out, err = run(capsys, "compare", subset, "--published", "--metric", "psnr", "--plot", tmp_path / "sub",
                         "--anchor", VTM_KODAK)
    assert code == 0, err
    assert err.count("\n") == 1 and err.startswith("evc: warning: not like for like")
    assert "EVC-SS: 4 images (kodak); " in err and "VTM: 24 images (kodak)" in err
    row = next(line for line in out.splitlines() if line.startswith("| EVC-SS |"))
    assert row.endswith(" dB, different images) |")
    assert "| EVC-LL (paper) | -1.0 % (32.5-37.9 dB) |" in out  # 24 against 24: no mark
    svg = (tmp_path / "sub-psnr.svg").read_text()
    assert "Not like for like" in svg and "EVC-SS: 4 images (kodak)" in svg and "Kodak, 24 images" not in svg

    whole = save(ours(KODAK_NAMES), tmp_path / "whole.json")
    code, out, err = run(capsys, "compare", whole, "--published", "--metric", "psnr", "--plot", tmp_path / "all")
    assert code == 0 and err == ""
    assert "different images" not in out and "| EVC-SS | " in out  # VTM on Kodak: the like-for-like anchor
    svg = (tmp_path / "all-psnr.svg").read_text()
    assert "PSNR vs bpp on 24 images (kodak), anchor VTM" in svg and "Not like for like" not in svg


def test_compare_leaves_out_a_metric_only_the_anchor_has(capsys, tmp_path):
    """Before: the default anchor (VTM) has MS-SSIM, so a comparison of PSNR-only curves printed a table
    of n/a and a plot of VTM alone."""
    whole = save(ours(KODAK_NAMES), tmp_path / "whole.json")
    code, out, err = run(capsys, "compare", whole, "--published")
    assert code == 0 and "BD-rate (ms-ssim)" not in out
    assert err == "evc: warning: none of the curves has MS-SSIM values: compared on PSNR only\n"


# -- item 5: plots a reader can read ---------------------------------------------------------------

LIVE_NAMES = {  # names as the live baselines give them, and CompressAI's
    "JPEG 4:2:0 optimized Huffman (libjpeg-turbo 3.1.0 via Pillow 13.0.0)": "JPEG 4:2:0",
    "JPEG 4:4:4 optimized Huffman (libjpeg-turbo 3.1.0 via Pillow 13.0.0)": "JPEG 4:4:4",
    "WebP lossy 4:2:0 method 6 (libwebp 1.6.0 via Pillow 13.0.0)": "WebP",
    "AVIF 4:4:4 speed 6 (libaom 3.14.1, libavif 1.4.2 via Pillow 13.0.0)": "AVIF",
    "JPEG 2000 9/7 + MCT, .jp2 (OpenJPEG 2.5.3 via Pillow 13.0.0)": "JPEG 2000",
    "JPEG XL effort 7 (libjxl 0.11.1 via imagecodecs 2025.3.30)": "JPEG XL",
    "HEIC 4:4:4 (x265 4.1, libheif 1.19.8 via pillow-heif 1.1.0)": "HEIC",
    "JPEG2000": "JPEG 2000", "BPG 8b 444 x265 ycbcr": "BPG", "VTM": "VTM",
    "EVC_MM (mask decay) (paper)": "EVC-MM (paper)", "EVC-SS": "EVC-SS", "Scale-SS": "Scale-SS",
}


def test_legend_labels_are_short():
    """Before: the legend showed the full names ("EVC_MM (mask decay) (paper)", live codecs' versions)."""
    from evc.eval.baselines import baseline_codecs
    from evc.eval.plots import short_label

    assert {name: short_label(name) for name in LIVE_NAMES} == LIVE_NAMES
    assert all(len(short_label(codec.name)) <= 12 for codec in baseline_codecs().values())
    assert short_label("my experimental codec with a very long name") == "my experimental codec with a..."


def _lines(fig) -> dict[str, tuple[str, str]]:
    from matplotlib.colors import to_hex

    return {line.get_label(): (to_hex(line.get_color()), line.get_linestyle()) for line in fig.axes[0].get_lines()}


def _live(name: str, shift: float) -> RDCurve:
    bpp = [0.2, 0.4, 0.8, 1.2]
    return RDCurve(name, bpp, [28.0 + shift, 31.0 + shift, 34.0 + shift, 36.0 + shift], [0.93, 0.96, 0.98, 0.985],
                   meta={"kind": "baseline"})


def test_a_codec_has_one_colour_in_every_plot():
    """Before: colours went by position among the plotted curves (and tab10 or tab20 by their number),
    so AVIF was light blue in the PSNR plot, where the paper's curves come first, and orange in the
    MS-SSIM plot, where they are absent."""
    pytest.importorskip("matplotlib")
    from evc.eval.plots import CODEC_COLOURS, rd_figure

    live = [_live(name, -i * 0.5) for i, name in enumerate(LIVE_NAMES) if "(" in name and "paper" not in name]
    mine = ours(KODAK_NAMES, ms_ssim=True)
    curves = [mine, *paper_curves(), *live, load_curve(VTM_KODAK)]
    styles = {"EVC-SS": "ours"} | {c.name: "published" for c in curves[1:4]} | {"VTM": "published"}
    psnr = _lines(rd_figure(curves, "psnr", styles=styles))
    ms_ssim = _lines(rd_figure(curves, "ms-ssim", styles=styles))
    reordered = _lines(rd_figure(list(reversed(curves)), "ms-ssim", styles=styles))
    assert "EVC-LL (paper)" in psnr and "EVC-LL (paper)" not in ms_ssim  # PSNR-only curves
    for label, (colour, _) in ms_ssim.items():
        assert psnr[label][0] == colour == reordered[label][0] == CODEC_COLOURS[label], label
    # ours and the paper's EVC-SS: one colour, told apart by line style
    assert psnr["EVC-SS"][0] == psnr["EVC-SS (paper)"][0] and psnr["EVC-SS"][1] != psnr["EVC-SS (paper)"][1]
    assert len({colour for colour, _ in psnr.values()}) == len(psnr) - 1


def test_two_curves_of_one_codec_look_different():
    pytest.importorskip("matplotlib")
    from evc.eval.plots import rd_figure

    lines = _lines(rd_figure([_live("WebP", 0.0), _live("WebP lossy 4:2:0 method 6 (libwebp 1.6.0)", 1.0)]))
    assert list(lines) == ["WebP", "WebP lossy 4:2:0 method 6 (li..."]  # equal short labels: the names
    assert len({colour for colour, _ in lines.values()}) == 2


def test_legend_covers_no_curve():
    """Before: the legend sat in the lower right corner of the axes, over the EVC-SS curve."""
    pytest.importorskip("matplotlib")
    from evc.eval.plots import rd_figure

    curves = [ours(KODAK_NAMES), *paper_curves(), load_curve(VTM_KODAK), *[_live(n, 0.0) for n in LIVE_NAMES][:7]]
    fig = rd_figure(curves, "psnr", styles={"EVC-SS": "ours"})
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)  # lays the figure out
    axes, legend = fig.axes[0].get_window_extent(renderer), fig.axes[0].get_legend().get_window_extent(renderer)
    assert legend.x0 >= axes.x1  # right of the axes, so over no curve
    assert legend.x1 <= fig.bbox.x1 and legend.y0 >= 0  # and not cut off by the figure's edge
    assert fig.axes[0].get_title() == "Kodak, 24 images"


# -- issue 39: a like-for-like anchor by default, short labels, progress only on a terminal ------------

PHOTOS = ["IMG_0001.jpg", "IMG_0002.jpg", "IMG_0003.jpg"]
WEBP = "WebP lossy 4:2:0 method 6 (libwebp 1.6.0 via Pillow 13.0.0)"
JPEG420 = "JPEG 4:2:0 optimized Huffman (libjpeg-turbo 3.1.0 via Pillow 13.0.0)"
JPEG444 = "JPEG 4:4:4 optimized Huffman (libjpeg-turbo 3.1.0 via Pillow 13.0.0)"


def live_on(name: str, names: list[str], shift: float, dataset: str = "photos") -> RDCurve:
    """A live baseline's curve as `evc eval --baseline` writes it, on ``names``; ``shift`` dB below EVC-SS's."""
    bpp, psnr = [0.2, 0.4, 0.6, 0.8, 1.0], [27.0 - shift, 29.8 - shift, 31.6 - shift, 32.9 - shift, 34.0 - shift]
    per_image = {n: {"bpp": bpp, "psnr-rgb": psnr} for n in names}
    return RDCurve(name, bpp, psnr, meta={"kind": "baseline", "images": len(names), "dataset": dataset},
                   per_image=per_image)


def ours_v4(names: list[str], dataset: str = "photos") -> RDCurve:
    curve = ours(names, dataset)
    curve.meta["versions"] = {"weights": "shipped", "weights_version": "v4", "arithmetic": "int8"}
    return curve


def test_compare_anchors_on_a_live_baseline_of_the_same_images(capsys, tmp_path):
    """Before: `evc compare res/*.json` of one's own photos anchored on VTM measured on Kodak ("+519.9 %
    (..., different images)") under a plot titled "Not like for like"; the live WebP of the same photos
    was one more column, headed by its whole name."""
    pytest.importorskip("matplotlib")
    from evc.eval.bdrate import bd_rate

    mine, webp = ours_v4(PHOTOS), live_on(WEBP, PHOTOS, 0.0)
    files = [save(mine, tmp_path / "EVC-SS.json"), save(live_on(JPEG420, PHOTOS, 3.0), tmp_path / "jpeg420.json"),
             save(webp, tmp_path / "webp.json")]  # WebP last: chosen by preference, not by position
    code, out, err = run(capsys, "compare", *files, "--metric", "psnr", "--plot", tmp_path / "rd")
    assert code == 0 and err == "", err
    assert out.startswith("Anchor WebP: live baseline measured on the same images (3 images (photos)).\n")
    assert "| curve | BD-rate (PSNR) vs WebP |" in out and "VTM" not in out and "different images" not in out
    expected = bd_rate(webp, mine)
    assert expected.percent < -1  # EVC-SS is drawn better than WebP here: a real number in the cell
    assert f"| EVC-SS v4 | {expected.percent:+.1f} % ({expected.overlap[0]:.1f}-{expected.overlap[1]:.1f} dB) |" in out
    assert "| JPEG 4:2:0 | +" in out
    # short labels in the table; the full descriptions under it
    assert f"\nWebP: {WEBP}\n" in out and f"\nJPEG 4:2:0: {JPEG420}\n" in out
    assert "EVC-SS v4: EVC-SS (weights shipped v4, int8 arithmetic)" in out
    svg = (tmp_path / "rd-psnr.svg").read_text()
    assert "PSNR vs bpp on 3 images (photos), anchor WebP" in svg and "Not like for like" not in svg
    assert "EVC-SS v4" in svg and WEBP not in svg  # legend: short labels

    # JPEG 4:2:0 before 4:4:4 when there is no WebP; --long-labels: the full names in the table
    files = [save(live_on(JPEG444, PHOTOS, 2.0), tmp_path / "jpeg444.json"), files[1], files[0]]
    code, out, err = run(capsys, "compare", *files, "--metric", "psnr", "--long-labels")
    assert code == 0 and f"| curve | BD-rate (PSNR) vs {JPEG420} |" in out and f"| {JPEG444} | " in out


def test_compare_gives_no_bd_rate_without_a_like_for_like_anchor(capsys, tmp_path):
    """Before: the curve of one's own photos got "+519.9 % (26.9-29.5 dB, different images)" against VTM
    on Kodak, and a live WebP of other photos was an anchor for it too. Now: said plainly, no BD-rate,
    its quality at equal rates instead."""
    pytest.importorskip("matplotlib")
    elsewhere = live_on(WEBP, ["x.png", "y.png", "z.png"], 0.0, dataset="others")
    files = [save(ours_v4(PHOTOS), tmp_path / "EVC-SS.json"), save(elsewhere, tmp_path / "webp.json")]
    code, out, err = run(capsys, "compare", *files, "--metric", "psnr", "--plot", tmp_path / "rd")
    assert code == 0 and err == "", err
    assert "No like-for-like anchor for EVC-SS v4 (3 images (photos)): " in out
    mine = [line for line in out.splitlines() if line.startswith("| EVC-SS v4 |")]
    assert mine == ["| EVC-SS v4 | 3 images (photos) | n/a | 31.00 | 32.80 | n/a |"]  # PSNR at 0.25-1 bpp, in its range
    assert "| WebP | 0.0 % " in out  # WebP is anchored on itself, and no row compares the two image sets
    assert "%" not in "".join(mine) and "different images" not in out and "vs VTM" not in out
    svg = (tmp_path / "rd-psnr.svg").read_text()
    assert "anchor WebP on 3 images (others)" in svg and "Not like for like" in svg

    code, out, err = run(capsys, "compare", files[0], "--metric", "psnr", "--plot", tmp_path / "alone")
    assert code == 0 and "No like-for-like anchor" in out and "BD-rate (psnr)" not in out and "%" not in out
    assert "PSNR vs bpp on 3 images (photos), no like-for-like anchor" in (tmp_path / "alone-psnr.svg").read_text()


def test_same_images_by_pixels_then_names():
    """Result files since issue 39 record each image's pixel digest: renamed copies are the same images,
    same-named photos of other cameras are not."""
    from evc.eval.results import same_images

    a, b = live_on(WEBP, PHOTOS, 0.0), ours(PHOTOS, dataset="elsewhere")
    assert same_images(a, b) and not different_images(a, b)  # names decide without digests
    a.meta["image_sha256"] = {n: f"{i:064x}" for i, n in enumerate(PHOTOS)}
    b.meta["image_sha256"] = {n: f"{i + 1:064x}" for i, n in enumerate(PHOTOS)}
    assert different_images(a, b) and not same_images(a, b)
    renamed = ours(["a.png", "b.png", "c.png"])
    renamed.meta["image_sha256"] = {n: f"{i:064x}" for i, n in enumerate(["a.png", "b.png", "c.png"])}
    assert same_images(a, renamed)
    unknown = RDCurve("CompressAI JPEG", [0.5, 1.0], [30.0, 33.0])
    assert not same_images(unknown, unknown) and not different_images(unknown, a)


def test_eval_records_pixel_digests(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(smooth_image(40, 48, seed=1)).save(folder / "a.png")
    Image.fromarray(smooth_image(40, 48, seed=1)).save(folder / "copy.ppm")
    code, out, err = run(capsys, "eval", folder, "--baseline", "jpeg420", "--out", tmp_path / "r", "--quiet")
    assert code == 0, err
    digests = json.loads((tmp_path / "r" / "jpeg420.json").read_text())["meta"]["image_sha256"]
    assert set(digests) == {"a.png", "copy.ppm"} and digests["a.png"] == digests["copy.ppm"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("command", ["eval", "compare"])
def test_progress_only_on_a_terminal(command, capsys, tmp_path, monkeypatch):
    """tqdm's bar on stderr: nothing progress-like when stderr is no terminal (pipes, logs, tests) or with
    --quiet. The bar's delay is set to 0 here, so that the terminal case shows it on this short run."""
    import evc.eval.progress

    monkeypatch.setattr(evc.eval.progress, "PROGRESS_DELAY_S", 0.0)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(smooth_image(161, 170, seed=1)).save(folder / "a.png")  # MS-SSIM's least size: no warning
    results = save(live_on(WEBP, PHOTOS, 0.0), tmp_path / "webp.json")

    def argv(name: str) -> list:
        if command == "eval":
            return ["eval", folder, "--baseline", "jpeg420", "--out", tmp_path / name]
        return ["compare", results, "--metric", "psnr"]

    code, out, err = run(capsys, *argv("piped"))
    assert code == 0 and err == "", err  # capsys' stderr is no terminal
    for quiet in (False, True):
        terminal = _Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        code = main([str(a) for a in argv(f"tty{quiet}")] + (["--quiet"] if quiet else []))
        monkeypatch.undo()
        assert code == 0
        shown = terminal.getvalue()
        assert (shown == "") if quiet else ("|" in shown and ("img" if command == "eval" else "step") in shown), shown
        monkeypatch.setattr(evc.eval.progress, "PROGRESS_DELAY_S", 0.0)

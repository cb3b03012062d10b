"""What a new user meets (issue 14, kinds 4 and 5; issue 21, items 6 and 7: honest quality settings), and
--weights alone for the evaluation commands.

Each test is one case of the issue: it failed before the fix and passes now.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import evc
from evc.cli.main import main
from evc.models.weights import save_weights

from conftest import smooth_image

ROOT = Path(__file__).resolve().parents[1]
MODEL = "EVC-SS"


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("images") / "in.png"
    Image.fromarray(smooth_image(24, 40, seed=3)).save(path)
    return path


@pytest.fixture(scope="module")
def evc_file(tmp_path_factory, weights, png) -> Path:
    path = tmp_path_factory.mktemp("files") / "in.evc"
    path.write_bytes(evc.load(MODEL, device="cpu", weights=weights).compress(png))
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- kind 4: files from the research API decode after save_weights ---------------------------------


def test_research_api_files_decode_after_save_weights(tmp_path):
    model = evc.create_model(MODEL, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    codec = evc.Codec(model, MODEL, device="cpu")  # the documented order: code, then save, then load
    image = smooth_image(40, 56, seed=1)
    data = codec.compress(image, quality=0.7)
    expected = codec.decompress(data)
    save_weights(model, tmp_path / "w", MODEL)
    loaded = evc.load(weights=tmp_path / "w", device="cpu")
    assert loaded.fingerprint == codec.fingerprint
    assert np.array_equal(np.asarray(loaded.decompress(data)), np.asarray(expected))
    assert loaded.compress(image, quality=0.7) == data
    # the caller's model is not rounded in place (it may go on training)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not all(torch.equal(v, v.half().float()) for v in before.values() if v.is_floating_point())


# -- kind 5 ----------------------------------------------------------------------------------------


def test_readme_python_version_is_pyprojects():
    required = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = re.fullmatch(r">=(3\.\d+)", required).group(1)
    readme = (ROOT / "README.md").read_text()
    assert f"Python {minimum} or newer" in readme
    assert re.findall(r"Python (3\.\d+) or newer", readme) == [minimum]


def test_untrained_message_says_how_to_get_weights(capsys, tmp_path, png):
    untrained = next(name for name, spec in evc.MODELS.items() if not spec.has_weights())
    code, out, err = run(capsys, "encode", png, tmp_path / "x.evc", "--model", untrained, "--device", "cpu")
    assert code == 2 and "evc train" in err and "--weights PATH" in err and "export/" in err
    with pytest.raises(evc.UntrainedModelError, match="evc train"):
        evc.load(untrained)


def _info_quality(out: str) -> tuple[float, float, int]:
    """The quality line of `evc info`: (lowest, highest quality shown, q index)."""
    single = re.search(r"^quality\s+([\d.]+) \(q index (\d+)\)$", out, re.MULTILINE)
    if single:
        return float(single[1]), float(single[1]), int(single[2])
    ranged = re.search(r"^quality\s+([\d.]+)-([\d.]+) \(every quality in this range codes to q index (\d+)\)$", out, re.MULTILINE)
    assert ranged, out
    return float(ranged[1]), float(ranged[2]), int(ranged[3])


def test_info_shows_the_quality_the_user_gave(capsys, weights, evc_file):
    """Issue 21 item 6: the file stores the q index only, so `evc info` shows every quality setting (of
    the fewest decimals) that codes to it: the user's own setting is among them (was: 0.496, for 0.5)."""
    codec = evc.load(MODEL, device="cpu", weights=weights)
    code, out, err = run(capsys, "info", evc_file, "--weights", weights)  # coded at the default, 0.5
    assert (code, err) == (0, "")
    low, high, q = _info_quality(out)
    assert q == codec.q_index(0.5) and low <= 0.5 <= high
    info = evc.file_info(evc_file.read_bytes(), weights=weights)
    assert info.quality_range == (low, high) and info.quality == pytest.approx(0.5, abs=0.01)
    code, out, err = run(capsys, "info", evc_file)
    expected = ("unknown: the file was made with other weights than the shipped ones" if evc.MODELS[MODEL].has_weights()
                else "unknown: no weights ship for this model (give the file's weights with --weights")
    assert code == 0 and expected in out and f"q index {q})" in out


@pytest.mark.parametrize("quality", [0.0, 0.1, 0.25, 0.3, 0.333, 0.5, 0.77, 0.9, 1.0])
def test_the_quality_range_is_exactly_the_settings_that_give_the_q_index(capsys, tmp_path, weights, png, quality):
    codec = evc.load(MODEL, device="cpu", weights=weights)
    path = tmp_path / "q.evc"
    path.write_bytes(codec.compress(png, quality))
    low, high, q = _info_quality(run(capsys, "info", path, "--weights", weights)[1])
    assert q == codec.q_index(quality) and low <= quality <= high
    decimals = max(len(f"{v:g}".partition(".")[2]) for v in (low, high, 0.01))
    step = 10.0**-decimals
    assert codec.q_index(low) == codec.q_index(high) == q
    assert low == 0 or codec.q_index(round(low - step, decimals)) != q  # the range is all of them
    assert high == 1 or codec.q_index(round(high + step, decimals)) != q


def test_info_with_other_weights_does_not_guess(capsys, tmp_path, evc_file):
    other = tmp_path / "other"
    save_weights(evc.create_model(MODEL, seed=1), other, MODEL)
    code, out, _ = run(capsys, "info", evc_file, "--weights", other)
    assert code == 0 and f"unknown: the file was made with other weights than {other}" in out
    assert evc.file_info(evc_file.read_bytes(), weights=other).quality is None
    save_weights(evc.create_model("EVC-SL", seed=1), tmp_path / "sl", "EVC-SL")
    code, out, err = run(capsys, "info", evc_file, "--weights", tmp_path / "sl")
    assert code == 2 and "holds weights for EVC-SL; the file was made by EVC-SS" in err


class _Stdin:
    """Standard input carrying bytes (not a terminal)."""

    def __init__(self, data: bytes) -> None:
        self.buffer = io.BytesIO(data)

    def isatty(self) -> bool:
        return False


def test_dash_is_standard_input_and_output(capsysbinary, monkeypatch, tmp_path, weights, png, evc_file):
    codec = evc.load(MODEL, device="cpu", weights=weights)
    monkeypatch.setattr(sys, "stdin", _Stdin(png.read_bytes()))
    assert main(["encode", "-", "-", "--weights", str(weights), "--device", "cpu"]) == 0
    out, err = capsysbinary.readouterr()
    assert (out, err) == (codec.compress(png), b"")
    monkeypatch.setattr(sys, "stdin", _Stdin(evc_file.read_bytes()))
    assert main(["decode", "-", "-", "--weights", str(weights), "--device", "cpu"]) == 0
    out, err = capsysbinary.readouterr()
    assert err == b"" and out[:8] == b"\x89PNG\r\n\x1a\n"  # PNG on standard output
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(out))), np.asarray(codec.decompress(evc_file.read_bytes())))
    monkeypatch.setattr(sys, "stdin", _Stdin(evc_file.read_bytes()))
    assert main(["info", "-"]) == 0
    assert b"EVC-SS" in capsysbinary.readouterr().out
    assert not (tmp_path / "-").exists() and not Path("-").exists()


def test_dash_refuses_terminals(capsys, monkeypatch, weights, png):
    class Terminal(_Stdin):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal(b""))
    code, out, err = run(capsys, "encode", "-", "x.evc", "--weights", weights)
    assert code == 2 and "standard input, which is a terminal" in err
    assert not Path("x.evc").exists()


def test_dash_through_real_pipes(tmp_path, weights, png):
    codec = evc.load(MODEL, device="cpu", weights=weights)
    result = subprocess.run(
        [sys.executable, "-m", "evc", "encode", "-", "-", "--weights", str(weights), "--device", "cpu"],
        input=png.read_bytes(), capture_output=True, timeout=600, cwd=tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == codec.compress(png)
    assert list(tmp_path.iterdir()) == []


def test_decoding_to_jpeg_exposes_the_quality(capsys, tmp_path, weights, evc_file):
    args = ["--weights", weights, "--device", "cpu"]
    code, out, err = run(capsys, "decode", evc_file, tmp_path / "a.jpg", *args)
    assert (code, out) == (0, "")
    assert err == ("evc: warning: JPEG is lossy: written at quality 95 (choose with --output-quality; "
                   "PNG keeps the decoded pixels exactly)\n")
    code, out, err = run(capsys, "decode", evc_file, tmp_path / "b.jpg", "--output-quality", 40, *args)
    assert (code, out, err) == (0, "", "")
    assert (tmp_path / "b.jpg").stat().st_size < (tmp_path / "a.jpg").stat().st_size
    code, out, err = run(capsys, "decode", evc_file, tmp_path / "c.png", "--output-quality", 40, *args)
    assert code == 2 and "--output-quality applies to lossy formats (JPEG, WebP, AVIF), not PNG" in err
    code, out, err = run(capsys, "decode", evc_file, tmp_path / "d.jpg", "--output-quality", 0, *args)
    assert code == 2 and "output quality must be an integer in 1..100, got 0" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "b.jpg"]


def test_decoding_to_a_format_that_changes_pixels_warns(capsys, tmp_path, weights, evc_file):
    code, out, err = run(capsys, "decode", evc_file, tmp_path / "a.gif", "--weights", weights, "--device", "cpu")
    assert code == 0 and "GIF files cannot hold the decoded pixels exactly" in err


# -- evaluation ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("kodak-like")
    Image.fromarray(smooth_image(64, 96, seed=3)).save(folder / "tiny.png")
    return folder


def test_eval_with_weights_alone(capsys, tmp_path, weights, small_folder):
    """`evc eval DIR --anchors --weights PATH` used to say "nothing to evaluate" without --model."""
    code, out, err = run(capsys, "eval", small_folder, "--anchors", "--weights", weights, "--out", tmp_path / "r",
                         "--quiet", "--device", "cpu")
    assert code == 0, err
    data = json.loads((tmp_path / "r" / "EVC-SS.json").read_text())
    assert data["meta"]["versions"]["weights"] == str(weights) and len(data["results"]["bpp"]) == 4


def test_eval_says_why_there_is_no_ms_ssim(capsys, tmp_path, weights, small_folder):
    code, out, err = run(capsys, "eval", small_folder, "--qualities", 2, "--weights", weights, "--out", tmp_path,
                         "--quiet", "--device", "cpu")
    assert code == 0
    assert "nan" not in out and out.count("MS-SSIM n/a") == 2
    assert err == ("evc: warning: no MS-SSIM for EVC-SS: it needs images of at least 161 pixels on each side, "
                   "and 1 of the 1 are smaller (tiny.png)\n")


def test_bench_with_weights_alone_benches_their_model(weights):
    from evc.cli.eval import bench_cases
    from evc.cli.main import build_parser

    args = build_parser().parse_args(["bench", "--weights", str(weights)])
    assert bench_cases(args) == [("EVC-SS", 1920, 1080)]  # the paper's size for the small model
    args = build_parser().parse_args(["bench", "--weights", str(weights), "--sizes", "768x512"])
    assert bench_cases(args) == [("EVC-SS", 768, 512)]


def _curve(path: Path, name: str, kind: str, ms_ssim: bool) -> Path:
    results = {"bpp": [0.2, 0.4, 0.8], "psnr-rgb": [28.0, 31.0, 34.0]}
    if ms_ssim:
        results["ms-ssim-rgb"] = [0.95, 0.97, 0.985]
    path.write_text(json.dumps({"name": name, "meta": {"kind": kind}, "results": results}))
    return path


def test_compare_with_a_metric_missing_succeeds_and_says_so(capsys, tmp_path):
    ours = _curve(tmp_path / "ours.json", "ours", "ours", ms_ssim=False)
    anchor = _curve(tmp_path / "anchor.json", "anchor", "baseline", ms_ssim=False)
    code, out, err = run(capsys, "compare", ours, "--anchor", anchor, "--plot", tmp_path / "rd")
    assert code == 0, err
    assert err == "evc: warning: none of the curves has MS-SSIM values: compared on PSNR only\n"
    assert "BD-rate (psnr)" in out and "BD-rate (ms-ssim)" not in out
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("rd")) == ["rd-psnr.png", "rd-psnr.svg"]
    # Asked for explicitly: refused before anything is printed or written.
    code, out, err = run(capsys, "compare", ours, "--anchor", anchor, "--metric", "ms-ssim", "--plot", tmp_path / "m")
    assert code == 2 and out == "" and "none of the curves has MS-SSIM values" in err
    assert not list(tmp_path.glob("m-*")) and not list(tmp_path.glob(".evc-plot-*"))


def test_compare_does_not_overwrite_plots(capsys, tmp_path):
    ours = _curve(tmp_path / "ours.json", "ours", "ours", ms_ssim=True)
    anchor = _curve(tmp_path / "anchor.json", "anchor", "baseline", ms_ssim=True)
    (tmp_path / "rd-ms-ssim.svg").write_text("mine")
    code, out, err = run(capsys, "compare", ours, "--anchor", anchor, "--plot", tmp_path / "rd")
    assert code == 2 and out == "" and "exists; pass --force" in err
    assert (tmp_path / "rd-ms-ssim.svg").read_text() == "mine" and not (tmp_path / "rd-psnr.png").exists()
    code, out, err = run(capsys, "compare", ours, "--anchor", anchor, "--plot", tmp_path / "rd", "--force")
    assert code == 0 and (tmp_path / "rd-ms-ssim.svg").read_text().startswith("<?xml")


# -- issue 21 item 7: rates past the highest-rate anchor ------------------------------------------


def test_q_index_past_the_highest_rate_anchor_is_warned(capsys, tmp_path, weights, png):
    """Past quality 1 the model was not trained, and more bits buy little quality (measured in the
    README): quality stays in the trained range, and an explicit q index past it is warned."""
    codec = evc.load(MODEL, device="cpu", weights=weights)
    best, worst = codec.q_index(1.0), codec.q_index(0.0)
    assert (best, worst) == (min(codec.anchor_q_indices), max(codec.anchor_q_indices))
    past = rf"q index {best - 1} is past {MODEL}'s highest-rate anchor \(q index {best}, quality 1\)"
    with pytest.warns(UserWarning, match=past):
        data = codec.compress(png, q_index=best - 1)
    with pytest.warns(UserWarning, match="highest-rate anchor"):
        codec.encode(png, q_index=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the trained range, and less rate than quality 0: no warning
        for q in (best, worst, worst + 10):
            codec.compress(png, q_index=q)
    assert codec.decompress(data).size == (40, 24)  # still a file like any other
    out_file = tmp_path / "past.evc"
    code, out, err = run(capsys, "encode", png, out_file, "--q-index", best - 1, "--weights", weights, "--device", "cpu")
    assert code == 0 and re.fullmatch(rf"evc: warning: {past}: .*\n", err) and out_file.read_bytes() == data
    code, out, err = run(capsys, "info", out_file, "--weights", weights)
    assert code == 0 and f"quality  above 1 (q index {best - 1}: more rate than the highest-rate anchor" in out

"""Evaluation: metrics against reference values, the eval runner and CLI, bench and complexity."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

import evc
from evc.cli.main import main as evc_main
from evc.eval.bench import bench_codec, coder_throughput, synthetic_image
from evc.eval.metrics import MS_SSIM_MIN_SIDE, ms_ssim, ms_ssim_db, psnr
from evc.eval.results import load_curve
from evc.eval.runner import EVCUnderTest, evaluate

from conftest import random_codec, smooth_image


def test_psnr_reference_values() -> None:
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 255  # MSE = 1/48 on [0, 1] -> PSNR = 10 log10(48)
    assert psnr(a, b) == pytest.approx(10 * math.log10(48))
    assert psnr(a, a) == math.inf
    assert psnr(np.full((8, 8, 3), 100, np.uint8), np.full((8, 8, 3), 110, np.uint8)) == pytest.approx(
        20 * math.log10(255 / 10)
    )


def test_ms_ssim_reference_values() -> None:
    """Reference values computed once with pytorch-msssim 1.0 (data_range=255, float64 input)."""
    a = smooth_image(192, 256, seed=1)
    rng = np.random.default_rng(5)
    expected = {2: 0.9993886052151991, 10: 0.9861088087113307, 40: 0.8664047421084214}
    for sd, value in expected.items():
        b = np.clip(a.astype(float) + rng.normal(0, sd, a.shape), 0, 255).astype(np.uint8)
        assert ms_ssim(a, b) == pytest.approx(value, abs=1e-6)
    assert ms_ssim(a, a) == pytest.approx(1.0)
    assert ms_ssim(a[:100], a[:100]) is None  # too small for five scales
    assert MS_SSIM_MIN_SIDE == 161
    assert ms_ssim_db(0.99) == pytest.approx(20.0)


@pytest.mark.parametrize("height, width", [(161, 161), (170, 333), (203, 259)])
def test_ms_ssim_is_pytorch_msssims(height: int, width: int) -> None:
    """The NumPy MS-SSIM is pytorch-msssim's computation (issue 39: 12 times faster): odd sides, whose
    pooling pads with zeros, and a reference reused for several distorted versions, as `evc eval` does."""
    pytorch_msssim = pytest.importorskip("pytorch_msssim")
    torch = pytest.importorskip("torch")
    from evc.eval.metrics import MS_SSIM_WEIGHTS, MSSSIMReference

    def theirs(a: np.ndarray, b: np.ndarray) -> float:
        x, y = (torch.from_numpy(v.astype(np.float64)).permute(2, 0, 1)[None] / 255.0 for v in (a, b))
        return float(pytorch_msssim.ms_ssim(x, y, data_range=1.0, win_size=11, weights=list(MS_SSIM_WEIGHTS)))

    a = smooth_image(height, width, seed=height)
    reference = MSSSIMReference(a)
    rng = np.random.default_rng(width)
    for sd in (3, 20, 60):
        b = np.clip(a.astype(float) + rng.normal(0, sd, a.shape), 0, 255).astype(np.uint8)
        expected = theirs(a, b)
        assert reference.compare(b) == pytest.approx(expected, abs=1e-12)
        assert ms_ssim(a, b) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="differ in shape"):
        reference.compare(a[:-1])
    with pytest.raises(ValueError, match="uint8"):
        MSSSIMReference(a.astype(np.float32))


def test_evaluate_our_codec_on_two_images(tmp_path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(smooth_image(192, 224, seed=1)).save(folder / "a.png")
    Image.fromarray(smooth_image(176, 200, seed=2)).save(folder / "b.png")
    codec = random_codec("EVC-SS")
    curve = evaluate(EVCUnderTest.at_qualities(codec, 3, "random"), sorted(folder.iterdir()), "ours", progress=False)
    assert len(curve.bpp) == 3 and set(curve.per_image) == {"a.png", "b.png"}
    # Means are the means of the per-image values; bpp is the real file size.
    a_bpp = [len(codec.compress(smooth_image(192, 224, seed=1), q_index=q)) * 8 / (192 * 224) for q in curve.meta["settings"]]
    assert curve.per_image["a.png"]["bpp"] == pytest.approx(a_bpp)
    assert curve.bpp == pytest.approx(np.mean([curve.per_image[n]["bpp"] for n in ("a.png", "b.png")], axis=0))
    assert curve.ms_ssim is not None and all(0 < v <= 1 for v in curve.ms_ssim)
    # Each image's values are its own (the loop runs image by image, each reference prepared once).
    a = smooth_image(192, 224, seed=1)
    decoded = [np.asarray(codec.decompress(codec.compress(a, q_index=q)).convert("RGB")) for q in curve.meta["settings"]]
    assert curve.per_image["a.png"]["ms-ssim-rgb"] == pytest.approx([ms_ssim(a, d) for d in decoded], abs=1e-12)
    assert all(t > 0 for t in curve.encoding_time + curve.decoding_time)


def test_eval_cli_writes_results_json(tmp_path, capsys) -> None:
    from evc.models.weights import save_weights

    save_weights(evc.create_model("EVC-SS", seed=0), tmp_path / "w", "EVC-SS")
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(smooth_image(64, 96, seed=3)).save(folder / "tiny.png")  # too small for MS-SSIM
    out = tmp_path / "res"
    args = ["eval", str(folder), "--model", "EVC-SS", "--weights", str(tmp_path / "w"), "--anchors", "--out", str(out), "--quiet"]
    assert evc_main(args) == 0
    data = json.loads((out / "EVC-SS.json").read_text())
    assert set(data["results"]) == {"bpp", "psnr-rgb", "encoding_time", "decoding_time"}  # no MS-SSIM: image too small
    assert len(data["results"]["bpp"]) == 4 and data["meta"]["kind"] == "ours"
    assert load_curve(out / "EVC-SS.json").name == "EVC-SS"
    assert evc_main(args) == 2  # exists: not overwritten without --force
    assert "exists" in capsys.readouterr().err
    assert evc_main(args + ["--force"]) == 0
    assert evc_main(["eval", str(tmp_path / "nope"), "--model", "EVC-SS"]) == 2
    assert evc_main(["eval", str(folder), "--baseline", "mp3"]) == 2


def test_eval_on_the_validation_split(tmp_path, capsys, monkeypatch) -> None:
    import evc.shared_data
    from evc.models.weights import save_weights

    save_weights(evc.create_model("EVC-SS", seed=0), tmp_path / "w", "EVC-SS")
    photos = []
    for i in range(2):
        photos.append(tmp_path / f"photo{i}.png")
        Image.fromarray(smooth_image(64, 64, seed=i)).save(photos[-1])
    monkeypatch.setattr(evc.shared_data, "validation_photo_paths", lambda: photos)
    out = tmp_path / "res"
    args = ["eval", "--validation-split", "--weights", str(tmp_path / "w"), "--anchors", "--out", str(out), "--quiet"]
    assert evc_main(args) == 0
    data = json.loads((out / "EVC-SS.json").read_text())
    assert data["meta"]["dataset"] == "validation split" and data["meta"]["images"] == 2
    assert set(data["per_image"]) == {"photo0.png", "photo1.png"}
    capsys.readouterr()
    assert evc_main(["eval", "--weights", str(tmp_path / "w")]) == 2  # neither a folder nor the split
    assert evc_main(["eval", str(tmp_path), "--validation-split", "--weights", str(tmp_path / "w")]) == 2
    assert "not both" in capsys.readouterr().err
    photos.append(tmp_path / "absent.jpg")
    assert evc_main(args + ["--force"]) == 2
    assert "absent.jpg is missing" in capsys.readouterr().err


def test_bench_reports_a_breakdown() -> None:
    result = bench_codec(random_codec("EVC-SS"), synthetic_image(128, 64), repeat=1)
    assert result.encode_s > 0 and result.decode_s > 0
    assert 0 < result.encode_coding_s < result.encode_s and 0 < result.decode_coding_s < result.decode_s
    assert result.io_encode_s < result.encode_s and result.peak_memory_mb > 0
    enc, dec, n = coder_throughput(128, 64, repeat=1)
    assert n == 192 * 4 * 8 and enc > 0 and dec > 0


def test_each_bench_row_measures_its_own_peak_memory() -> None:
    """Issue 41: the "peak MB" of a row is its own, not the process's peak since it started (on
    2026-12-07 both 1080p rows of `evc bench` read 2443)."""
    from evc.eval.bench import RowPeak

    import mmap

    # An anonymous mapping, every page touched, then unmapped: new resident memory whatever the heap
    # holds free from earlier tests (a numpy array may reuse it and leave the resident set as it was).
    size = 64 * 2**20
    big = RowPeak()
    block = mmap.mmap(-1, size)
    for offset in range(0, size, mmap.PAGESIZE):
        block[offset] = 1
    held = big.mb()
    block.close()
    small = RowPeak()
    if not small.own:
        pytest.skip("this system cannot reset the peak resident memory (Linux /proc/self/clear_refs)")
    assert held - small.mb() > 48  # the later, smaller row does not repeat the earlier one's peak


def test_complexity_and_bench_cli(capsys) -> None:
    assert evc_main(["complexity", "--models", "EVC-SS"]) == 0
    out = capsys.readouterr().out
    assert "dual_prior" in out and "paper: 12.8 M parameters" in out and "1920x1088" in out
    assert evc_main(["bench", "--models", "EVC-SS", "--sizes", "768x512", "--repeat", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    weights = "trained" if evc.MODELS["EVC-SS"].has_weights() else "random"  # shipped weights are timed
    assert "EVC-SS" in out and weights in out and "M symbols/s" in out


def test_compare_cli(tmp_path, capsys) -> None:
    from evc.shared_data import SHARED_DIR

    compressai = SHARED_DIR / "rd_results" / "compressai_kodak"
    if not compressai.is_dir():
        pytest.skip("shared rd_results not present")
    webp = compressai / "webp.json"
    assert evc_main(["compare", str(webp), "--published", "--metric", "psnr", "--plot", str(tmp_path / "rd")]) == 0
    out = capsys.readouterr().out
    assert "| WebP | +78.7 %" in out and "| EVC-LL (paper) | -1.0 %" in out
    # CompressAI's files do not say their images: anchored all the same, and the report says so.
    assert "WebP does not say which images it was measured on: compared with VTM" in out
    assert (tmp_path / "rd-psnr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "rd-psnr.svg").is_file()
    # A live baseline among the inputs becomes the anchor.
    curve = json.loads(webp.read_text())
    curve["name"], curve["meta"] = "live-webp", {"kind": "baseline"}
    (tmp_path / "live.json").write_text(json.dumps(curve))
    assert evc_main(["compare", str(compressai / "jpeg.json"), str(tmp_path / "live.json"), "--metric", "psnr"]) == 0
    out = capsys.readouterr().out
    assert "vs live-webp" in out and "vs VTM" not in out
    (tmp_path / "bad.json").write_text("{not json")
    assert evc_main(["compare", str(tmp_path / "bad.json")]) == 2
    assert evc_main(["compare", str(webp), "--anchor", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert "not valid JSON" in err and "anchor curve not found" in err


def test_report_formatters_line_up() -> None:
    """The tables are formatted next to their data: columns line up with their headers."""
    from evc.eval.bench import SPEED_TABLE_HEADER, BenchResult, SpeedRow, format_coder_throughput, format_speed_row
    from evc.eval.results import RDCurve, format_points

    r = BenchResult("EVC-SS", "cpu", 768, 512, 0.1, 0.2, 0.01, 0.02, 0.001, 0.002, 300.0, 0.5, 0.05, 0.06)
    row = format_speed_row(SpeedRow("plain float32", "random", r, 1.0, 1.0), "cpu")
    assert len(row) == len(SPEED_TABLE_HEADER) and row.endswith("1.00/1.00")
    assert format_coder_throughput(768, 512, 0.5, 0.25, 10**6) == (
        "entropy coder, 768x512 latent (1000000 symbols, trained-like statistics): "
        "encode 2.0 M symbols/s, decode 4.0 M symbols/s"
    )
    curve = RDCurve("c", [0.25, 0.5], [30.0, 32.5], None, [0.1, 0.1], [0.05, 0.05])
    assert format_points(curve)[1] == "   0.5000 bpp   32.50 dB  MS-SSIM n/a     encode    100.0 ms  decode     50.0 ms"
    assert format_points(RDCurve("no times", [0.25], [30.0])) == []  # nothing to report without times


def test_eval_at_one_encoder_level(tmp_path, capsys) -> None:
    """A scalable model measured per encoder level: each level's curve is the sizes of the files that
    level alone writes, named by the level; a level the model lacks is refused before any coding."""
    from evc.models.weights import save_weights

    save_weights(evc.create_model("Scale-SS", seed=0), tmp_path / "w", "Scale-SS")
    folder = tmp_path / "imgs"
    folder.mkdir()
    image = smooth_image(64, 96, seed=3)
    Image.fromarray(image).save(folder / "tiny.png")
    out = tmp_path / "res"
    base = ["eval", str(folder), "--weights", str(tmp_path / "w"), "--qualities", "2", "--out", str(out), "--quiet"]
    codec = evc.load("Scale-SS", weights=str(tmp_path / "w"))
    sizes = {}
    for level in (0, 3):
        assert evc_main(base + ["--encoder-level", str(level)]) == 0
        curve = load_curve(out / f"Scale-SS-level{level}.json")
        assert curve.name == f"Scale-SS level {level}" and curve.meta["versions"]["encoder_level"] == str(level)
        expected = [len(codec.compress(image, q_index=q, encoder_level=level)) * 8 / (64 * 96) for q in curve.meta["settings"]]
        assert curve.bpp == pytest.approx(expected)
        sizes[level] = curve.bpp
    assert sizes[0] != sizes[3]  # the levels code differently
    capsys.readouterr()
    assert evc_main(base + ["--encoder-level", "4"]) == 2
    assert "encoder_level must be an integer in 0..3" in capsys.readouterr().err
    assert not (out / "Scale-SS-level4.json").exists()
    assert evc_main(["eval", str(folder), "--model", "EVC-SS", "--encoder-level", "0", "--out", str(out)]) == 2
    assert "scalable" in capsys.readouterr().err

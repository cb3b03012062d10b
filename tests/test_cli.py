"""The command line: `evc encode | decode | info | models`, and what every command shares (help, errors).

Seeded random EVC-SS weights (conftest's ``weights``, saved once per session) are passed with --weights,
so these tests do not depend on the shipped weights (tests/test_shipped_weights.py covers those). Most
calls go through ``evc.cli.main.main(argv)`` in-process (fast); a few run
``python -m evc`` in a subprocess to check the real exit code and stderr.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import evc
import evc.cli.progress
from evc.bitstream.container import pack, parse
from evc.cli.main import main
from evc.models.registry import ModelSpec
from evc.models.weights import save_weights

from conftest import rgb_array

MODEL = "EVC-SS"
ALL_MODELS = ["EVC-LL", "EVC-LM", "EVC-LS", "EVC-ML", "EVC-MM", "EVC-MS", "EVC-SL", "EVC-SS", "Scale-SL", "Scale-SS"]
IMAGE_H, IMAGE_W = 40, 56


# -- module fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli_data")


@pytest.fixture(scope="module")
def mislabelled_weights(data_dir) -> Path:
    """EVC-SS tensors in files whose metadata says they are EVC-SL weights."""
    folder = data_dir / "weights-labelled-sl"
    save_weights(evc.create_model(MODEL, seed=0), folder, "EVC-SL")
    return folder


@pytest.fixture(scope="module")
def codec(weights) -> evc.Codec:
    """The codec the CLI builds from ``weights`` (fp16-stored, so not the in-memory seeded model)."""
    return evc.load(MODEL, device="cpu", weights=weights)


@pytest.fixture(scope="module")
def rgb_png(data_dir) -> Path:
    path = data_dir / "input.png"
    Image.fromarray(rgb_array(IMAGE_H, IMAGE_W)).save(path)
    return path


@pytest.fixture(scope="module")
def gray_png(data_dir) -> Path:
    path = data_dir / "gray.png"
    Image.fromarray(rgb_array(IMAGE_H, IMAGE_W, seed=1)[:, :, 0], "L").save(path)
    return path


@pytest.fixture(scope="module")
def rgb_evc(data_dir, codec, rgb_png) -> Path:
    path = data_dir / "input.evc"
    path.write_bytes(codec.compress(Image.open(rgb_png), quality=0.5))
    return path


@pytest.fixture(scope="module")
def gray_evc(data_dir, codec, gray_png) -> Path:
    path = data_dir / "gray.evc"
    path.write_bytes(codec.compress(Image.open(gray_png), quality=0.5))
    return path


@pytest.fixture
def out_dir(tmp_path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


# -- helpers ---------------------------------------------------------------------------------------


def run_main(capsys, *argv: object) -> tuple[int, str, str]:
    capsys.readouterr()  # drop anything printed before
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_subprocess(*argv: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "EVC_DEBUG"}
    env.setdefault("OMP_NUM_THREADS", "1")
    # The timeout guards against hangs, not speed: on a machine shared with other work a start takes minutes.
    return subprocess.run(
        [sys.executable, "-m", "evc", *map(str, argv)], capture_output=True, text=True, env=env, cwd=cwd, timeout=600
    )


def assert_usage_error(code: int, out: str, err: str, match: str | None = None) -> str:
    """Exit 2, nothing on stdout, exactly one line "evc: error: ..." on stderr, no traceback."""
    assert code == 2, (code, err)
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("evc: error: "), err
    assert err.endswith("\n")
    if match is not None:
        assert re.search(match, lines[0], re.IGNORECASE), lines[0]
    return lines[0]


def temp_leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def assert_nothing_written(folder: Path, expected: set[str] = frozenset()) -> None:
    names = {p.name for p in folder.iterdir()}
    assert names == set(expected), names
    assert temp_leftovers(folder) == []


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert(image.mode))


def encode_args(src: Path, dst: Path, weights: Path, *extra: object) -> list[object]:
    return ["encode", src, dst, "--weights", weights, "--device", "cpu", *extra]


def decode_args(src: Path, dst: Path, weights: Path, *extra: object) -> list[object]:
    return ["decode", src, dst, "--weights", weights, "--device", "cpu", *extra]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2) / 255.0**2
    return 10 * math.log10(1 / mse) if mse > 0 else math.inf


# -- round trips -----------------------------------------------------------------------------------


def test_encode_then_decode_round_trip(capsys, out_dir, weights, codec, rgb_png):
    evc_file, png_file = out_dir / "image.evc", out_dir / "image.png"
    code, out, err = run_main(capsys, *encode_args(rgb_png, evc_file, weights))
    assert (code, out, err) == (0, "", "")
    data = evc_file.read_bytes()
    # the file is what the library makes of the same image with the same weights (default quality 0.5)
    assert data == codec.compress(Image.open(rgb_png), quality=0.5)

    code, out, err = run_main(capsys, *decode_args(evc_file, png_file, weights))
    assert (code, out, err) == (0, "", "")
    expected = codec.decompress(data)
    with Image.open(png_file) as decoded:
        assert decoded.mode == "RGB"
        assert decoded.size == (IMAGE_W, IMAGE_H)
        assert np.array_equal(np.asarray(decoded), np.asarray(expected))
    assert_nothing_written(out_dir, {"image.evc", "image.png"})


def test_gray_round_trip(capsys, out_dir, weights, codec, gray_png):
    evc_file, png_file = out_dir / "gray.evc", out_dir / "gray.png"
    assert run_main(capsys, *encode_args(gray_png, evc_file, weights))[0] == 0
    assert run_main(capsys, *decode_args(evc_file, png_file, weights))[0] == 0
    with Image.open(png_file) as decoded:
        assert decoded.mode == "L"
        assert np.array_equal(np.asarray(decoded), np.asarray(codec.decompress(evc_file.read_bytes())))


def test_16bit_png_encodes_like_its_8bit_equivalent(capsys, tmp_path, out_dir, weights):
    gray8 = rgb_array(IMAGE_H, IMAGE_W, seed=2)[:, :, 1]
    gray8[0, :] = 255
    Image.fromarray(gray8.astype(np.uint16) * 257).save(tmp_path / "wide.png")
    Image.fromarray(gray8, "L").save(tmp_path / "narrow.png")
    with Image.open(tmp_path / "wide.png") as wide:
        assert wide.mode in ("I;16", "I")  # really a 16-bit file
    assert run_main(capsys, *encode_args(tmp_path / "wide.png", out_dir / "wide.evc", weights))[0] == 0
    assert run_main(capsys, *encode_args(tmp_path / "narrow.png", out_dir / "narrow.evc", weights))[0] == 0
    assert (out_dir / "wide.evc").read_bytes() == (out_dir / "narrow.evc").read_bytes()


@pytest.mark.parametrize("suffix", [".png", ".ppm", ".bmp", ".tiff"])
@pytest.mark.parametrize("colour", ["RGB", "L"])
def test_decode_to_image_formats(capsys, out_dir, weights, codec, rgb_evc, gray_evc, suffix, colour):
    source = rgb_evc if colour == "RGB" else gray_evc
    target = out_dir / f"decoded{suffix}"
    code, out, err = run_main(capsys, *decode_args(source, target, weights))
    assert (code, out, err) == (0, "", "")
    expected = codec.decompress(source.read_bytes())
    assert expected.mode == colour
    with Image.open(target) as decoded:
        assert decoded.format == {".png": "PNG", ".ppm": "PPM", ".bmp": "BMP", ".tiff": "TIFF"}[suffix]
        assert decoded.mode == colour
        assert np.array_equal(np.asarray(decoded), np.asarray(expected))
    assert_nothing_written(out_dir, {target.name})


def test_q_index_option(capsys, out_dir, weights, codec, rgb_png):
    target = out_dir / "q.evc"
    assert run_main(capsys, *encode_args(rgb_png, target, weights, "--q-index", 123))[0] == 0
    assert target.read_bytes() == codec.compress(Image.open(rgb_png), q_index=123)
    assert evc.file_info(target.read_bytes()).q_index == 123


def test_quality_option(capsys, out_dir, weights, codec, rgb_png):
    target = out_dir / "q.evc"
    assert run_main(capsys, *encode_args(rgb_png, target, weights, "--quality", "0.9"))[0] == 0
    assert evc.file_info(target.read_bytes()).q_index == codec.q_index(0.9)
    assert codec.q_index(0.9) != codec.q_index(0.5)


def test_model_option_with_weights(capsys, out_dir, weights, rgb_png, rgb_evc):
    target = out_dir / "m.evc"
    assert run_main(capsys, *encode_args(rgb_png, target, weights, "--model", "ss"))[0] == 0
    assert target.read_bytes() == rgb_evc.read_bytes()


def test_exif_orientation_is_applied(capsys, tmp_path, out_dir, weights, codec):
    image = Image.fromarray(rgb_array(20, 36))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(tmp_path / "rotated.png", exif=exif)
    target = out_dir / "rotated.evc"
    assert run_main(capsys, *encode_args(tmp_path / "rotated.png", target, weights))[0] == 0
    info = evc.file_info(target.read_bytes())
    assert (info.width, info.height) == (20, 36)
    upright = image.transpose(Image.Transpose.ROTATE_270)
    assert target.read_bytes() == codec.compress(upright, quality=0.5)


# -- info and models -------------------------------------------------------------------------------


def test_info(capsys, weights, codec, rgb_evc, gray_evc):
    for path, colour in ((rgb_evc, "RGB"), (gray_evc, "grayscale")):
        code, out, err = run_main(capsys, "info", path)
        assert code == 0 and err == ""
        size = path.stat().st_size
        assert MODEL in out
        assert f"{IMAGE_W}x{IMAGE_H}" in out
        assert f"q index {codec.q_index(0.5)}" in out
        assert f"{size * 8 / (IMAGE_W * IMAGE_H):.4f}" in out
        assert str(size) in out
        assert re.search(rf"^colour\s+{colour}$", out, re.MULTILINE)


def test_models_lists_every_model_as_trained_or_untrained(capsys):
    code, out, err = run_main(capsys, "models")
    assert code == 0 and err == ""
    table = out.split("\n\nShipped weights")[0]  # model cards follow the table
    rows = {line.split()[0]: line for line in table.splitlines()[1:] if line.strip()}
    assert sorted(rows) == sorted(ALL_MODELS)
    # What ships, read from the package's folder rather than through has_weights (the code under test):
    # a has_weights that always said False would otherwise pass with every row "untrained".
    weights_dir = Path(evc.__file__).resolve().parent / "weights"
    shipped = {folder.name for folder in weights_dir.iterdir() if any(folder.glob("*.safetensors"))}
    assert "EVC-SS" in shipped  # trained EVC-SS weights ship (src/evc/weights/EVC-SS)
    for name in ALL_MODELS:
        expected = "trained" if name in shipped else "untrained"
        assert re.search(rf"\s{expected}\s", rows[name]), rows[name]
    assert all("untrained" in rows[name] for name in ALL_MODELS if not evc.MODELS[name].has_weights())


# -- rate targets ----------------------------------------------------------------------------------


def test_target_bpp_is_met(capsys, out_dir, weights, codec, rgb_png):
    image = Image.open(rgb_png)
    low, high = codec.encode(image, 0.0).bpp, codec.encode(image, 1.0).bpp
    # reachable: at or above the rate of the lowest-rate anchor (quality 0)
    target = math.sqrt(low * high) if high > low else low * 1.01
    output = out_dir / "bpp.evc"
    code, out, err = run_main(capsys, *encode_args(rgb_png, output, weights, "--target-bpp", repr(target)))
    assert (code, out, err) == (0, "", "")
    data = output.read_bytes()
    assert len(data) * 8 / (IMAGE_W * IMAGE_H) <= target
    # the best quality within the target: one q index more rate (lower index) would exceed it
    q = evc.file_info(data).q_index
    q_best, q_worst = codec.q_index(1.0), codec.q_index(0.0)
    assert q_best <= q <= q_worst
    if q > q_best:
        assert codec.encode(image, q_index=q - 1).bpp > target
    assert np.array_equal(np.asarray(codec.decompress(data)), np.asarray(codec.encode(image, q_index=q).reconstruction))


def test_target_bpp_unreachable(capsys, out_dir, weights, codec, rgb_png):
    image = Image.open(rgb_png)
    lowest = min(codec.encode(image, 0.0).bpp, codec.encode(image, 1.0).bpp)
    output = out_dir / "bpp.evc"
    code, out, err = run_main(capsys, *encode_args(rgb_png, output, weights, "--target-bpp", repr(lowest / 4)))
    assert_usage_error(code, out, err, match="bpp")
    assert_nothing_written(out_dir)


def test_target_psnr_is_met(capsys, out_dir, weights, codec, rgb_png):
    image = Image.open(rgb_png)
    reference = np.asarray(image)
    p_low, p_high = codec.encode(image, 0.0).psnr, codec.encode(image, 1.0).psnr
    # reachable: at or below the quality of the highest-rate anchor (quality 1)
    target = (p_low + p_high) / 2 if p_high > p_low else p_high - 0.001
    output = out_dir / "psnr.evc"
    code, out, err = run_main(capsys, *encode_args(rgb_png, output, weights, "--target-psnr", repr(target)))
    assert (code, out) == (0, "")
    decoded = np.asarray(codec.decompress(output.read_bytes()))
    assert psnr(decoded, reference) >= target
    q = evc.file_info(output.read_bytes()).q_index
    if codec.q_index(1.0) <= q <= codec.q_index(0.0):
        assert err == ""
    else:  # random weights' flat PSNR curve: met past the lowest-rate anchor, which a warning line says
        assert err.startswith("evc: warning: target of") and err.count("\n") == 1
        assert "outside the trained anchors" in err or "smallest file" in err
        assert "--q-index takes 1..65535" in err or "q indices 1..65535" in err


def test_target_psnr_unreachable(capsys, out_dir, weights, codec, rgb_png):
    image = Image.open(rgb_png)
    best = max(codec.encode(image, 0.0).psnr, codec.encode(image, 1.0).psnr)
    output = out_dir / "psnr.evc"
    code, out, err = run_main(capsys, *encode_args(rgb_png, output, weights, "--target-psnr", f"{best + 30:.2f}"))
    assert_usage_error(code, out, err, match="dB")
    assert_nothing_written(out_dir)


# -- progress on a terminal (issue 39 item 4) --------------------------------------------------------


class FakeTerminal(io.StringIO):
    """A stderr that says it is a terminal, so that progress lines are drawn into it."""

    def isatty(self) -> bool:
        return True


def test_no_progress_unless_stderr_is_a_terminal(capsys, out_dir, weights, codec, rgb_png, monkeypatch):
    monkeypatch.setattr(evc.cli.progress, "DELAY", 0.0)  # even a step that starts at once would show
    target = codec.encode(Image.open(rgb_png), 0.5).bpp
    code, out, err = run_main(capsys, *encode_args(rgb_png, out_dir / "t.evc", weights, "--target-bpp", repr(target)))
    assert (code, out, err) == (0, "", "")  # capsys's stderr is no terminal
    code, out, err = run_main(capsys, *decode_args(out_dir / "t.evc", out_dir / "t.png", weights))
    assert (code, out, err) == (0, "", "")


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_on_a_terminal_shows_each_step(out_dir, weights, codec, rgb_png, monkeypatch, quiet):
    monkeypatch.setattr(evc.cli.progress, "DELAY", 0.0)
    monkeypatch.setattr(evc.cli.progress, "MIN_INTERVAL", 0.0)  # every step drawn, however quick
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    target = codec.encode(Image.open(rgb_png), 0.5).bpp
    quiet_flag = ["--quiet"] if quiet else []
    assert main([str(a) for a in encode_args(rgb_png, out_dir / "t.evc", weights, "--target-bpp", repr(target),
                                             *quiet_flag)]) == 0
    assert main([str(a) for a in decode_args(out_dir / "t.evc", out_dir / "t.png", weights, *quiet_flag)]) == 0
    shown = terminal.getvalue()
    if quiet:
        assert shown == ""
        return
    q = evc.file_info((out_dir / "t.evc").read_bytes()).q_index
    assert f"encoding {rgb_png} {IMAGE_W}x{IMAGE_H}: analysis" in shown
    assert f"encoding {rgb_png} {IMAGE_W}x{IMAGE_H}: searching q for {target:g} bpp: q index {q} → " in shown
    assert f"decoding {out_dir / 't.evc'} {IMAGE_W}x{IMAGE_H}: entropy decoding" in shown
    assert f"decoding {out_dir / 't.evc'} {IMAGE_W}x{IMAGE_H}: synthesis" in shown


def test_progress_never_changes_the_file(out_dir, weights, codec, rgb_png, monkeypatch):
    monkeypatch.setattr(evc.cli.progress, "DELAY", 0.0)
    monkeypatch.setattr(sys, "stderr", FakeTerminal())
    assert main([str(a) for a in encode_args(rgb_png, out_dir / "p.evc", weights, "--quality", "0.3")]) == 0
    assert (out_dir / "p.evc").read_bytes() == codec.compress(Image.open(rgb_png), 0.3)


# -- verbosity, --force, permissions ---------------------------------------------------------------


def test_verbose_reports_timings_on_stderr(capsys, out_dir, weights, rgb_png):
    code, out, err = run_main(capsys, *encode_args(rgb_png, out_dir / "v.evc", weights, "--verbose"))
    assert code == 0 and out == ""
    assert re.search(r"\d+\.\d+ s\b", err), err
    assert "Traceback" not in err
    code, out, err = run_main(capsys, *decode_args(out_dir / "v.evc", out_dir / "v.png", weights, "-v"))
    assert code == 0 and out == ""
    assert re.search(r"\d+\.\d+ s\b", err), err


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_force_overwrites(capsys, out_dir, weights, codec, rgb_png, rgb_evc, command):
    target = out_dir / ("forced.evc" if command == "encode" else "forced.png")
    target.write_bytes(b"old content")
    args = encode_args(rgb_png, target, weights) if command == "encode" else decode_args(rgb_evc, target, weights)
    code, out, err = run_main(capsys, *args, "--force")
    assert (code, out, err) == (0, "", "")
    if command == "encode":
        assert target.read_bytes() == rgb_evc.read_bytes()
    else:
        assert np.array_equal(pixels(target), np.asarray(codec.decompress(rgb_evc.read_bytes())))
    assert_nothing_written(out_dir, {target.name})


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_output_exists_without_force(capsys, out_dir, weights, rgb_png, rgb_evc, command):
    target = out_dir / ("exists.evc" if command == "encode" else "exists.png")
    target.write_bytes(b"precious")
    args = encode_args(rgb_png, target, weights) if command == "encode" else decode_args(rgb_evc, target, weights)
    code, out, err = run_main(capsys, *args)
    assert_usage_error(code, out, err, match="exists")
    assert target.read_bytes() == b"precious"
    assert_nothing_written(out_dir, {target.name})


def test_outputs_have_normal_permissions(capsys, out_dir, weights, rgb_png):
    reference = out_dir / "reference.txt"
    with open(reference, "w") as f:
        f.write("x")
    mode = reference.stat().st_mode & 0o777
    assert run_main(capsys, *encode_args(rgb_png, out_dir / "p.evc", weights))[0] == 0
    assert run_main(capsys, *decode_args(out_dir / "p.evc", out_dir / "p.png", weights))[0] == 0
    assert (out_dir / "p.evc").stat().st_mode & 0o777 == mode
    assert (out_dir / "p.png").stat().st_mode & 0o777 == mode


# -- errors ----------------------------------------------------------------------------------------


def untrained_model() -> str:
    """A model that ships no weights (some always remain: the shipped ones are few)."""
    return next(name for name in ALL_MODELS if not evc.MODELS[name].has_weights())


def test_encode_without_weights_refuses(capsys, monkeypatch, out_dir, rgb_png):
    name = untrained_model()
    # Without --model the default is the best shipped model, so only an evc that ships none refuses:
    # made so here (EVC-SS ships), or this case would never run.
    cases = [(["--model", name], f"model {name} is untrained"), ([], "no model is trained")]
    for extra, pattern in cases:
        if not extra:
            monkeypatch.setattr(ModelSpec, "has_weights", lambda self: False)
        code, out, err = run_main(capsys, "encode", rgb_png, out_dir / "untrained.evc", "--device", "cpu", *extra)
        line = assert_usage_error(code, out, err, match=pattern)
        assert "--weights" in line
        assert_nothing_written(out_dir)


def _corrupt(data: bytes) -> bytes:
    body = bytearray(data)
    body[len(body) // 2] ^= 0xFF
    return bytes(body)


def _with_other_model_id(data: bytes) -> bytes:
    """A valid container (correct checksum) naming a model id this evc does not know."""
    header, streams = parse(data)
    return pack(dataclasses.replace(header, model_id=200), streams)


def _error_cases():
    """id -> (argv builder, output name that must not appear, message pattern)."""

    def enc(*extra):
        return lambda f: encode_args(f["rgb_png"], f["out"] / "x.evc", f["weights"], *extra)

    def dec(source_key, name="x.png", *extra):
        return lambda f: decode_args(f[source_key], f["out"] / name, f["weights"], *extra)

    return {
        "encode missing input": (
            lambda f: encode_args(f["tmp"] / "missing.png", f["out"] / "x.evc", f["weights"]), "not found"),
        "encode input is a folder": (
            lambda f: encode_args(f["tmp"], f["out"] / "x.evc", f["weights"]), "not a file"),
        "encode input not an image": (
            lambda f: encode_args(f["text"], f["out"] / "x.evc", f["weights"]), "cannot read"),
        "encode truncated png": (
            lambda f: encode_args(f["truncated_png"], f["out"] / "x.evc", f["weights"]), "cannot read"),
        "encode output folder missing": (
            lambda f: encode_args(f["rgb_png"], f["out"] / "nowhere" / "x.evc", f["weights"]), "does not exist"),
        "encode output is a folder": (
            lambda f: encode_args(f["rgb_png"], f["out"], f["weights"]), "directory"),
        "quality above 1": (enc("--quality", "1.5"), "quality"),
        "quality below 0": (enc("--quality", "-0.1"), "quality"),
        "quality not a number": (enc("--quality", "high"), "quality"),
        "quality nan": (enc("--quality", "nan"), "quality"),
        "quality and q-index": (enc("--quality", "0.5", "--q-index", "80"), "not allowed"),
        "target-bpp and target-psnr": (enc("--target-bpp", "1", "--target-psnr", "30"), "not allowed"),
        "quality and target-bpp": (enc("--quality", "0.2", "--target-bpp", "1"), "not allowed"),
        "target-bpp negative": (enc("--target-bpp", "-1"), "positive"),
        "target-bpp zero": (enc("--target-bpp", "0"), "positive"),
        "q-index zero": (enc("--q-index", "0"), "q.index"),
        "q-index too large": (enc("--q-index", "70000"), "q.index"),
        "q-index not an integer": (enc("--q-index", "1.5"), "q.index"),
        "unknown model": (enc("--model", "EVC-XX"), "unknown model"),
        "weights path missing": (
            lambda f: encode_args(f["rgb_png"], f["out"] / "x.evc", f["tmp"] / "no-such-weights"), "not found"),
        "weights not safetensors": (
            lambda f: encode_args(f["rgb_png"], f["out"] / "x.evc", f["text"]), "safetensors"),
        "weights labelled for another model": (
            lambda f: encode_args(f["rgb_png"], f["out"] / "x.evc", f["mislabelled"], "--model", MODEL), "EVC-SL"),
        "device nonsense": (enc("--device", "nonsense"), "device"),
        "encoder-level on non-scalable model": (enc("--encoder-level", "1"), "encoder"),
        "alpha decoded to JPEG": (dec("alpha_evc", "x.jpg"), "JPEG files .* cannot hold the image's transparency"),
        "alpha decoded to PPM": (dec("alpha_evc", "x.ppm"), "PPM files .* cannot hold the image's transparency"),
        "decode missing input": (
            lambda f: decode_args(f["tmp"] / "missing.evc", f["out"] / "x.png", f["weights"]), "not found"),
        "decode truncated": (dec("truncated_evc"), "truncated"),
        "decode corrupted": (dec("corrupt_evc"), "corrupt|checksum"),
        "decode wrong magic": (dec("rgb_png"), "magic"),
        "decode empty file": (dec("empty"), "empty"),
        "decode unknown model id": (dec("unknown_model_evc"), "unknown model"),
        "decode unknown extension": (dec("rgb_evc", "x.xyz"), r"extension"),
        "decode no extension": (dec("rgb_evc", "x"), r"extension"),
        "decode to evc extension": (dec("rgb_evc", "x.evc"), r"extension"),
        "decode output folder missing": (
            lambda f: decode_args(f["rgb_evc"], f["out"] / "nowhere" / "x.png", f["weights"]), "does not exist"),
        "decode other weights": (dec("foreign_evc"), "other weights|fingerprint"),
        "decode with weights of another model": (
            lambda f: decode_args(f["rgb_evc"], f["out"] / "x.png", f["mislabelled"]), "EVC-SL"),
        "decode device nonsense": (dec("rgb_evc", "x.png", "--device", "nonsense"), "device"),
        "decode writer fails": (dec("rgb_evc", "x.xbm"), "XBM|mode"),
        "info missing file": (lambda f: ["info", f["tmp"] / "missing.evc"], "not found"),
        "info not an evc file": (lambda f: ["info", f["rgb_png"]], "magic"),
        "no command": (lambda f: [], "command"),
        "unknown command": (lambda f: ["compress", f["rgb_png"]], "invalid choice|compress"),
        "encode missing output argument": (lambda f: ["encode", f["rgb_png"]], "required"),
    }


@pytest.fixture(scope="module")
def error_files(data_dir, weights, mislabelled_weights, rgb_png, rgb_evc) -> dict[str, Path]:
    folder = data_dir / "error-inputs"
    folder.mkdir()
    files = {"rgb_png": rgb_png, "rgb_evc": rgb_evc, "weights": weights, "mislabelled": mislabelled_weights}
    data = rgb_evc.read_bytes()
    contents = {
        "text": b"this is not an image\n",
        "truncated_png": rgb_png.read_bytes()[:100],
        "truncated_evc": data[:-10],
        "corrupt_evc": _corrupt(data),
        "empty": b"",
        "unknown_model_evc": _with_other_model_id(data),
    }
    for key, content in contents.items():
        files[key] = folder / key
        files[key].write_bytes(content)
    rgba = np.dstack([rgb_array(8, 8), np.full((8, 8), 255, np.uint8)])
    rgba[4, 4, 3] = 10
    files["rgba_png"] = folder / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(files["rgba_png"])
    files["alpha_evc"] = folder / "alpha.evc"  # coded by the --weights codec (seed 0), with its alpha plane
    seeded = evc.Codec(evc.create_model(MODEL, seed=0), MODEL, device="cpu")
    files["alpha_evc"].write_bytes(seeded.compress(files["rgba_png"]))
    # a file made with other weights of the same model (seed 1): fingerprint mismatch
    foreign = evc.Codec(evc.create_model(MODEL, seed=1), MODEL, device="cpu")
    files["foreign_evc"] = folder / "foreign.evc"
    files["foreign_evc"].write_bytes(foreign.compress(Image.open(rgb_png)))
    return files


@pytest.mark.parametrize("case", list(_error_cases()))
def test_error_paths(capsys, tmp_path, out_dir, error_files, case):
    build, pattern = _error_cases()[case]
    files = dict(error_files, out=out_dir, tmp=tmp_path)
    before = {p.name: p.read_bytes() for p in error_files.values() if p.is_file()}
    code, out, err = run_main(capsys, *build(files))
    assert_usage_error(code, out, err, match=pattern)
    assert_nothing_written(out_dir)
    assert {p.name: p.read_bytes() for p in error_files.values() if p.is_file()} == before  # inputs untouched


def test_weights_of_another_model_without_model_option(capsys, out_dir, mislabelled_weights, rgb_png):
    # the metadata names EVC-SL, so evc loads EVC-SL and finds EVC-SS tensors in the files
    code, out, err = run_main(capsys, *encode_args(rgb_png, out_dir / "x.evc", mislabelled_weights))
    assert_usage_error(code, out, err, match="EVC-SL|do not fit")
    assert_nothing_written(out_dir)


def test_weights_of_another_model_raise_model_error(mislabelled_weights):
    """The library-level form of the bug above: evc.load must raise ModelError, not RuntimeError."""
    with pytest.raises(evc.ModelError):
        evc.load(weights=mislabelled_weights, device="cpu")


# -- real processes --------------------------------------------------------------------------------


def test_subprocess_round_trip(tmp_path, weights, codec, rgb_png):
    evc_file, png_file = tmp_path / "sub.evc", tmp_path / "sub.png"
    result = run_subprocess(*encode_args(rgb_png, evc_file, weights, "--quality", "0.25"))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    result = run_subprocess(*decode_args(evc_file, png_file, weights))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert evc.file_info(evc_file.read_bytes()).q_index == codec.q_index(0.25)
    assert np.array_equal(pixels(png_file), np.asarray(codec.decompress(evc_file.read_bytes())))


def test_subprocess_errors(tmp_path, error_files, rgb_png):
    result = run_subprocess(*decode_args(error_files["corrupt_evc"], tmp_path / "x.png", error_files["weights"]))
    assert_usage_error(result.returncode, result.stdout, result.stderr, match="corrupt|checksum")
    result = run_subprocess("encode", rgb_png, tmp_path / "x.evc", "--device", "cpu", "--quality", "2")
    assert_usage_error(result.returncode, result.stdout, result.stderr, match="quality")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_subprocess_untrained_message(tmp_path, rgb_png):
    result = run_subprocess("encode", rgb_png, tmp_path / "x.evc", "--model", untrained_model(), "--device", "cpu")
    line = assert_usage_error(result.returncode, result.stdout, result.stderr, match="untrained|no model is trained")
    assert "--weights" in line
    assert list(tmp_path.iterdir()) == []


# -- the command groups ----------------------------------------------------------------------------

COMMANDS = ["encode", "decode", "export", "info", "models", "eval", "compare", "bench", "complexity", "train", "distill"]


def test_every_command_is_listed_with_its_own_help(capsys):
    code, out, _ = run_main(capsys, "--help")
    assert code == 0 and "{" + ",".join(COMMANDS) + "}" in out
    for command in COMMANDS:
        code, out, err = run_main(capsys, command, "--help")
        assert code == 0 and out.startswith(f"usage: evc {command} ") and err == "", command
    assert "--substreams {1..8}" in run_main(capsys, "encode", "--help")[1]  # the API's range (evc.arguments)


def test_unknown_options_point_to_the_right_help(capsys):
    """train and distill report their unknown options themselves; the other commands leave them to `evc`."""
    for argv, where in ((["train", "--bogus"], "evc train"), (["distill", "--steps", "3"], "evc distill"),
                        (["models", "--bogus"], "evc")):
        code, out, err = run_main(capsys, *argv)
        assert_usage_error(code, out, err, match=f"^evc: error: unrecognized arguments: .* \\(see '{where} --help'\\)$")
    code, out, err = run_main(capsys, "train", "--steps", "x")
    assert_usage_error(code, out, err, match="argument --steps: invalid int value: 'x' \\(see 'evc train --help'\\)")


def test_subprocess_train_entry_point():
    """`python -m evc train` is the entry point of the training scripts (and of torchrun)."""
    result = run_subprocess("train", "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: evc train ") and "--time-limit-minutes" in result.stdout

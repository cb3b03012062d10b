"""`evc encode IN... --out-dir DIR` and `evc decode IN... --out-dir DIR`: many files, one process.

A batch must write exactly what the one-file commands write, load the model and prepare its exact
networks once, refuse before any work whatever would leave it half-done (existing outputs, two inputs
with one output name, '-'), and go on past a bad input, reporting it and exiting non-zero. Tiny images
and seeded random EVC-SS weights keep it fast (as tests/test_cli.py does).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import evc
import evc.cli.codec
import evc.entropy.exact_parameters
from evc.cli.main import main

from conftest import rgb_array
from test_cli import (
    MODEL,
    assert_nothing_written,
    assert_usage_error,
    decode_args,
    encode_args,
    pixels,
    run_main,
    run_subprocess,
    untrained_model,
)

SIZES = {"a": (24, 40), "b": (32, 24), "c": (16, 16)}  # c is gray


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("multifile-images")
    paths = []
    for seed, (name, (height, width)) in enumerate(SIZES.items()):
        array = rgb_array(height, width, seed=seed)
        image = Image.fromarray(array[:, :, 0], "L") if name == "c" else Image.fromarray(array)
        paths.append(folder / f"{name}.png")
        image.save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def singles(tmp_path_factory, weights, images) -> dict[str, Path]:
    """What the one-file commands write for each image: name.evc and its decoded name.png."""
    folder = tmp_path_factory.mktemp("multifile-singles")
    outputs = {}
    for path in images:
        evc_file, png_file = folder / f"{path.stem}.evc", folder / f"{path.stem}.png"
        assert main([str(a) for a in encode_args(path, evc_file, weights)]) == 0
        assert main([str(a) for a in decode_args(evc_file, png_file, weights)]) == 0
        outputs[f"{path.stem}.evc"], outputs[f"{path.stem}.png"] = evc_file, png_file
    return outputs


def batch(command: str, inputs: list[Path], out_dir: Path, weights: Path, *extra: object) -> list[object]:
    return [command, *inputs, "--out-dir", out_dir, "--weights", weights, "--device", "cpu", *extra]


def encoded(tmp_path: Path, singles: dict[str, Path], names: str = "abc") -> list[Path]:
    """The one-file command's .evc files of ``names``, copied to a folder of their own."""
    folder = tmp_path / "evc-inputs"
    folder.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(singles[f"{name}.evc"], folder)
    return [folder / f"{name}.evc" for name in names]


# -- what a batch writes ---------------------------------------------------------------------------


def test_batch_writes_what_single_files_do(capsys, tmp_path, weights, images, singles):
    out_dir = tmp_path / "new" / "encoded"  # missing, with a missing parent: made
    code, out, err = run_main(capsys, *batch("encode", images, out_dir, weights))
    assert (code, out, err) == (0, "", "")
    assert_nothing_written(out_dir, {"a.evc", "b.evc", "c.evc"})
    for path in out_dir.iterdir():
        assert path.read_bytes() == singles[path.name].read_bytes(), path.name

    decoded = tmp_path / "decoded"
    code, out, err = run_main(capsys, *batch("decode", sorted(out_dir.iterdir()), decoded, weights))
    assert (code, out, err) == (0, "", "")
    assert_nothing_written(decoded, {"a.png", "b.png", "c.png"})
    for path in decoded.iterdir():
        assert np.array_equal(pixels(path), pixels(singles[path.name])), path.name
        assert path.read_bytes() == singles[path.name].read_bytes(), path.name
    with Image.open(decoded / "c.png") as gray:
        assert gray.mode == "L"


def test_batch_loads_and_prepares_once(capsys, monkeypatch, tmp_path, weights, images):
    """The second and third images reuse the codec, its exact networks and its coding tables."""
    calls = {"load": 0, "compile": 0}

    def counting(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(evc.cli.codec, "load_codec", counting("load", evc.cli.codec.load_codec))
    compilers = evc.entropy.exact_parameters.ARITHMETICS  # the files are version 3: the int8 arithmetic
    monkeypatch.setitem(compilers, "int8", counting("compile", compilers["int8"]))
    assert run_main(capsys, *batch("encode", images, tmp_path / "out", weights))[0] == 0
    assert calls == {"load": 1, "compile": 3}  # h_s, prior fusion, dual prior: once each, not per image
    assert run_main(capsys, *batch("decode", sorted((tmp_path / "out").iterdir()), tmp_path / "png", weights))[0] == 0
    assert calls == {"load": 2, "compile": 6}


def test_decode_format_option(capsys, tmp_path, weights, singles):
    inputs = encoded(tmp_path, singles, "ab")
    out_dir = tmp_path / "ppm"
    code, out, err = run_main(capsys, *batch("decode", inputs, out_dir, weights, "--format", "PPM"))
    assert (code, out, err) == (0, "", "")
    assert_nothing_written(out_dir, {"a.ppm", "b.ppm"})
    for name in "ab":
        with Image.open(out_dir / f"{name}.ppm") as image:
            assert image.format == "PPM"
        assert np.array_equal(pixels(out_dir / f"{name}.ppm"), pixels(singles[f"{name}.png"]))


def test_verbose_batch_reports_each_file_and_a_total(capsys, tmp_path, weights, images, singles):
    code, out, err = run_main(capsys, *batch("encode", images[:2], tmp_path / "e", weights, "-v"))
    assert code == 0 and out == ""
    lines = err.splitlines()
    assert lines[0].startswith(f"loaded {MODEL} on cpu in ")
    assert [line.split(" ")[0] for line in lines[1:3]] == [str(p) for p in images[:2]]
    assert lines[3].startswith("2 of 2 files written in ") and len(lines) == 4
    # a warning names the file it is about, as an error does
    code, out, err = run_main(capsys, *batch("decode", encoded(tmp_path, singles, "a"), tmp_path / "j", weights,
                                              "--format", "jpg"))
    assert code == 0 and f"evc: warning: {tmp_path / 'evc-inputs' / 'a.evc'}: JPEG is lossy" in err


# -- refused before any work -----------------------------------------------------------------------


@pytest.mark.parametrize("force", [False, True])
def test_existing_outputs(capsys, tmp_path, weights, images, singles, force):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for name in ("b.evc", "c.evc"):
        (out_dir / name).write_bytes(b"precious")
    code, out, err = run_main(capsys, *batch("encode", images, out_dir, weights, *(["--force"] if force else [])))
    if force:
        assert (code, out, err) == (0, "", "")
        assert_nothing_written(out_dir, {"a.evc", "b.evc", "c.evc"})
        assert all(path.read_bytes() == singles[path.name].read_bytes() for path in out_dir.iterdir())
    else:  # all outputs are checked first: a.evc, which could be written, is not
        line = assert_usage_error(code, out, err, match="exists")
        assert "b.evc" in line and "1 more" in line and "--force" in line
        assert_nothing_written(out_dir, {"b.evc", "c.evc"})
        assert (out_dir / "b.evc").read_bytes() == (out_dir / "c.evc").read_bytes() == b"precious"


def test_inputs_with_one_output_name_refused(capsys, tmp_path, weights, images):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(images[0], other / "a.png")
    shutil.copy(images[0], other / "A.png")
    for inputs in ([images[0], other / "a.png"], [images[1], images[1]], [images[0], other / "A.png"]):
        code, out, err = run_main(capsys, *batch("encode", inputs, tmp_path / "out", weights))
        assert_usage_error(code, out, err, match="both write")
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_standard_streams_refused_with_out_dir(capsys, monkeypatch, tmp_path, weights, images, command):
    monkeypatch.chdir(tmp_path)  # --out-dir - is relative: a folder "-" would appear in the working folder
    for inputs, out_dir in (([images[0], "-"], tmp_path / "out"), ([images[0]], "-")):
        code, out, err = run_main(capsys, *batch(command, inputs, out_dir, weights))
        assert_usage_error(code, out, err, match="'-'")
        assert list(tmp_path.iterdir()) == [], out_dir  # neither "out" nor "-" made


@pytest.mark.parametrize(
    "argv, match",
    [
        (lambda f: ["encode", f["a"], f["b"], f["c"]], "3 files given.*--out-dir"),
        (lambda f: ["encode", f["a"]], "required: OUTPUT"),
        (lambda f: ["decode", f["a"]], "required: OUTPUT"),
        (lambda f: ["encode", f["a"], "--out-dir", f["a"]], "not a folder"),
        (lambda f: ["encode", f["a"], "--out-dir", f["a"] / "sub"], "not a folder"),
        (lambda f: ["decode", f["a"], f["out"] / "x.png", "--format", "ppm"], "--format goes with --out-dir"),
        (lambda f: ["decode", f["a"], "--out-dir", f["out"], "--format", "xyz"], "--format xyz"),
        (lambda f: ["decode", f["a"], "--out-dir", f["out"], "--output-quality", "80"], "lossy"),
        (lambda f: ["encode", f["a"], "--out-dir", f["out"], "--model", untrained_model()], "untrained"),
        (lambda f: ["decode", f["a"], "--out-dir", f["out"], "--device", "nonsense"], "device"),
    ],
    ids=["three files", "encode one file", "decode one file", "out-dir is a file", "out-dir below a file",
         "format without out-dir", "unknown format", "output quality of png", "untrained model", "bad device"],
)
def test_command_line_errors(capsys, tmp_path, images, argv, match):
    files = {path.stem: path for path in images} | {"out": tmp_path / "out"}
    code, out, err = run_main(capsys, *argv(files))
    assert_usage_error(code, out, err, match=match)
    assert not (tmp_path / "out").exists()


# -- a bad input among good ones -------------------------------------------------------------------


def _bad_run(capsys, argv: list[object], bad: list[Path], total: int) -> None:
    """One "evc: error: FILE: ..." line for each bad input, then the count; exit code 2."""
    code, out, err = run_main(capsys, *argv)
    assert code == 2 and out == "" and "Traceback" not in err
    lines = err.splitlines()
    assert [line.split(": ")[:2] for line in lines[:-1]] == [["evc", "error"]] * len(bad)
    assert [line.split(": ")[2] for line in lines[:-1]] == [str(path) for path in bad]
    assert lines[-1] == f"evc: error: {len(bad)} of {total} inputs failed (the others were written)"


def test_bad_inputs_among_good_ones(capsys, tmp_path, weights, images, singles):
    text = tmp_path / "text.png"
    text.write_text("not an image\n")
    missing = tmp_path / "missing.png"
    out_dir = tmp_path / "out"
    _bad_run(capsys, batch("encode", [images[0], missing, text, images[2]], out_dir, weights), [missing, text], 4)
    assert_nothing_written(out_dir, {"a.evc", "c.evc"})
    assert all(path.read_bytes() == singles[path.name].read_bytes() for path in out_dir.iterdir())

    inputs = encoded(tmp_path, singles, "ab")
    corrupt = tmp_path / "corrupt.evc"
    data = bytearray(inputs[1].read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    decoded = tmp_path / "decoded"
    _bad_run(capsys, batch("decode", [corrupt, inputs[0], images[1]], decoded, weights), [corrupt, images[1]], 3)
    assert_nothing_written(decoded, {"a.png"})
    assert (decoded / "a.png").read_bytes() == singles["a.png"].read_bytes()


def test_nothing_good_makes_no_folder(capsys, tmp_path, weights):
    missing = tmp_path / "missing.png"
    _bad_run(capsys, batch("encode", [missing], tmp_path / "out", weights), [missing], 1)
    assert not (tmp_path / "out").exists()


def test_subprocess_batch_with_a_bad_input(tmp_path, weights, images, singles):
    missing = tmp_path / "missing.png"
    result = run_subprocess(*batch("encode", [images[0], missing], tmp_path / "out", weights))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"evc: error: {missing}: input {missing} not found",
        "evc: error: 1 of 2 inputs failed (the others were written)",
    ]
    assert (tmp_path / "out" / "a.evc").read_bytes() == singles["a.evc"].read_bytes()

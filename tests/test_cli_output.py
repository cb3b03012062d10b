"""Issue 39, item 7: what `evc encode` / `evc decode` say about their output.

- An .evc output named like an image (photo.webp) is written with a warning naming a better name.
- A failed write (full disk, no permission) is an error naming the output, and leaves nothing behind.
- `evc decode x.evc - --format jpg` writes JPEG to standard output (PNG stays the default there).

Seeded random EVC-SS weights (conftest's ``weights``) are passed with --weights.
"""

from __future__ import annotations

import errno
import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import evc
from evc.cli import codec as cli_codec
from evc.cli.files import write_output
from evc.cli.main import main
from evc.errors import EVCError

from conftest import rgb_array


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("output") / "photo.png"
    Image.fromarray(rgb_array(40, 56)).save(path)
    return path


@pytest.fixture(scope="module")
def evc_file(png, weights) -> Path:
    path = png.with_name("photo.evc")
    path.write_bytes(evc.load("EVC-SS", device="cpu", weights=weights).compress(png, 0.5))
    return path


def run(capsys, *argv: object) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- an .evc file named like an image --------------------------------------------------------------


def test_an_evc_file_named_like_an_image_is_written_with_a_warning(capsys, tmp_path, png, weights, evc_file):
    target = tmp_path / "photo.webp"
    code, out, err = run(capsys, "encode", png, target, "--weights", weights, "--device", "cpu")
    assert (code, out) == (0, "")
    assert err == f"evc: warning: {target} will hold an EVC file, not WebP; name it {tmp_path / 'photo.evc'}\n"
    assert target.read_bytes() == evc_file.read_bytes()  # the file itself is the same
    code, _, err = run(capsys, "encode", png, tmp_path / "photo.evc", "--weights", weights, "--device", "cpu")
    assert (code, err) == (0, "")  # a proper name: nothing to say


@pytest.mark.parametrize("name,kind", [("a.PNG", "PNG"), ("a.jpg", "JPEG"), ("a.jpeg", "JPEG"), ("a.tif", "TIFF"),
                                       ("a.tiff", "TIFF"), ("a.bmp", "BMP"), ("a.gif", "GIF"), ("a.avif", "AVIF"),
                                       ("a.jxl", "JPEG XL"), ("a.heic", "HEIC"), ("a.jp2", "JPEG 2000")])
def test_every_image_extension_is_warned(name, kind):
    with pytest.warns(UserWarning, match=f"^{name} will hold an EVC file, not {kind}; name it a.evc$"):
        cli_codec._image_extension_warning(name)


@pytest.mark.parametrize("name", ["a.evc", "a.EVC", "a", "a.bin", "-"])
def test_other_names_are_not_warned(name):
    evc.register_pillow()  # .evc is then one of Pillow's extensions too: still no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cli_codec._image_extension_warning(name)


# -- failed writes ---------------------------------------------------------------------------------


def _full_disk(written: list[Path]):
    """A Path.write_bytes that writes half the data, then fails as a full disk does."""

    def write_bytes(self: Path, data: bytes) -> int:
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        written.append(self)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return write_bytes


def test_a_full_disk_is_an_error_naming_the_output_and_leaves_nothing(capsys, monkeypatch, tmp_path, weights, evc_file, png):
    folder = tmp_path / "out"
    folder.mkdir()
    written: list[Path] = []
    monkeypatch.setattr(Path, "write_bytes", _full_disk(written))
    for argv in (["decode", evc_file, folder / "photo.png"], ["encode", png, folder / "photo.evc"]):
        code, out, err = run(capsys, *argv, "--weights", weights, "--device", "cpu")
        assert (code, out) == (2, "")
        assert err == f"evc: error: cannot write {argv[2]}: No space left on device\n"
        assert list(folder.iterdir()) == []  # neither the output nor the partial temporary file
    assert len(written) == 2 and all(path.parent == folder for path in written)  # the writes did begin


def test_write_errors_name_the_output(tmp_path, monkeypatch):
    target = tmp_path / "photo.evc"

    def full(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(EVCError, match=f"^cannot write {target}: No space left on device$"):
        write_output(target, full, force=False)
    assert list(tmp_path.iterdir()) == []

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / ".photo.evc.x.tmp"))

    monkeypatch.setattr("tempfile.mkstemp", denied)
    with pytest.raises(EVCError, match=f"^cannot write {target}: Permission denied$"):
        write_output(target, lambda tmp: tmp.write_bytes(b"x"), force=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(EVCError, match=f"^cannot write {tmp_path / 'gone' / 'a.evc'}: output folder .* does not exist$"):
        write_output(tmp_path / "gone" / "a.evc", lambda tmp: tmp.write_bytes(b"x"), force=False)


class _FullStdout:
    """Standard output redirected to a full disk (not a terminal)."""

    class _Buffer(io.RawIOBase):
        def write(self, data) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    buffer = _Buffer()

    def isatty(self) -> bool:
        return False


def test_a_full_standard_output_is_named(capsys, monkeypatch, weights, evc_file):
    monkeypatch.setattr("sys.stdout", _FullStdout())
    code = main(["decode", str(evc_file), "-", "--weights", str(weights), "--device", "cpu"])
    assert code == 2
    assert capsys.readouterr().err == "evc: error: cannot write standard output: No space left on device\n"


# -- --format for standard output ------------------------------------------------------------------


@pytest.mark.parametrize("option,fmt,magic", [((), "PNG", b"\x89PNG\r\n\x1a\n"), (("--format", "jpg"), "JPEG", b"\xff\xd8\xff"),
                                              (("--format", "ppm"), "PPM", b"P6"), (("--format", ".TIFF"), "TIFF", b"II*\x00")])
def test_format_chooses_what_standard_output_gets(capsysbinary, weights, evc_file, option, fmt, magic):
    decoded = evc.load("EVC-SS", device="cpu", weights=weights).decompress(evc_file.read_bytes())
    capsysbinary.readouterr()
    assert main(["decode", str(evc_file), "-", "--weights", str(weights), "--device", "cpu", *option]) == 0
    out, err = capsysbinary.readouterr()
    assert out.startswith(magic)
    with Image.open(io.BytesIO(out)) as image:
        assert image.format == fmt and image.size == decoded.size
        if fmt != "JPEG":  # lossless: the decoded pixels exactly
            assert np.array_equal(np.asarray(image), np.asarray(decoded))
    assert (err == b"") == (fmt != "JPEG")  # JPEG warns that it is lossy, on stderr


def test_format_with_a_file_output_is_still_refused(capsys, tmp_path, weights, evc_file):
    code, _, err = run(capsys, "decode", evc_file, tmp_path / "x.png", "--format", "jpg", "--weights", weights)
    assert code == 2 and "--format goes with --out-dir or OUTPUT -" in err
    assert list(tmp_path.iterdir()) == []
    code, _, err = run(capsys, "decode", evc_file, "-", "--format", "xyz", "--weights", weights)
    assert code == 2 and "--format xyz: unknown image extension" in err

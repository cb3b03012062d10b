"""evc's Pillow plugin (issue 38): after ``evc.register_pillow()`` (or ``import evc.pillow``), Pillow
alone opens, decodes and saves .evc files, with the shipped EVC-SS (loaded once) on tiny images."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import evc
from evc.bitstream.container import parse
from conftest import rgb_array

pytestmark = pytest.mark.skipif(not evc.MODELS["EVC-SS"].has_weights(), reason="the shipped EVC-SS weights are needed")


@pytest.fixture(scope="module", autouse=True)
def registered() -> None:
    evc.register_pillow()
    evc.register_pillow()  # a second call changes nothing


@pytest.fixture(scope="module")
def codec() -> evc.Codec:
    return evc.load("EVC-SS", device="cpu")


def test_pillow_alone_opens_decodes_and_saves_evc(tmp_path, codec):
    assert Image.registered_extensions()[".evc"] == "EVC"
    original = Image.fromarray(rgb_array(12, 20, seed=3))
    original.save(tmp_path / "a.evc", quality=0.5)  # the format from the extension
    with Image.open(tmp_path / "a.evc") as image:
        assert (image.format, image.mode, image.size) == ("EVC", "RGB", (20, 12))
        assert image.tile  # opened lazily: nothing decoded yet
        image.load()
        decoded = np.asarray(image)
    data = (tmp_path / "a.evc").read_bytes()
    assert data == codec.compress(original, quality=0.5)  # the API's file
    assert np.array_equal(decoded, np.asarray(codec.decompress(data)))  # and the API's pixels
    # An opened .evc image saves again, to a path or a file object, with a target.
    with Image.open(tmp_path / "a.evc") as image:
        buffer = io.BytesIO()
        # noise: the trained rates all beat 20 dB; a coarser q index meets it, with a warning that says so
        with pytest.warns(UserWarning, match=r"target of 20 dB is met at q index \d+ .*outside the trained anchors"):
            image.save(buffer, "EVC", target_psnr=20)
    buffer.seek(0)
    with Image.open(buffer) as again:
        assert again.size == (20, 12)
        assert np.asarray(again).shape == (12, 20, 3)


def test_gray_images_and_colour_profiles_come_from_the_header(tmp_path):
    gray = Image.fromarray(rgb_array(5, 7, seed=1)[:, :, 0])
    gray.save(tmp_path / "gray.evc")
    with Image.open(tmp_path / "gray.evc") as image:
        assert (image.mode, image.size) == ("L", (7, 5))
        assert np.asarray(image).shape == (5, 7)
    from helpers_icc import display_p3_profile

    tagged = Image.fromarray(rgb_array(6, 6, seed=2))
    tagged.save(tmp_path / "p3.evc", icc_profile=display_p3_profile())  # Pillow's option: ignored
    tagged.info["icc_profile"] = display_p3_profile()
    tagged.save(tmp_path / "p3.evc")
    with Image.open(tmp_path / "p3.evc") as image:
        assert image.info["icc_profile"] == display_p3_profile()  # before any pixel is decoded
        assert image.tile


def test_exif_and_xmp_come_from_the_header(tmp_path):
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.5)}
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"></x:xmpmeta>'
    photo = Image.fromarray(rgb_array(6, 6, seed=4))
    photo.info["exif"], photo.info["xmp"] = exif.tobytes(), xmp
    photo.save(tmp_path / "meta.evc")
    with Image.open(tmp_path / "meta.evc") as image:
        assert image.tile  # not decoded yet
        assert image.info["exif"] == exif.tobytes() and image.info["xmp"] == xmp
        assert image.getexif().get_ifd(0x8825)[2] == (52.0, 31.0, 12.5)


def test_the_codec_is_loaded_once(tmp_path, monkeypatch):
    import evc.pillow

    Image.fromarray(rgb_array(4, 4)).save(tmp_path / "one.evc")
    loads = []
    monkeypatch.setattr(evc.pillow, "load", lambda name: loads.append(name))  # would fail if called
    Image.fromarray(rgb_array(4, 4, seed=1)).save(tmp_path / "two.evc")
    with Image.open(tmp_path / "two.evc") as image:
        image.load()
    assert loads == []


def test_bad_files_and_arguments_give_pillows_errors_with_evcs_message(tmp_path):
    good = tmp_path / "good.evc"
    Image.fromarray(rgb_array(8, 8)).save(good)
    data = good.read_bytes()
    (tmp_path / "newer.evc").write_bytes(data[:4] + b"\x09" + data[5:])
    with pytest.raises(OSError, match="format version 9, newer than"):
        Image.open(tmp_path / "newer.evc")
    (tmp_path / "cut.evc").write_bytes(data[:-3])
    with Image.open(tmp_path / "cut.evc") as image:  # the header is whole: the rest fails at load()
        with pytest.raises(OSError, match="truncated file"):
            image.load()
    (tmp_path / "head.evc").write_bytes(data[:10])
    with pytest.raises(OSError, match="truncated file"):
        Image.open(tmp_path / "head.evc")
    with pytest.raises(ValueError, match=r"quality must be a number in \[0, 1\], got 90"):
        Image.fromarray(rgb_array(8, 8)).save(tmp_path / "bad.evc", quality=90)
    assert not (tmp_path / "bad.evc").exists()  # Pillow removes what it created
    with pytest.raises(evc.ImageError, match="at most 16383 pixels a side"):
        Image.new("LA", (16384, 1), (1, 0)).save(tmp_path / "alpha.evc")
    assert not (tmp_path / "alpha.evc").exists()
    assert parse(data)[0].width == 8


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_round_trips_through_pillow_with_the_mode_from_the_header(tmp_path, codec, mode):
    """Issue 38: an image with transparency saves with its alpha plane, and Image.open gives RGBA / LA
    before decoding; the alpha comes back exactly."""
    rgba = np.dstack([rgb_array(10, 14, seed=2), np.tile(np.arange(0, 252, 18, dtype=np.uint8), (10, 1))])
    original = Image.fromarray(rgba, "RGBA").convert(mode)
    original.save(tmp_path / "a.evc")
    with Image.open(tmp_path / "a.evc") as image:
        assert (image.mode, image.size) == (mode, (14, 10))
        assert image.tile  # the mode came from the header
        image.load()
        assert np.array_equal(np.asarray(image.getchannel("A")), np.asarray(original.getchannel("A")))
        assert np.array_equal(np.asarray(image), np.asarray(codec.decompress((tmp_path / "a.evc").read_bytes())))


def test_importing_evc_pillow_registers(tmp_path):
    Image.fromarray(rgb_array(4, 4)).save(tmp_path / "x.evc")
    code = (
        "import sys; from PIL import Image; import evc.pillow; "
        "image = Image.open(sys.argv[1]); image.load(); print(image.format, image.mode, image.size)"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EVC_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.evc")], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "EVC RGB (4, 4)"


def test_a_single_pixel_decodes_close_to_itself(codec):
    """Issue 38: zero padding decoded (122, 115, 109) as (87, 78, 70); the edge replicated keeps it."""
    pixel = np.array([[[122, 115, 109]]], dtype=np.uint8)
    decoded = np.asarray(codec.decompress(codec.compress(pixel, quality=0.5)), dtype=np.int64)
    assert np.abs(decoded - pixel).max() <= 8

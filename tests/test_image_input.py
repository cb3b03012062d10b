"""One image-reading path for the API and the command line, and colour profiles (issue 14, kinds 1 and 2).

The same file must give the same pixels whichever way it reaches the codec: ``codec.compress(path)``,
``codec.compress(Image.open(path))`` (the README's Python quick start) and ``evc encode path``. All three
apply the EXIF orientation, code the first frame of an animation with a warning, apply evc's own pixel
limit instead of Pillow's decompression-bomb limit, and carry an ICC profile to the decoded image.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image, ImageCms

import evc
from evc.bitstream.container import FLAG_ICC, parse
from evc.cli.main import main
from evc.image import open_image
from conftest import rgb_array
from helpers_icc import display_p3_profile

MODEL = "EVC-SS"


@pytest.fixture(scope="module")
def codec(weights) -> evc.Codec:
    return evc.load(MODEL, device="cpu", weights=weights)


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def encode_cli(capsys, weights, source, target, *extra) -> tuple[int, str, str]:
    return run(capsys, "encode", source, target, "--weights", weights, "--device", "cpu", *extra)


# -- kind 1: the API and the CLI read a file alike --------------------------------------------------


@pytest.fixture(scope="module")
def rotated_jpeg(tmp_path_factory):
    """A 64x32 JPEG whose EXIF says: rotate 90 degrees clockwise to display (Orientation 6)."""
    path = tmp_path_factory.mktemp("exif") / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb_array(32, 64)).save(path, quality=95, exif=exif)
    return path


def test_exif_orientation_alike_in_api_and_cli(capsys, tmp_path, weights, codec, rotated_jpeg):
    from_pil = codec.compress(Image.open(rotated_jpeg), quality=0.5)  # the README's quick start
    from_path = codec.compress(rotated_jpeg, quality=0.5)
    from_str = codec.compress(str(rotated_jpeg), quality=0.5)
    assert encode_cli(capsys, weights, rotated_jpeg, tmp_path / "cli.evc")[0] == 0
    from_cli = (tmp_path / "cli.evc").read_bytes()
    info = evc.file_info(from_pil)
    assert (info.width, info.height) == (32, 64)  # upright: as viewers show it
    assert from_pil == from_path == from_str == from_cli
    upright = Image.open(rotated_jpeg).transpose(Image.Transpose.ROTATE_270)
    assert from_pil == codec.compress(np.asarray(upright), quality=0.5)


def test_encode_result_and_decoded_image_are_upright(codec, rotated_jpeg):
    result = codec.encode(Image.open(rotated_jpeg), quality=0.5)
    assert result.reconstruction.size == (32, 64)
    assert codec.decompress(result.data).size == (32, 64)
    # Upright, not only of upright size (a half turn, or the other quarter turn, keeps the size): the same
    # pixels as the image turned upright by hand gives.
    upright = np.asarray(Image.open(rotated_jpeg).transpose(Image.Transpose.ROTATE_270))
    expected = np.asarray(codec.encode(upright, quality=0.5).reconstruction)
    assert np.array_equal(np.asarray(result.reconstruction), expected)
    assert np.array_equal(np.asarray(codec.decompress(result.data)), expected)


def test_first_frame_with_a_warning_in_api_and_cli(capsys, tmp_path, weights, codec):
    frames = [Image.fromarray(rgb_array(24, 40, seed=s)) for s in (1, 2, 3)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    with pytest.warns(UserWarning, match="has 3 frames; coding the first"):
        from_path = codec.compress(path)
    with warnings.catch_warnings(), Image.open(path) as opened:
        warnings.simplefilter("error")  # an image object is coded at its current frame, silently
        from_pil = codec.compress(opened)
    code, out, err = encode_cli(capsys, weights, path, tmp_path / "anim.evc")
    assert (code, out) == (0, "")
    assert err == f"evc: warning: {path} has 3 frames; coding the first\n"
    assert from_path == from_pil == (tmp_path / "anim.evc").read_bytes()
    with Image.open(path) as first:
        assert from_path == codec.compress(np.asarray(first.convert("RGB")))


def test_evc_limit_replaces_pillows_decompression_bomb_limit(capsys, tmp_path, weights, codec, monkeypatch):
    """The issue's 9500x9500 PNG (over Pillow's 89.5 Mpx) with --max-pixels 200000000, scaled down:
    Pillow's limit lowered to 1000 pixels, a 64x64 image (4096 px, over twice that: Pillow raises)."""
    path = tmp_path / "big.png"
    Image.fromarray(rgb_array(64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)  # Pillow alone refuses it
    expected = codec.compress(rgb_array(64, 64))
    assert codec.compress(path) == expected
    code, out, err = encode_cli(capsys, weights, path, tmp_path / "big.evc", "--max-pixels", 200_000_000)
    assert (code, out, err) == (0, "", "")
    assert (tmp_path / "big.evc").read_bytes() == expected
    assert Image.MAX_IMAGE_PIXELS == 1000  # Pillow's own setting is left as it was


def test_evc_limit_refuses_with_its_own_message(capsys, tmp_path, weights, codec):
    path = tmp_path / "img.png"
    Image.fromarray(rgb_array(70, 10)).save(path)  # padded: 128 x 64 = 8192 pixels
    code, out, err = encode_cli(capsys, weights, path, tmp_path / "x.evc", "--max-pixels", 8191)
    assert code == 2 and out == ""
    assert "8192 once padded" in err and "limit of 8191" in err and "decompression" not in err
    assert not (tmp_path / "x.evc").exists()
    codec.max_pixels = 8191
    try:
        with pytest.raises(evc.ImageError, match="limit of 8191"):
            codec.compress(path)
        with pytest.raises(evc.ImageError, match="image of 700 pixels exceeds the limit of 100 pixels"):
            open_image(path, 100)  # far over: refused by Pillow's own check set to evc's limit
    finally:
        codec.max_pixels = evc.codec.DEFAULT_MAX_PIXELS


def test_paths_that_are_not_images(tmp_path, codec):
    (tmp_path / "notes.txt").write_text("not an image")
    for source, message in [
        (tmp_path / "missing.png", "not found"),
        (tmp_path, "not a file"),
        (tmp_path / "notes.txt", "not an image format"),
    ]:
        with pytest.raises(evc.ImageError, match=message):
            codec.compress(source)


def test_bytes_and_binary_file_objects_code_like_the_path(tmp_path, codec, rotated_jpeg):
    """Issue 38: an image file's bytes, or a binary file object holding one, is read like its path
    (EXIF orientation applied); ``decompress`` and ``file_info`` take a file object too."""
    data = rotated_jpeg.read_bytes()
    expected = codec.compress(rotated_jpeg)
    assert codec.compress(data) == expected
    assert codec.compress(bytearray(data)) == expected
    assert codec.compress(memoryview(data)) == expected
    assert codec.compress(io.BytesIO(data)) == expected
    with open(rotated_jpeg, "rb") as file:
        assert codec.encode(file).data == expected
    with open(rotated_jpeg, "rb") as file:
        file.read(10)  # Pillow reads an image file from its start
        assert codec.compress(file) == expected
    (tmp_path / "a.evc").write_bytes(expected)
    with open(tmp_path / "a.evc", "rb") as file:
        decoded = codec.decompress(file)
    assert decoded.size == (32, 64)  # upright
    assert np.array_equal(np.asarray(decoded), np.asarray(codec.decompress(expected)))
    assert evc.file_info(io.BytesIO(expected)).width == 32


def test_bytes_and_file_objects_that_are_not_images_are_named(tmp_path, codec):
    with pytest.raises(evc.ImageError, match="^cannot read the 12 bytes passed: not an image format"):
        codec.compress(b"not an image")
    with pytest.raises(evc.ImageError, match="^cannot read the BytesIO passed: not an image format"):
        codec.compress(io.BytesIO(b"not an image"))
    (tmp_path / "notes.txt").write_text("not an image")
    with open(tmp_path / "notes.txt", "rb") as file:
        with pytest.raises(evc.ImageError, match="notes.txt: not an image format"):
            codec.compress(file)
    with open(tmp_path / "notes.txt") as file:
        with pytest.raises(evc.ImageError, match="notes.txt is open in text mode; open the image file in binary mode"):
            codec.compress(file)
    with pytest.raises(TypeError, match="StringIO passed is open in text mode"):
        codec.decompress(io.StringIO("x"))
    with pytest.raises(TypeError, match="bytes-like data, not int"):
        evc.decompress(5)
    with pytest.raises(evc.FormatError, match="not an evc file"):
        evc.decompress(io.BytesIO(b"not an evc file"))


# -- kind 2: colour profiles are carried, never silently dropped --------------------------------------


@pytest.fixture(scope="module")
def p3_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("p3") / "p3.png"
    Image.fromarray(rgb_array(24, 40, seed=5)).save(path, icc_profile=display_p3_profile())
    return path


def test_display_p3_profile_is_carried_and_restored_by_the_api(codec, p3_png):
    profile = display_p3_profile()
    with Image.open(p3_png) as opened:
        assert opened.info["icc_profile"] == profile
    data = codec.compress(p3_png)
    header, streams = parse(data)
    assert header.flags & FLAG_ICC and header.icc_profile == profile
    # the values are coded as they are (P3 values, not converted): the same streams as untagged pixels
    untagged = codec.compress(rgb_array(24, 40, seed=5))
    assert streams == parse(untagged)[1]
    assert len(data) == len(untagged) + 4 + len(profile)
    decoded = codec.decompress(data)
    assert decoded.info["icc_profile"] == profile
    assert np.array_equal(np.asarray(decoded), np.asarray(codec.decompress(untagged)))
    result = codec.encode(Image.open(p3_png))
    assert result.reconstruction.info["icc_profile"] == profile and result.data == data
    info = evc.file_info(data)
    assert info.icc_profile == profile and evc.file_info(untagged).icc_profile is None


def test_display_p3_profile_survives_the_command_line(capsys, tmp_path, weights, codec, p3_png):
    evc_file, png_file, tiff_file = tmp_path / "p3.evc", tmp_path / "p3.png", tmp_path / "p3.tiff"
    assert encode_cli(capsys, weights, p3_png, evc_file)[0] == 0
    assert evc_file.read_bytes() == codec.compress(p3_png)
    for target in (png_file, tiff_file):
        code, out, err = run(capsys, "decode", evc_file, target, "--weights", weights, "--device", "cpu")
        assert (code, out, err) == (0, "", "")
        with Image.open(target) as decoded:
            assert decoded.info["icc_profile"] == display_p3_profile()
            assert np.array_equal(np.asarray(decoded), np.asarray(codec.decompress(evc_file.read_bytes())))
    code, out, err = run(capsys, "info", evc_file)
    assert code == 0 and "profile  ICC, Display P3 (552 bytes)" in out


def test_formats_without_profiles_get_srgb_pixels_and_a_warning(capsys, tmp_path, weights, codec, p3_png):
    evc_file, ppm_file = tmp_path / "p3.evc", tmp_path / "p3.ppm"
    assert encode_cli(capsys, weights, p3_png, evc_file)[0] == 0
    code, out, err = run(capsys, "decode", evc_file, ppm_file, "--weights", weights, "--device", "cpu")
    assert code == 0 and out == ""
    assert err == "evc: warning: PPM files cannot hold the image's ICC colour profile (Display P3): converted to sRGB\n"
    decoded = codec.decompress(evc_file.read_bytes())
    profile = ImageCms.ImageCmsProfile(io.BytesIO(display_p3_profile()))
    srgb = ImageCms.profileToProfile(decoded, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    with Image.open(ppm_file) as written:
        assert np.array_equal(np.asarray(written), np.asarray(srgb))
        assert not np.array_equal(np.asarray(written), np.asarray(decoded))  # a real conversion


def test_gray_image_keeps_its_profile(codec, tmp_path):
    from helpers_icc import gray_profile

    gray = rgb_array(16, 16)[:, :, 0]
    path = tmp_path / "gray.png"
    Image.fromarray(gray, "L").save(path, icc_profile=gray_profile())
    decoded = codec.decompress(codec.compress(path))
    assert decoded.mode == "L" and decoded.info["icc_profile"] == gray_profile()


def test_a_profile_of_other_values_is_ignored_with_a_warning(codec):
    """An RGB profile on gray values, a CMYK profile on RGB values: carrying it would give the decoded
    values a wrong meaning."""
    gray = Image.fromarray(rgb_array(16, 16)[:, :, 0], "L")
    gray.info["icc_profile"] = display_p3_profile()
    with pytest.warns(UserWarning, match="ignoring the image's ICC profile: it describes 'RGB' values, not L"):
        data = codec.compress(gray)
    assert parse(data)[0].icc_profile is None
    from helpers_icc import cmyk_profile

    rgb = Image.fromarray(rgb_array(16, 16))
    rgb.info["icc_profile"] = cmyk_profile()
    with pytest.warns(UserWarning, match="describes 'CMYK' values, not RGB"):
        assert parse(codec.compress(rgb))[0].icc_profile is None


def test_cmyk_with_a_profile_is_converted_to_srgb_under_it(capsys, tmp_path, weights, codec):
    """The profile describes CMYK values, so it cannot be carried with RGB ones: LittleCMS converts."""
    from helpers_icc import cmyk_profile

    rng = np.random.default_rng(2)
    cmyk = Image.fromarray(rng.integers(0, 256, (16, 24, 4), dtype=np.uint8), "CMYK")
    path = tmp_path / "cmyk.tiff"
    cmyk.save(path, icc_profile=cmyk_profile())
    profile = ImageCms.ImageCmsProfile(io.BytesIO(cmyk_profile()))
    srgb = np.asarray(ImageCms.profileToProfile(cmyk, profile, ImageCms.createProfile("sRGB"), outputMode="RGB"))
    assert not np.array_equal(srgb, np.asarray(cmyk.convert("RGB")))  # not Pillow's plain formula
    data = codec.compress(path)
    assert data == codec.compress(srgb) and parse(data)[0].icc_profile is None
    assert encode_cli(capsys, weights, path, tmp_path / "cmyk.evc")[0] == 0
    assert (tmp_path / "cmyk.evc").read_bytes() == data
    broken = tmp_path / "broken.tiff"
    cmyk.save(broken, icc_profile=b"not a profile")
    with pytest.raises(evc.ImageError, match="cannot convert the CMYK image to sRGB with its embedded ICC profile"):
        codec.compress(broken)


def test_srgb_profiles_are_not_stored(codec):
    """Untagged means sRGB: an sRGB profile (here LittleCMS's) adds bytes, not meaning."""
    tagged = Image.fromarray(rgb_array(16, 16))
    tagged.info["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert codec.compress(tagged) == codec.compress(rgb_array(16, 16))

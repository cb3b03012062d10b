"""Files of every format version still decode (committed files, tests/data/formats, made once by its
make.py with the seeded EVC-SS), and EXIF / XMP metadata and the alpha plane (format version 4, issue
38) round-trip through the API, the command line and the Pillow plugin's header."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import evc
import evc.alpha
from evc.bitstream.container import FLAG_ALPHA, FLAG_EXIF, FLAG_XMP, parse
from evc.cli.main import main
from conftest import rgb_array

DATA = Path(__file__).resolve().parent / "data" / "formats"
XMP = (b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
       b'</x:xmpmeta><?xpacket end="w"?>')


@pytest.fixture(scope="module")
def codec(weights) -> evc.Codec:
    return evc.load("EVC-SS", device="cpu", weights=weights)  # the seeded EVC-SS the files were made by


def decoded_pixels(codec: evc.Codec, name: str) -> tuple[np.ndarray, Image.Image]:
    image = codec.decompress((DATA / f"{name}.evc").read_bytes())
    return np.asarray(image, dtype=np.int64), image


def assert_like_committed(pixels: np.ndarray, name: str) -> None:
    """The committed decoded image, up to one level: g_s runs in float32, whose last bits may differ
    with the CPU and thread count (README, Portable files); the latent itself is exact."""
    with Image.open(DATA / f"{name}.png") as committed:
        expected = np.asarray(committed, dtype=np.int64)
    assert pixels.shape == expected.shape
    assert np.abs(pixels - expected).max() <= 1


@pytest.mark.parametrize(("name", "version"), [("v2-float64", 2), ("v3-int8", 3), ("v4-int8-exif-xmp", 4),
                                             ("v4-int8-alpha", 4)])
def test_committed_files_of_every_exact_version_decode(codec, name, version):
    data = (DATA / f"{name}.evc").read_bytes()
    assert data[4] == version
    pixels, image = decoded_pixels(codec, name)
    assert_like_committed(pixels, name)
    assert image.size == (24, 16)
    if version < 4:
        assert "exif" not in image.info and "xmp" not in image.info
    assert image.mode == ("RGBA" if name.endswith("alpha") else "RGB")


def test_committed_alpha_file_restores_the_alpha_exactly(codec):
    data = (DATA / "v4-int8-alpha.evc").read_bytes()
    header, _ = parse(data)
    assert header.flags & FLAG_ALPHA and not header.flags & (FLAG_EXIF | FLAG_XMP)
    image = codec.decompress(data)
    alpha = np.asarray(image.getchannel("A"))
    assert alpha[0, 0] == 0 and alpha[0, -1] == 255 and alpha[-1, 0] == 40  # make.py's ramp and clear corner
    with Image.open(DATA / "v4-int8-alpha.png") as committed:
        assert np.array_equal(alpha, np.asarray(committed.getchannel("A")))  # exactly, on every CPU


def test_committed_version_1_file_decodes_where_its_float_arithmetic_matches(codec):
    """Version 1 has no flags: float entropy parameters, which decode where the arithmetic matches the
    encoder's and are otherwise refused by the symbols checksum, never decoded wrong."""
    data = (DATA / "v1-float.evc").read_bytes()
    assert data[4] == 1 and parse(data)[0].flags == 0
    try:
        pixels, _ = decoded_pixels(codec, "v1-float")
    except evc.FormatError as exc:
        assert "arithmetic differs" in str(exc)
        return
    assert_like_committed(pixels, "v1-float")


def test_version_4_restores_the_exif_with_gps_and_the_xmp_byte_for_byte(codec):
    _, image = decoded_pixels(codec, "v4-int8-exif-xmp")
    with Image.open(DATA / "v4-int8-exif-xmp.png") as committed:
        assert image.info["exif"][6:] == committed.info["exif"][6:] and image.info["xmp"] == committed.info["xmp"]
    exif = image.getexif()
    assert (exif[0x010F], exif[0x0110]) == ("Canon", "Canon EOS R5")
    assert exif.get_ifd(0x8825)[2] == (52.0, 31.0, 12.5)
    assert b"dc:format" in image.info["xmp"]


@pytest.fixture(scope="module")
def camera_jpeg(tmp_path_factory) -> tuple[Path, bytes, bytes]:
    """A 40x24 camera JPEG: EXIF with make, model, GPS and orientation 6 (turn 90 degrees), and XMP."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "Canon", "EOS", 6
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.5)}
    path = tmp_path_factory.mktemp("camera") / "camera.jpg"
    Image.fromarray(rgb_array(24, 40)).save(path, quality=95, exif=exif.tobytes(), xmp=XMP)
    with Image.open(path) as opened:
        return path, opened.info["exif"], opened.info["xmp"]


def test_api_round_trip_keeps_metadata_and_resets_the_orientation(codec, camera_jpeg):
    path, _, xmp = camera_jpeg
    for source in (path, path.read_bytes(), Image.open(path)):
        data = codec.compress(source, 0.5)
        header, _ = parse(data)
        assert header.version == 4 and header.flags & FLAG_EXIF and header.flags & FLAG_XMP
        image = codec.decompress(data)
        assert image.size == (24, 40)  # upright
        exif = image.getexif()
        assert 0x0112 not in exif  # applied to the pixels, so the tag is gone (orientation 1)
        assert (exif[0x010F], exif[0x0110], exif.get_ifd(0x8825)[2]) == ("Canon", "EOS", (52.0, 31.0, 12.5))
        assert image.info["xmp"] == xmp
        assert image.info["exif"] == header.exif == evc.file_info(data).exif
    result = codec.encode(path, 0.5)
    assert result.reconstruction.info["exif"] == codec.decompress(result.data).info["exif"]


def test_exif_without_orientation_is_kept_byte_for_byte(codec, tmp_path):
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x8825] = {1: "S", 2: (1.0, 2.0, 3.0)}
    Image.fromarray(rgb_array(8, 8)).save(tmp_path / "a.jpg", exif=exif.tobytes(), xmp=XMP)
    with Image.open(tmp_path / "a.jpg") as opened:
        original = opened.info["exif"]
    image = codec.decompress(codec.compress(tmp_path / "a.jpg"))
    assert image.info["exif"] == original and image.info["xmp"] == XMP


def test_strip_drops_metadata_and_images_without_it_stay_version_3(codec, camera_jpeg):
    path = camera_jpeg[0]
    stripped = codec.compress(path, strip=True)
    assert stripped[4] == 3 and "exif" not in codec.decompress(stripped).info
    assert codec.compress(rgb_array(8, 8))[4] == 3
    with pytest.raises(TypeError, match="strip must be True or False"):
        codec.compress(path, strip="yes")


def test_float64_arithmetic_cannot_hold_metadata_and_says_so(weights, camera_jpeg):
    old = evc.load("EVC-SS", device="cpu", weights=weights, arithmetic="float64")
    with pytest.warns(UserWarning, match="format version 2 .* cannot hold EXIF or XMP"):
        data = old.compress(camera_jpeg[0])
    assert data[4] == 2


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_command_line_keeps_metadata_in_formats_that_hold_it(capsys, tmp_path, weights, camera_jpeg):
    path, _, xmp = camera_jpeg
    options = ("--weights", weights, "--device", "cpu")
    assert run(capsys, "encode", path, tmp_path / "a.evc", *options)[0] == 0
    code, out, _ = run(capsys, "info", tmp_path / "a.evc", "--weights", weights)
    assert code == 0
    assert "metadata EXIF (" in out and "XMP (" in out and "version 4" in out
    for suffix in ("png", "jpg", "webp"):
        code, _, err = run(capsys, "decode", tmp_path / "a.evc", tmp_path / f"out.{suffix}", *options)
        assert code == 0 and "metadata" not in err
        with Image.open(tmp_path / f"out.{suffix}") as written:
            exif = written.getexif()
            assert exif[0x010F] == "Canon" and exif.get_ifd(0x8825)[2] == (52.0, 31.0, 12.5)
            assert written.info["xmp"] == xmp
    code, _, err = run(capsys, "decode", tmp_path / "a.evc", tmp_path / "out.ppm", *options)
    assert code == 0 and "PPM files as evc writes them do not keep the image's EXIF and XMP metadata" in err
    assert run(capsys, "encode", path, tmp_path / "s.evc", "--strip", *options)[0] == 0
    code, out, _ = run(capsys, "info", tmp_path / "s.evc", "--weights", weights)
    assert "metadata none" in out and "version 3" in out


def test_exif_from_webp_survives_into_jpeg(capsys, tmp_path, weights):
    """Pillow reads WebP's EXIF without the "Exif\\0\\0" prefix that JPEG needs: evc decode adds it."""
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.5)}
    Image.fromarray(rgb_array(8, 8)).save(tmp_path / "in.webp", exif=exif.tobytes(), lossless=True)
    options = ("--weights", weights, "--device", "cpu")
    assert run(capsys, "encode", tmp_path / "in.webp", tmp_path / "a.evc", *options)[0] == 0
    code, _, err = run(capsys, "decode", tmp_path / "a.evc", tmp_path / "out.jpg", *options)
    assert code == 0 and "metadata" not in err
    with Image.open(tmp_path / "out.jpg") as written:
        assert written.getexif().get_ifd(0x8825)[2] == (52.0, 31.0, 12.5)


def test_corrupt_metadata_blocks_are_refused(codec, camera_jpeg):
    data = bytearray(codec.compress(camera_jpeg[0]))
    header, streams = parse(bytes(data))
    # The EXIF length field follows the stream lengths (no ICC profile here): declare it empty.
    at = 27 + 4 * len(streams)
    data[at : at + 4] = bytes(4)
    body = bytes(data[:-4])
    with pytest.raises(evc.FormatError, match="empty EXIF block"):
        parse(body + struct.pack(">I", zlib.crc32(body)))
    # A version 3 file may not carry the metadata flags.
    v3 = bytearray(data)
    v3[4] = 3
    body = bytes(v3[:-4])
    with pytest.raises(evc.FormatError, match="flags 0x"):
        evc.decompress(io.BytesIO(body + struct.pack(">I", zlib.crc32(body))))


def test_command_line_keeps_alpha_exactly_and_info_shows_it(capsys, tmp_path, weights):
    """Issue 38: a PNG with transparency encodes with its alpha plane; decoding to PNG, WebP and TIFF keeps
    it exactly (JPEG and PPM are refused: test_cli.py's error cases); a gray one decodes as LA."""
    rgba = np.dstack([rgb_array(12, 18), np.tile(np.arange(0, 255, 14, dtype=np.uint8)[:18], (12, 1))])
    options = ("--weights", weights, "--device", "cpu")
    for mode in ("RGBA", "LA"):
        source = Image.fromarray(rgba, "RGBA").convert(mode)
        source.save(tmp_path / "in.png")
        assert run(capsys, "encode", tmp_path / "in.png", tmp_path / "a.evc", *options, "--force")[0] == 0
        data = (tmp_path / "a.evc").read_bytes()
        code, out, _ = run(capsys, "info", tmp_path / "a.evc", "--weights", weights)
        alpha_bytes = len(parse(data)[0].alpha)
        assert code == 0 and f"alpha    lossless alpha plane ({alpha_bytes} bytes, decodes as {mode})" in out
        for suffix in ("png", "webp", "tiff"):
            target = tmp_path / f"out.{suffix}"
            assert run(capsys, "decode", tmp_path / "a.evc", target, *options, "--force")[0] == 0
            with Image.open(target) as written:
                assert np.array_equal(np.asarray(written.getchannel("A")), np.asarray(source.getchannel("A")))
                if suffix != "webp":  # lossy at quality 95: only the alpha is exact
                    assert written.mode == mode
    source.convert("RGB").save(tmp_path / "opaque.png")
    assert run(capsys, "encode", tmp_path / "opaque.png", tmp_path / "o.evc", *options)[0] == 0
    assert "alpha    none" in run(capsys, "info", tmp_path / "o.evc")[1]


def test_corrupt_alpha_planes_are_refused(codec):
    data = (DATA / "v4-int8-alpha.evc").read_bytes()
    header, streams = parse(data)
    at = data.index(header.alpha)
    for damaged in (header.alpha[:-5] + bytes(5), b"RIFF" + bytes(12), header.alpha[:12] + b"VP8X" + header.alpha[16:]):
        body = data[: at - 4] + struct.pack(">I", len(damaged)) + damaged + data[at + len(header.alpha) : -4]
        with pytest.raises(evc.FormatError, match="corrupt alpha plane"):
            codec.decompress(body + struct.pack(">I", zlib.crc32(body)))
    # an alpha plane of another size than the image's
    other = evc.alpha.encode_alpha(np.zeros((3, 3), np.uint8))
    body = data[: at - 4] + struct.pack(">I", len(other)) + other + data[at + len(header.alpha) : -4]
    with pytest.raises(evc.FormatError, match="3x3 pixels in a 24x16 image"):
        codec.decompress(body + struct.pack(">I", zlib.crc32(body)))

"""Image inputs and colour rules of the codec (src/evc/image.py through evc.Codec).

Every test codes with a seeded, untrained EVC-SS (the ``codec_ss`` fixture of conftest.py): rates and
PSNR are meaningless, so only correctness is checked: which inputs are accepted or refused, which
inputs must code to identical bytes, the decoded mode and size, and that decoding returns exactly the
reconstruction ``encode`` promised.
"""

from __future__ import annotations

import io
import math
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import evc
import evc.alpha
import evc.image
from evc import ImageError
from evc.bitstream.container import FLAG_ALPHA, parse

# -- helpers ---------------------------------------------------------------------------------------


def rgb_array(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth-plus-noise uint8 RGB image (H, W, 3) covering most of 0..255."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([np.sin(xx / 6.0 + c) * np.cos(yy / 4.0 - c) for c in range(3)], axis=-1) * 100 + 128
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def gray_array(height: int, width: int, seed: int = 0) -> np.ndarray:
    gray = rgb_array(height, width, seed)[:, :, 1].copy()
    gray[0, 0], gray[-1, -1] = 0, 255  # both extremes present
    return gray


def assert_round_trip(codec: evc.Codec, image, mode: str, size: tuple[int, int]) -> evc.EncodeResult:
    """encode, then decompress: same pixels as the promised reconstruction, given mode and (W, H) size."""
    result = codec.encode(image, 0.5)
    assert result.reconstruction.mode == mode
    assert result.reconstruction.size == size
    assert (result.width, result.height) == size
    decoded = codec.decompress(result.data)
    assert decoded.mode == mode
    assert decoded.size == size
    assert np.array_equal(np.asarray(decoded), np.asarray(result.reconstruction))
    return result


def code(codec: evc.Codec, image) -> bytes:
    return codec.compress(image, quality=0.5)


def assert_coded_pixels(image, pixels8: np.ndarray) -> None:
    """The codec codes exactly the 8-bit ``pixels8`` ((H, W) gray or (H, W, 3) RGB) for ``image``, as
    evc.image.to_input gives them to it. Equal files alone do not show this: the codec's quantisation
    absorbs pixels off by one, so a rounding rule turned into truncation still codes to the same bytes."""
    coded = evc.image.to_input(image).rgb
    expected = np.repeat(pixels8[:, :, None], 3, axis=2) if pixels8.ndim == 2 else pixels8
    assert np.array_equal(coded, expected), np.argwhere(coded != expected)[:3]


H, W = 20, 24  # small and not a multiple of the padding


# -- RGB and the basic contract --------------------------------------------------------------------


def test_rgb_pil_round_trip_and_result_fields(codec_ss):
    rgb = rgb_array(H, W)
    result = assert_round_trip(codec_ss, Image.fromarray(rgb), "RGB", (W, H))
    assert result.q_index == codec_ss.q_index(0.5)
    assert result.bpp == pytest.approx(len(result.data) * 8 / (W * H))
    # psnr is that of the reconstruction the decoder returns, against the input
    mse = np.mean((np.asarray(result.reconstruction, dtype=np.float64) - rgb) ** 2) / 255.0**2
    assert result.psnr == pytest.approx(10 * math.log10(1 / mse))


def test_compress_equals_encode_data(codec_ss):
    rgb = rgb_array(H, W)
    assert codec_ss.compress(rgb, quality=0.3) == codec_ss.encode(rgb, 0.3).data
    gray = gray_array(H, W)
    assert codec_ss.compress(gray, q_index=120) == codec_ss.encode(gray, q_index=120).data


def test_decoding_with_a_fresh_codec_of_the_same_weights(codec_ss):
    """The file alone (plus the same weights) determines the decoded image: no encoder state leaks."""
    result = codec_ss.encode(rgb_array(H, W, seed=3), 0.7)
    fresh = evc.Codec(evc.create_model("EVC-SS", seed=0), "EVC-SS", device="cpu")
    assert np.array_equal(np.asarray(fresh.decompress(result.data)), np.asarray(result.reconstruction))


def test_coding_is_deterministic(codec_ss):
    rgb = rgb_array(H, W, seed=5)
    assert code(codec_ss, rgb) == code(codec_ss, rgb.copy())


def test_different_images_code_differently(codec_ss):
    """Guards the byte-equality tests below against a codec that ignores its input."""
    assert code(codec_ss, rgb_array(H, W, seed=1)) != code(codec_ss, rgb_array(H, W, seed=2))
    assert code(codec_ss, gray_array(H, W)) != code(codec_ss, rgb_array(H, W))


def test_input_is_not_modified(codec_ss):
    rgb = rgb_array(H, W)
    before = rgb.copy()
    image = Image.fromarray(gray_array(H, W)).convert("LA")
    image_before = image.tobytes()
    codec_ss.compress(rgb)
    codec_ss.compress(image)
    assert np.array_equal(rgb, before)
    assert image.mode == "LA" and image.tobytes() == image_before


# -- grayscale -------------------------------------------------------------------------------------


def _gray_variants() -> dict[str, tuple[Image.Image, np.ndarray]]:
    """Gray-coded inputs and the 8-bit gray image each must code exactly like."""
    gray = gray_array(H, W)
    wide = gray.astype(np.uint16) * 257
    # offsets below half a step (128.5 of 257) must round back to the same 8-bit value, from above and
    # from below (truncating, v // 257, would give one less there)
    offsets = np.where(gray % 2 == 0, np.where(gray < 255, 100, 0), np.where(gray > 0, -100, 0))
    wide_offset = (wide.astype(np.int32) + offsets).astype(np.uint16)
    bits = (gray > 127).astype(np.uint8) * 255
    return {
        "L": (Image.fromarray(gray, "L"), gray),
        "1": (Image.fromarray(bits, "L").convert("1"), bits),
        "I;16": (Image.fromarray(wide_offset), gray),
        "I;16B": (Image.frombytes("I;16B", (W, H), wide.astype(">u2").tobytes()), gray),
        "I": (Image.fromarray(wide.astype(np.int32)), gray),
        "LA opaque": (Image.fromarray(gray, "L").convert("LA"), gray),
    }


@pytest.mark.parametrize("variant", list(_gray_variants()))
def test_gray_modes_code_as_8bit_gray_and_decode_to_L(codec_ss, variant):
    image, gray8 = _gray_variants()[variant]
    assert image.mode == variant.split()[0]
    result = assert_round_trip(codec_ss, image, "L", (W, H))
    assert result.data == code(codec_ss, Image.fromarray(gray8, "L"))
    assert_coded_pixels(image, gray8)


def test_16bit_white_codes_like_8bit_white(codec_ss):
    white16 = Image.fromarray(np.full((H, W), 65535, dtype=np.uint16))
    assert white16.mode == "I;16"
    white8 = Image.fromarray(np.full((H, W), 255, dtype=np.uint8), "L")
    black8 = Image.fromarray(np.zeros((H, W), dtype=np.uint8), "L")
    assert code(codec_ss, white16) == code(codec_ss, white8)
    assert code(codec_ss, white8) != code(codec_ss, black8)  # the comparison can tell images apart


def test_16bit_scaling_rounds_to_nearest(codec_ss):
    """round(v / 257) to the nearest 8-bit value: 128 -> 0, 129 -> 1, 385 -> 1, 386 -> 2, 65535 -> 255."""
    values16 = np.array([0, 128, 129, 385, 386, 32896, 65278, 65535], dtype=np.uint16)
    expected8 = np.array([0, 0, 1, 1, 2, 128, 254, 255], dtype=np.uint8)
    img16 = np.tile(values16, (H, W // len(values16)))
    img8 = np.tile(expected8, (H, W // len(values16)))
    assert code(codec_ss, Image.fromarray(img16)) == code(codec_ss, Image.fromarray(img8, "L"))
    assert code(codec_ss, img16) == code(codec_ss, img8)  # numpy uint16 follows the same rule
    assert_coded_pixels(Image.fromarray(img16), img8)
    assert_coded_pixels(img16, img8)


def test_32bit_gray_out_of_16bit_range_is_clipped(codec_ss):
    values = np.where(gray_array(H, W) > 127, 100_000, -5).astype(np.int32)
    expected = np.where(values > 0, 255, 0).astype(np.uint8)
    image = Image.fromarray(values)
    assert image.mode == "I"
    assert code(codec_ss, image) == code(codec_ss, Image.fromarray(expected, "L"))


def test_gray_is_coded_as_equal_rgb_channels(codec_ss):
    """Same latent as the RGB image with three equal channels: only the decoded mode differs."""
    gray = gray_array(H, W)
    gray_result = codec_ss.encode(Image.fromarray(gray, "L"), 0.5)
    rgb_result = codec_ss.encode(np.repeat(gray[:, :, None], 3, axis=2), 0.5)
    assert gray_result.data != rgb_result.data  # the colour flag in the header differs
    assert rgb_result.reconstruction.mode == "RGB"
    assert np.array_equal(np.asarray(gray_result.reconstruction), np.asarray(rgb_result.reconstruction.convert("L")))


def test_gray_psnr_is_measured_on_the_gray_output(codec_ss):
    gray = gray_array(H, W)
    result = codec_ss.encode(Image.fromarray(gray, "L"), 0.5)
    mse = np.mean((np.asarray(result.reconstruction, dtype=np.float64) - gray) ** 2) / 255.0**2
    assert result.psnr == pytest.approx(10 * math.log10(1 / mse))


# -- colour modes ----------------------------------------------------------------------------------


def _palette_image() -> Image.Image:
    return Image.fromarray(rgb_array(H, W)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)


def _colour_variants() -> dict[str, Image.Image]:
    rgb = Image.fromarray(rgb_array(H, W))
    unused_index = _palette_image()
    unused_index.info["transparency"] = 200  # an adaptive 16-colour palette never uses index 200
    opaque_bytes = _palette_image()
    opaque_bytes.info["transparency"] = bytes([255] * 256)
    return {
        "RGBA opaque": rgb.convert("RGBA"),
        "RGBX": rgb.convert("RGBX"),
        "P": _palette_image(),
        "P unused transparent index": unused_index,
        "P opaque transparency table": opaque_bytes,
        "PA opaque": _palette_image().convert("PA"),
        "CMYK": rgb.convert("CMYK"),
        "YCbCr": rgb.convert("YCbCr"),
        "HSV": rgb.convert("HSV"),
        "LAB": rgb.convert("LAB"),
    }


@pytest.mark.parametrize("variant", list(_colour_variants()))
def test_colour_modes_code_as_pillow_rgb_and_decode_to_RGB(codec_ss, variant):
    image = _colour_variants()[variant]
    assert image.mode == variant.split()[0]
    reference = image.convert("RGBA").convert("RGB") if image.mode in ("P", "PA") else image.convert("RGB")
    assert_round_trip(codec_ss, image, "RGB", (W, H))
    assert code(codec_ss, image) == code(codec_ss, reference)


def test_opaque_alpha_is_dropped(codec_ss):
    rgb = rgb_array(H, W)
    rgba = np.dstack([rgb, np.full((H, W), 255, np.uint8)])
    assert code(codec_ss, Image.fromarray(rgba, "RGBA")) == code(codec_ss, Image.fromarray(rgb))


def test_cmyk_uses_pillow_conversion(codec_ss):
    cmyk = np.random.default_rng(4).integers(0, 256, (H, W, 4), dtype=np.uint8)
    image = Image.frombytes("CMYK", (W, H), cmyk.tobytes())
    assert code(codec_ss, image) == code(codec_ss, np.asarray(image.convert("RGB")))


# -- transparency: the alpha plane is coded losslessly (issue 38) ---------------------------------


def _transparent_variants() -> dict[str, Image.Image]:
    rgb = rgb_array(H, W)
    gray = gray_array(H, W)
    rgba = np.dstack([rgb, np.full((H, W), 255, np.uint8)])
    rgba[3, 4, 3] = 254  # a single barely transparent pixel
    la = np.dstack([gray, np.full((H, W), 255, np.uint8)])
    la[-1, -1, 1] = 0
    used_index = _palette_image()
    used_index.info["transparency"] = used_index.getpixel((0, 0))
    semi = _palette_image()
    table = [255] * 256
    table[semi.getpixel((5, 5))] = 128
    semi.info["transparency"] = bytes(table)
    pa = _palette_image().convert("PA")
    pa.putpixel((1, 1), (pa.getpixel((1, 1))[0], 0))
    # palette transparency read back from a real PNG file
    buffer = io.BytesIO()
    semi.save(buffer, "PNG")
    buffer.seek(0)
    from_png = Image.open(buffer)
    from_png.load()
    return {
        "RGBA": Image.fromarray(rgba, "RGBA"),
        "LA": Image.fromarray(la, "LA"),
        "P transparent index": used_index,
        "P transparency table": semi,
        "PA": pa,
        "P from PNG": from_png,
    }


def assert_alpha_round_trip(codec: evc.Codec, image, mode: str, alpha: np.ndarray) -> evc.EncodeResult:
    """``image`` decodes to ``mode`` ("RGBA" / "LA") with exactly ``alpha``, in a version 4 file whose
    streams are those of its colours alone (the alpha plane is coded apart, losslessly)."""
    result = assert_round_trip(codec, image, mode, (W, H))
    decoded = codec.decompress(result.data)
    assert np.array_equal(np.asarray(decoded.getchannel("A")), alpha)
    header, streams = parse(result.data)
    assert header.version == 4 and header.flags & FLAG_ALPHA
    assert evc.file_info(result.data).alpha_bytes == len(header.alpha)
    assert code(codec, image) == result.data
    colours = evc.image.to_input(image)
    assert colours.alpha is not None and np.array_equal(colours.alpha, alpha)
    assert parse(code(codec, colours.rgb if mode == "RGBA" else colours.rgb[:, :, 0]))[1] == streams
    return result


@pytest.mark.parametrize("variant", list(_transparent_variants()))
def test_transparency_is_coded_losslessly(codec_ss, variant):
    image = _transparent_variants()[variant]
    assert image.mode == variant.split()[0]
    mode = "LA" if image.mode == "LA" else "RGBA"
    assert_alpha_round_trip(codec_ss, image, mode, np.asarray(image.convert("RGBA").getchannel("A")))


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_a_colour_key_becomes_the_alpha_plane(codec_ss, mode):
    image = Image.fromarray(rgb_array(H, W)).convert(mode)
    key = image.getpixel((0, 0))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", transparency=key)  # pixels of colour `key` are transparent in viewers
    buffer.seek(0)
    loaded = Image.open(buffer)
    loaded.load()
    assert loaded.mode == mode and "transparency" in loaded.info
    pixels = np.asarray(image).reshape(H, W, -1)
    alpha = np.where((pixels == np.asarray(key).reshape(-1)).all(axis=2), 0, 255).astype(np.uint8)
    assert alpha.min() == 0
    assert_alpha_round_trip(codec_ss, loaded, mode + "A", alpha)


def test_alpha_needs_version_4_and_webp_sized_images(weights):
    old = evc.load("EVC-SS", device="cpu", weights=weights, arithmetic="float64")
    transparent = _transparent_variants()["RGBA"]
    with pytest.raises(ImageError, match="format version 2 .*cannot hold"):
        old.compress(transparent)
    with pytest.raises(ImageError, match="at most 16383 pixels a side"):
        evc.alpha.encode_alpha(np.zeros((1, 16384), np.uint8))


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_unused_colour_key_is_ignored(codec_ss, mode):
    image = Image.fromarray(rgb_array(H, W)).convert(mode)
    key = (1, 2, 3) if mode == "RGB" else 7
    pixels_of = np.asarray(image).reshape(-1, 3 if mode == "RGB" else 1)
    assert not (pixels_of == np.asarray(key)).all(axis=1).any()
    buffer = io.BytesIO()
    image.save(buffer, "PNG", transparency=key)
    buffer.seek(0)
    loaded = Image.open(buffer)
    loaded.load()
    assert "transparency" in loaded.info
    assert codec_ss.compress(loaded) == codec_ss.compress(image)


# -- numpy arrays ----------------------------------------------------------------------------------


def test_numpy_rgb_uint8_codes_like_pil(codec_ss):
    rgb = rgb_array(H, W)
    assert_round_trip(codec_ss, rgb, "RGB", (W, H))
    assert code(codec_ss, rgb) == code(codec_ss, Image.fromarray(rgb))


@pytest.mark.parametrize("shape", ["HW", "HW1"])
def test_numpy_gray_uint8_codes_like_pil_L(codec_ss, shape):
    gray = gray_array(H, W)
    array = gray if shape == "HW" else gray[:, :, None]
    assert_round_trip(codec_ss, array, "L", (W, H))
    assert code(codec_ss, array) == code(codec_ss, Image.fromarray(gray, "L"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_numpy_float_in_unit_range_codes_like_uint8(codec_ss, dtype):
    rgb = rgb_array(H, W)
    gray = gray_array(H, W)
    assert code(codec_ss, (rgb / 255.0).astype(dtype)) == code(codec_ss, rgb)
    result = assert_round_trip(codec_ss, (gray / 255.0).astype(dtype), "L", (W, H))
    assert result.data == code(codec_ss, gray)
    assert_coded_pixels((rgb / 255.0).astype(dtype), rgb)
    assert_coded_pixels((gray / 255.0).astype(dtype), gray)
    # values between the levels round to the nearest (0 and 255, even and odd, stay in [0, 1])
    between = (rgb + np.where(rgb % 2 == 0, 0.4, -0.4)) / 255.0
    assert_coded_pixels(between.astype(dtype), rgb)


def test_numpy_uint16_rgb_is_scaled(codec_ss):
    rgb = rgb_array(H, W)
    wide = rgb.astype(np.uint16) * 257
    assert_round_trip(codec_ss, wide, "RGB", (W, H))
    assert code(codec_ss, wide) == code(codec_ss, rgb)


def test_numpy_non_contiguous_views(codec_ss):
    rgb = rgb_array(H, 2 * W)
    view = rgb[::-1, ::2]  # negative and non-unit strides
    assert not view.flags.c_contiguous
    assert code(codec_ss, view) == code(codec_ss, np.ascontiguousarray(view))
    bgr_view = rgb[:, :W, ::-1]
    assert code(codec_ss, bgr_view) == code(codec_ss, np.ascontiguousarray(bgr_view))


# -- torch tensors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["HW", "1HW", "11HW"])
def test_tensor_gray_layouts(codec_ss, layout):
    gray = gray_array(H, W)
    t = torch.from_numpy(gray.astype(np.float32) / 255.0)
    t = {"HW": t, "1HW": t[None], "11HW": t[None, None]}[layout]
    assert_round_trip(codec_ss, t, "L", (W, H))
    assert code(codec_ss, t) == code(codec_ss, gray)


@pytest.mark.parametrize("layout", ["CHW", "1CHW"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8])
def test_tensor_rgb_layouts(codec_ss, layout, dtype):
    rgb = rgb_array(H, W)
    t = torch.from_numpy(rgb).permute(2, 0, 1)
    t = t.to(dtype) / 255.0 if dtype.is_floating_point else t.to(dtype)
    if layout == "1CHW":
        t = t[None]
    assert_round_trip(codec_ss, t, "RGB", (W, H))
    assert code(codec_ss, t) == code(codec_ss, rgb)


def test_tensor_requiring_grad_and_half_precision(codec_ss):
    gray = (np.arange(H * W).reshape(H, W) % 256).astype(np.uint8)
    exact = torch.from_numpy(gray.astype(np.float32) / 255.0)
    assert code(codec_ss, exact.clone().requires_grad_(True)) == code(codec_ss, gray)
    assert_coded_pixels(exact.clone().requires_grad_(True), gray)
    # half precision loses exactness: compare with what the half values are in float64
    half = exact.half()
    expected = np.rint(half.double().numpy() * 255.0).astype(np.uint8)
    assert code(codec_ss, half) == code(codec_ss, expected)
    assert_coded_pixels(half, expected)
    expected_bf16 = np.rint(exact.bfloat16().double().numpy() * 255.0).astype(np.uint8)
    assert code(codec_ss, exact.bfloat16()) == code(codec_ss, expected_bf16)
    assert_coded_pixels(exact.bfloat16(), expected_bf16)


# -- refused inputs --------------------------------------------------------------------------------


def _bad_inputs() -> dict[str, object]:
    rgb = rgb_array(8, 8)
    nan = (rgb / 255.0).astype(np.float32)
    nan[2, 3, 1] = np.nan
    return {
        "numpy 4 channels": np.zeros((8, 8, 4), np.uint8),
        "numpy 2 channels": np.zeros((8, 8, 2), np.uint8),
        "numpy 0 channels": np.zeros((8, 8, 0), np.uint8),
        "numpy 1-d": np.zeros(8, np.uint8),
        "numpy 0-d": np.array(3, np.uint8),
        "numpy 4-d": np.zeros((1, 8, 8, 3), np.uint8),
        "numpy empty": np.zeros((0, 8), np.uint8),
        "numpy empty rgb": np.zeros((8, 0, 3), np.uint8),
        "numpy NaN": nan,
        "numpy inf": np.full((8, 8), np.inf),
        "numpy float above 1": np.full((8, 8, 3), 1.0001),
        "numpy float below 0": np.full((8, 8), -0.001),
        "numpy float 0..255": rgb.astype(np.float32),
        "numpy int32": rgb.astype(np.int32),
        "numpy int64": rgb.astype(np.int64),
        "numpy bool": rgb > 127,
        "numpy complex": rgb.astype(np.complex64),
        "numpy object": rgb.astype(object),
        "tensor batch 2": torch.zeros(2, 3, 8, 8),
        "tensor batch 0": torch.zeros(0, 3, 8, 8),
        "tensor 2 channels": torch.zeros(2, 8, 8),
        "tensor 4 channels": torch.zeros(1, 4, 8, 8),
        "tensor HWC": torch.zeros(8, 8, 3),
        "tensor 5-d": torch.zeros(1, 1, 3, 8, 8),
        "tensor 1-d": torch.zeros(8),
        "tensor empty": torch.zeros(3, 0, 8),
        "tensor NaN": torch.full((3, 8, 8), float("nan")),
        "tensor above 1": torch.full((1, 8, 8), 2.0),
        "tensor int64": torch.zeros(3, 8, 8, dtype=torch.int64),
        "tensor bool": torch.zeros(8, 8, dtype=torch.bool),
        "PIL mode F": Image.fromarray(np.zeros((8, 8), np.float32)),
        "PIL empty": Image.new("RGB", (0, 5)),
        "list": rgb.tolist(),
        "None": None,
        "bytes": rgb.tobytes(),
        "path string": "image.png",
    }


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_bad_inputs_raise_image_error(codec_ss, case):
    image = _bad_inputs()[case]
    with pytest.raises(ImageError):
        codec_ss.compress(image)


def test_image_error_is_an_evc_error():
    assert issubclass(ImageError, evc.EVCError)


# -- sizes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(1, 1), (1, 200), (200, 1), (63, 65), (64, 64), (65, 129)])
def test_sizes_round_trip(codec_ss, height, width):
    assert_round_trip(codec_ss, rgb_array(height, width, seed=height + width), "RGB", (width, height))


@pytest.mark.parametrize("height, width", [(1, 1), (65, 129)])
def test_gray_sizes_round_trip(codec_ss, height, width):
    assert_round_trip(codec_ss, gray_array(height, width), "L", (width, height))


def test_transposed_images_are_not_confused(codec_ss):
    rgb = rgb_array(30, 50)
    wide = codec_ss.decompress(code(codec_ss, rgb))
    tall = codec_ss.decompress(code(codec_ss, np.ascontiguousarray(rgb.transpose(1, 0, 2))))
    assert wide.size == (50, 30) and tall.size == (30, 50)


# -- every mode Pillow has, and the bit depths files come in (issue 21 item 9) ----------------------

_KIND_SOURCES = {"L": lambda: Image.fromarray(gray_array(H, W), "L"), "RGB": lambda: Image.fromarray(rgb_array(H, W))}


def _opaque_image(mode: str) -> Image.Image:
    """An image of ``mode`` made from a gray or colour source, every pixel fully opaque."""
    if mode in evc.image.GRAY_MODES or mode == "F":
        source = _KIND_SOURCES["L"]()
        return source.convert("LA").convert("La") if mode == "La" else source.convert(mode)
    return _KIND_SOURCES["RGB"]().convert(mode)


def test_every_pillow_mode_has_a_kind():
    """A mode a newer Pillow adds fails here until evc decides what it codes it as."""
    assert set(Image.MODES) <= evc.image.GRAY_MODES | evc.image.COLOUR_MODES | {"F"}
    assert not evc.image.GRAY_MODES & evc.image.COLOUR_MODES


@pytest.mark.parametrize("mode", sorted(set(Image.MODES) | evc.image.WIDE_GRAY_MODES))
def test_every_mode_decodes_to_its_kind(codec_ss, mode):
    image = _opaque_image(mode)
    assert image.mode == mode
    if mode == "F":
        with pytest.raises(ImageError, match=r"\(mode F\)"):
            codec_ss.compress(image)
        return
    kind = "L" if mode in evc.image.GRAY_MODES else "RGB"
    assert_round_trip(codec_ss, image, kind, (W, H))


@pytest.mark.parametrize("mode", sorted(evc.image.ALPHA_MODES | {"P"}))
def test_every_mode_with_transparency_keeps_its_alpha(codec_ss, mode):
    image = _opaque_image(mode)
    if mode == "P":
        image.info["transparency"] = image.getpixel((2, 3))
    else:
        bands = list(image.split())
        alpha = np.asarray(bands[-1]).copy()
        alpha[2, 3] = 0
        bands[-1] = Image.fromarray(alpha, "L")
        # Pillow merges bands only into straight-alpha modes; "a" modes are premultiplied alike here
        image = Image.merge(mode.replace("a", "A"), bands)
        image = image.convert(mode) if mode != image.mode else image
    alpha = np.full((H, W), 255, np.uint8)
    alpha[2, 3] = 0
    if mode == "P":  # every pixel of the transparent index's colour
        alpha = np.where(np.asarray(image) == image.info["transparency"], 0, 255).astype(np.uint8)
    decoded = "LA" if mode in ("LA", "La") else "RGBA"
    assert_alpha_round_trip(codec_ss, image, decoded, alpha)


def _png(pixels: np.ndarray, colour_type: int, depth: int, trns: bytes | None = None) -> bytes:
    """A PNG file written by hand: Pillow writes no 16-bit colour, 16-bit gray+alpha or 2-bit files.
    ``pixels`` (H, W) or (H, W, C) of values in the file's depth; depths below 8 are packed."""
    height, width = pixels.shape[:2]
    if depth < 8:
        per_byte = 8 // depth
        padded_width = -(-width // per_byte) * per_byte
        values = np.zeros((height, padded_width), np.uint8)
        values[:, :width] = pixels
        shifts = np.arange(per_byte - 1, -1, -1) * depth
        packed = (values.reshape(height, -1, per_byte) << shifts).sum(axis=2).astype(np.uint8)
        rows = [packed[y].tobytes() for y in range(height)]
    else:
        dtype = ">u2" if depth == 16 else "u1"
        rows = [pixels[y].astype(dtype).tobytes() for y in range(height)]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    body = chunk(b"IHDR", header) + (chunk(b"tRNS", trns) if trns is not None else b"")
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IDAT", zlib.compress(b"".join(b"\0" + r for r in rows))) + chunk(b"IEND", b"")


def _png_files() -> dict[str, tuple[bytes, str, np.ndarray, np.ndarray | None]]:
    """PNG files of every bit depth and kind: (file, decoded mode, the 8-bit pixels it must code like,
    the alpha plane it decodes with or None). 16-bit gray is rounded (v / 257); Pillow keeps the high
    bytes of 16-bit colour and gray+alpha (a colour key matches on them), and scales 2-bit gray by 85."""
    rng = np.random.default_rng(7)
    gray16 = rng.integers(1, 65535, (H, W)) | 1  # odd: no pixel is 2
    rgb16 = rng.integers(1, 65535, (H, W, 3)) | 1
    opaque, clear = np.full((H, W, 1), 65535), np.full((H, W, 1), 65535)
    clear[4, 5] = 0
    levels = rng.integers(0, 4, (H, W))  # 2-bit gray
    levels[0, 0] = 3
    gray8 = np.rint(gray16 / 257).astype(np.uint8)
    high_gray, high_rgb = (gray16 >> 8).astype(np.uint8), (rgb16 >> 8).astype(np.uint8)

    def keyed(hidden: np.ndarray) -> np.ndarray:
        return np.where(hidden, 0, 255).astype(np.uint8)

    cleared = keyed(clear[:, :, 0] == 0)
    rgb_key = (high_rgb == high_rgb[3, 3]).all(axis=2)
    return {
        "gray 16-bit": (_png(gray16, 0, 16), "L", gray8, None),
        "gray 16-bit, colour key unused": (_png(gray16, 0, 16, struct.pack(">H", 2)), "L", gray8, None),
        "gray 16-bit, colour key used": (_png(gray16, 0, 16, struct.pack(">H", int(gray16[1, 1]))), "LA", gray8,
                                         keyed(gray16 == gray16[1, 1])),
        "gray 2-bit": (_png(levels, 0, 2), "L", (levels * 85).astype(np.uint8), None),
        "gray 2-bit, colour key used": (_png(levels, 0, 2, struct.pack(">H", 3)), "LA",
                                        (levels * 85).astype(np.uint8), keyed(levels == 3)),
        "gray 1-bit, colour key used": (_png(levels > 1, 0, 1, struct.pack(">H", 1)), "LA",
                                        ((levels > 1) * 255).astype(np.uint8), keyed(levels > 1)),
        "gray+alpha 16-bit opaque": (_png(np.dstack([gray16[:, :, None], opaque]), 4, 16), "L", high_gray, None),
        "gray+alpha 16-bit transparent": (_png(np.dstack([gray16[:, :, None], clear]), 4, 16), "LA", high_gray,
                                          cleared),
        "RGB 16-bit": (_png(rgb16, 2, 16), "RGB", high_rgb, None),
        "RGB 16-bit, colour key unused": (_png(rgb16, 2, 16, struct.pack(">HHH", 2, 2, 2)), "RGB", high_rgb, None),
        "RGB 16-bit, colour key used": (_png(rgb16, 2, 16, struct.pack(">HHH", *map(int, rgb16[3, 3]))), "RGBA",
                                        high_rgb, keyed(rgb_key)),
        "RGBA 16-bit opaque": (_png(np.dstack([rgb16, opaque]), 6, 16), "RGB", high_rgb, None),
        "RGBA 16-bit transparent": (_png(np.dstack([rgb16, clear]), 6, 16), "RGBA", high_rgb, cleared),
    }


@pytest.mark.parametrize("case", list(_png_files()))
@pytest.mark.parametrize("opened", ["path", "Image.open"])
def test_png_of_every_bit_depth_decodes_to_its_kind(codec_ss, tmp_path, case, opened):
    """A path and an image from Image.open (not yet loaded) alike; Pillow reads 16-bit gray+alpha as
    RGBA and keeps a colour key in the file's units, which evc puts right."""
    data, decoded_mode, pixels8, alpha = _png_files()[case]
    path = tmp_path / "in.png"
    path.write_bytes(data)
    image = path if opened == "path" else Image.open(path)
    result = codec_ss.encode(image, 0.5)
    assert result.reconstruction.mode == decoded_mode
    decoded = codec_ss.decompress(result.data)
    assert decoded.mode == decoded_mode
    # the right pixels too, not only the right mode (a wrong band or byte would still decode to it)
    if alpha is None:
        assert result.data == code(codec_ss, pixels8)
    else:
        assert parse(result.data)[1] == parse(code(codec_ss, pixels8))[1]
        assert np.array_equal(np.asarray(decoded.getchannel("A")), alpha)
    assert_coded_pixels(path if opened == "path" else Image.open(path), pixels8)  # unloaded again


def _wide_warnings(work) -> list[str]:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        work()
    return [str(w.message) for w in caught if "bits per channel" in str(w.message)]


@pytest.mark.parametrize("case", list(_png_files()))
def test_16bit_input_warns_once_that_it_is_coded_at_8_bits(codec_ss, tmp_path, case):
    """Issue 38: a 16-bit file, however it reaches the codec (path, Image.open, bytes), warns exactly
    once; 8-bit (and 2-bit) files never do."""
    data = _png_files()[case][0]
    path = tmp_path / "in.png"
    path.write_bytes(data)
    expected = 1 if "16-bit" in case else 0
    for source in (lambda: path, lambda: Image.open(path), lambda: data, lambda: io.BytesIO(data)):
        messages = _wide_warnings(lambda: evc.image.to_input(source()))
        assert len(messages) == expected, messages
        assert all("evc codes it at 8 bits per channel" in m for m in messages)


def _tiff16(pixels: np.ndarray) -> bytes:
    """An uncompressed 16-bit RGB TIFF written by hand (Pillow writes none); ``pixels`` (H, W, 3)."""
    height, width, _ = pixels.shape
    data = pixels.astype("<u2").tobytes()
    entries = [(256, width), (257, height), (258, None), (259, 1), (262, 2), (273, None), (277, 3), (278, height),
               (279, len(data))]
    bits_at = 8 + 2 + 12 * len(entries) + 4
    out = b"II*\0" + struct.pack("<IH", 8, len(entries))
    for tag, value in entries:
        if tag in (258, 273):  # BitsPerSample (3 shorts, stored apart), StripOffsets
            out += struct.pack("<HHII", tag, 3 if tag == 258 else 4, 3 if tag == 258 else 1,
                               bits_at if tag == 258 else bits_at + 6)
        else:
            out += struct.pack("<HHIHH", tag, 3, 1, value, 0) if value < 65536 else struct.pack("<HHII", tag, 4, 1, value)
    return out + struct.pack("<I", 0) + struct.pack("<HHH", 16, 16, 16) + data


def test_16bit_ppm_tiff_and_uint16_arrays_warn_and_8bit_inputs_do_not(codec_ss):
    ppm = b"P6 3 2 65535\n" + np.arange(18, dtype=">u2").tobytes()
    assert len(_wide_warnings(lambda: evc.image.to_input(ppm))) == 1
    wide = (np.arange(18).reshape(2, 3, 3) * 3000).astype(np.uint16)
    assert Image.open(io.BytesIO(_tiff16(wide))).mode == "RGB"  # read as its high bytes
    assert len(_wide_warnings(lambda: evc.image.to_input(_tiff16(wide)))) == 1
    assert len(_wide_warnings(lambda: evc.image.to_input(np.full((4, 4, 3), 40000, np.uint16)))) == 1
    assert len(_wide_warnings(lambda: evc.image.to_input(Image.fromarray(np.full((4, 4), 40000, np.uint16))))) == 1
    assert _wide_warnings(lambda: evc.image.to_input(b"P6 3 2 255\n" + bytes(18))) == []
    assert _wide_warnings(lambda: evc.image.to_input(rgb_array(4, 4))) == []


def test_an_image_passed_unloaded_is_left_as_it_was(codec_ss, tmp_path):
    data = _png_files()["gray 2-bit, colour key used"][0]
    (tmp_path / "in.png").write_bytes(data)
    image = Image.open(tmp_path / "in.png")
    assert codec_ss.decompress(codec_ss.compress(image)).mode == "LA"
    assert image.info["transparency"] == 3  # the file's own units, as Pillow read them


def test_readme_colour_table_names_every_mode_and_its_decoded_mode():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("### Colour modes", 1)[1].split("| input mode (Pillow) |", 1)[1].split("\n\n", 1)[0]
    modes = set(Image.MODES) | evc.image.WIDE_GRAY_MODES
    listed: dict[str, set[str]] = {}
    for row in table.splitlines()[2:]:
        first, _, decoded = [cell.strip() for cell in row.strip("|").split("|")]
        for mode in modes & set(re.findall(r"[A-Za-z0-9;]+", first)):
            listed.setdefault(mode, set()).add(decoded.strip("`"))
    assert set(listed) == modes
    for mode, decoded in listed.items():
        kind = "L" if mode in evc.image.GRAY_MODES else "RGB" if mode in evc.image.COLOUR_MODES else ""
        assert decoded == {kind}, mode

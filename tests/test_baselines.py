"""Live baseline codecs (evc.eval.baselines): real files, honest sizes, sane rate sweeps."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from evc.eval.baselines import BaselineCodec, baseline_codecs, unavailable_baselines

ALL_KEYS = ("jpeg420", "jpeg444", "webp", "avif", "jxl", "jpeg2000", "heic")
CODECS = baseline_codecs()
KODAK = Path("/work/shared/data/kodak")
# What Pillow calls each format, to check a file is really what its extension says.
PIL_FORMAT = {"jpeg420": "JPEG", "jpeg444": "JPEG", "webp": "WEBP", "avif": "AVIF",
              "jpeg2000": "JPEG2000", "heic": "HEIF"}


def image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus noise: enough texture that rate depends on the setting."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([np.sin(xx / (6.0 + c) + c) * np.cos(yy / (4.0 + c) - c) for c in range(3)], -1)
    return np.clip(base * 90 + 128 + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def codec(key: str) -> BaselineCodec:
    if key not in CODECS:
        pytest.skip(f"{key}: {unavailable_baselines().get(key, 'not available')}")
    return CODECS[key]


def test_registry_covers_every_key() -> None:
    missing = unavailable_baselines()
    assert set(CODECS) <= set(ALL_KEYS)
    assert set(CODECS) | set(missing) == set(ALL_KEYS)
    assert not set(CODECS) & set(missing)
    for key, reason in missing.items():
        assert reason.strip() and "\n" not in reason, key
    for key, c in CODECS.items():
        assert c.key == key and c.name and c.setting_name and c.extension.startswith(".")
        assert 8 <= len(c.settings) <= 12, key
        assert len(set(c.settings)) == len(c.settings), key


@pytest.mark.parametrize("key", ALL_KEYS)
def test_versions_are_strings(key: str) -> None:
    v = codec(key).versions()
    assert v and all(isinstance(k, str) and k and isinstance(s, str) and s for k, s in v.items())
    assert "unknown" not in v.values() and "?" not in codec(key).name


@pytest.mark.parametrize("key", ALL_KEYS)
def test_rate_sweep(key: str) -> None:
    c = codec(key)
    rgb = image(64, 96)
    picks = [c.settings[0], c.settings[len(c.settings) // 2], c.settings[-1]]
    sizes, quality = [], []
    for s in picks:
        data = c.encode(rgb, s)
        assert isinstance(data, bytes)
        assert c.encode(rgb, s) == data, f"{key} at {s} is not deterministic"
        out = c.decode(data)
        assert out.shape == rgb.shape and out.dtype == np.uint8
        sizes.append(len(data))
        quality.append(psnr(rgb, out))
    assert sizes[0] <= sizes[1] <= sizes[2] and sizes[0] < sizes[2], (key, sizes)
    assert quality[0] <= quality[1] <= quality[2], (key, quality)
    assert quality[2] > 25, (key, quality)  # the top setting is a good-quality image, not garbage


@pytest.mark.parametrize("key", ALL_KEYS)
def test_settings_are_ordered_by_rate(key: str) -> None:
    """Every step of the sweep costs at least as many bytes as the one before."""
    c = codec(key)
    rgb = image(64, 96, seed=4)
    sizes = [len(c.encode(rgb, s)) for s in c.settings]
    assert all(a <= b for a, b in zip(sizes, sizes[1:])) and sizes[0] < sizes[-1], (key, sizes)


def _open_file(key: str, path: Path) -> np.ndarray:
    """Read a file the way a user would, not through the baseline's own decode()."""
    if key == "jxl":
        import imagecodecs

        return np.asarray(imagecodecs.imread(str(path)))
    if key == "heic":
        import pillow_heif

        pillow_heif.register_heif_opener()
    with Image.open(path) as im:
        assert im.format == PIL_FORMAT[key]
        return np.asarray(im.convert("RGB"))


@pytest.mark.parametrize("key", ALL_KEYS)
def test_bytes_are_a_complete_file(key: str, tmp_path: Path) -> None:
    c = codec(key)
    rgb = image(48, 80, seed=1)
    data = c.encode(rgb, c.settings[len(c.settings) // 2])
    path = tmp_path / f"img{c.extension}"
    path.write_bytes(data)
    assert path.stat().st_size == len(data)
    np.testing.assert_array_equal(_open_file(key, path), c.decode(data))


def _av1c_chroma(data: bytes) -> tuple[int, int, int]:
    """(seq_profile, subsampling_x, subsampling_y) from the AVIF file's av1C box."""
    i = data.index(b"av1C") + 4  # after the box type: marker/version, profile/level, flags
    return data[i + 1] >> 5, (data[i + 2] >> 3) & 1, (data[i + 2] >> 2) & 1


def test_settings_reach_the_encoders() -> None:
    """Options a library could silently ignore really show up in the files."""
    rgb = image(32, 48, seed=2)
    for key, want in (("jpeg420", 2), ("jpeg444", 0)):  # Pillow: 2 = 4:2:0, 0 = 4:4:4
        if key in CODECS:
            with Image.open(io.BytesIO(CODECS[key].encode(rgb, 50))) as im:
                assert JpegImagePlugin.get_sampling(im) == want, key
    if "avif" in CODECS:
        assert _av1c_chroma(CODECS["avif"].encode(rgb, 50)) == (1, 0, 0)  # High profile, 4:4:4
    if "jpeg2000" in CODECS:  # a .jp2 file (signature box), not a bare codestream
        assert CODECS["jpeg2000"].encode(rgb, 20)[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n"
    if "heic" in CODECS:
        import pillow_heif

        heif = pillow_heif.open_heif(io.BytesIO(CODECS["heic"].encode(rgb, 50)))
        assert heif.info.get("chroma") == 444


@pytest.mark.parametrize("key", ALL_KEYS)
def test_odd_size(key: str) -> None:
    c = codec(key)
    rgb = image(17, 33, seed=3)
    # A flat image of the mean colour: any decode of the right pixels beats it clearly, while
    # swapped width/height, a wrong row stride or swapped channels fall below it. (JPEG 2000
    # gets only ~20 dB here: its ratios count the headers, so every setting gives the same
    # smallest file OpenJPEG can write.)
    flat = np.broadcast_to(rgb.mean(axis=(0, 1)).round().astype(np.uint8), rgb.shape)
    for s in (c.settings[0], c.settings[-1]):  # both ends of the sweep, each checked
        out = c.decode(c.encode(rgb, s))
        assert out.shape == (17, 33, 3) and out.dtype == np.uint8
        assert psnr(rgb, out) > psnr(rgb, flat) + 3, (key, s)


def test_rejects_non_rgb_input() -> None:
    c = next(iter(CODECS.values()))
    for bad in (image(8, 8).astype(np.float32), image(8, 8)[:, :, 0], np.zeros((8, 8, 4), np.uint8)):
        with pytest.raises(ValueError):
            c.encode(bad, c.settings[0])


def test_import_without_optional_libraries() -> None:
    # A fresh interpreter where imagecodecs and pillow_heif cannot be imported.
    code = (
        "import sys; sys.modules['imagecodecs'] = None; sys.modules['pillow_heif'] = None\n"
        "from evc.eval.baselines import baseline_codecs, unavailable_baselines\n"
        "print(sorted(baseline_codecs()), unavailable_baselines())"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "'jxl': 'imagecodecs not installed'" in run.stdout
    assert "'heic': 'pillow-heif not installed'" in run.stdout
    assert "'jpeg420'" in run.stdout.split("]")[0]


@pytest.mark.skipif(not (KODAK / "kodim23.png").exists(), reason="Kodak images not present")
def test_kodak_rate_range() -> None:
    """On kodim23 (an easy image) the sweep still spans < 0.3 to > 1.0 bits per pixel."""
    with Image.open(KODAK / "kodim23.png") as im:
        rgb = np.asarray(im.convert("RGB"))
    pixels = rgb.shape[0] * rgb.shape[1]
    assert CODECS
    for key, c in CODECS.items():
        low = len(c.encode(rgb, c.settings[0])) * 8 / pixels
        high = len(c.encode(rgb, c.settings[-1])) * 8 / pixels
        assert low < 0.3 and high > 1.0, (key, low, high)

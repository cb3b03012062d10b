"""Standard image codecs to compare EVC against, run live through their maintained libraries.

Each baseline turns an RGB uint8 array into the complete file a normal viewer opens (JPEG,
WebP, AVIF, JPEG XL, JPEG 2000 as .jp2, HEIC), so ``len(encode(...))`` is the honest size to
count, and decodes it back with the same library's ordinary decoder.

``baseline_codecs()`` lists the baselines whose library works here; ``unavailable_baselines()``
says why the others are missing. Pillow (JPEG, WebP, AVIF, JPEG 2000) is a dependency of evc;
imagecodecs (JPEG XL) and pillow-heif (HEIC) are optional and only imported when asked for.

Rate settings (8 to 12 per codec, lowest rate first) were chosen to span about 0.1 to 1.5 bits
per pixel on Kodak: we encoded kodim01, 05, 13, 15, 20 and 23 at a dense sweep of each setting
and kept values roughly evenly spaced in log-rate, from about 0.1 bpp (JPEG 4:4:4 cannot go
below about 0.14) to past 1.5 bpp mean, far enough that the easiest images (kodim23) still pass
1 bpp. We then encoded all 24 Kodak images at the chosen settings: on every image both rate and
PSNR rise with every step. The bpp ranges noted below are means over those 24 images.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import PIL
from PIL import Image, features

__all__ = ["BaselineCodec", "baseline_codecs", "unavailable_baselines", "BASELINE_KEYS"]

#: Every baseline this module knows, in the order reports list them.
BASELINE_KEYS: tuple[str, ...] = ("jpeg420", "jpeg444", "webp", "avif", "jxl", "jpeg2000", "heic")

# --- Rate settings (lowest rate first). See the module docstring for how they were measured. ---
# JPEG starts at quality 2: libjpeg clamps nearly every table entry to 255 there, so quality 1
# gives the same size.
_JPEG420_QUALITIES = (2, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 85)  # 0.09 .. 1.84 bpp
_JPEG444_QUALITIES = (2, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80)  # 0.14 .. 1.81 bpp
_WEBP_QUALITIES = (0, 5, 10, 20, 30, 45, 60, 75, 80, 85, 90, 92)  # 0.10 .. 2.22 bpp
_AVIF_QUALITIES = (5, 15, 25, 35, 45, 55, 60, 65, 70, 75, 80, 85)  # 0.08 .. 1.95 bpp
# JPEG XL butteraugli distance: smaller is better quality, so rates rise as distance falls.
# 25 is libjxl's maximum; 20 is left out because it cost more bits than 15 on kodim05.
_JXL_DISTANCES = (25.0, 15.0, 10.0, 7.0, 5.0, 4.0, 3.0, 2.5, 2.0, 1.5, 1.25, 1.0)  # 0.13 .. 1.88 bpp
# JPEG 2000 compression ratio against the raw 24-bit image: OpenJPEG hits bpp = 24 / ratio
# to within 1%, the same on every image (so 16 -> 1.5 bpp everywhere). The budget counts the
# whole file, headers included, so on tiny images (64x96) the highest ratios all give the
# same ~270-byte minimal file.
_JPEG2000_RATIOS = (240, 160, 120, 80, 64, 48, 40, 32, 24, 20, 16)  # 0.10 .. 1.50 bpp
# x265's rate climbs steeply with quality (50 -> 1.2 bpp, 75 -> about 4), so the sweep stops at 60.
_HEIC_QUALITIES = (10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60)  # 0.07 .. 1.99 bpp


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    """Baselines take exactly what EVC takes: an (H, W, 3) uint8 RGB array."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(
            f"expected an (H, W, 3) uint8 RGB array, got {getattr(rgb, 'shape', type(rgb))} "
            f"{getattr(rgb, 'dtype', '')}"
        )
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"empty image {rgb.shape}")
    return np.ascontiguousarray(rgb)


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    im.load()
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy()


@dataclass(frozen=True)
class BaselineCodec:
    """One standard codec at a fixed configuration, swept over ``settings``."""

    key: str
    name: str
    settings: tuple
    setting_name: str
    extension: str  # file extension a viewer expects, e.g. ".jpg"
    _encode: Callable[[np.ndarray, Any], bytes] = field(repr=False, compare=False)
    _decode: Callable[[bytes], np.ndarray] = field(repr=False, compare=False)
    _versions: Callable[[], dict[str, str]] = field(repr=False, compare=False)

    def encode(self, rgb: np.ndarray, setting: Any) -> bytes:
        """The complete, standalone file for ``rgb`` at ``setting``."""
        return bytes(self._encode(_check_rgb(rgb), setting))

    def decode(self, data: bytes) -> np.ndarray:
        """Decoded (H, W, 3) uint8 RGB pixels of a file made by ``encode``."""
        out = self._decode(bytes(data))
        if out.dtype != np.uint8 or out.ndim != 3 or out.shape[2] != 3:
            raise ValueError(f"{self.key}: decoder returned {out.shape} {out.dtype}, not RGB uint8")
        return out

    def versions(self) -> dict[str, str]:
        """Versions of the libraries that actually encode and decode, e.g. {"Pillow": "13.0.0"}."""
        return dict(self._versions())


# ----------------------------------------------------------------------------------------------
# Pillow-based codecs (JPEG, WebP, AVIF, JPEG 2000)


def _pil_encoder(fmt: str, **fixed: Any) -> Callable[..., bytes]:
    def encode(rgb: np.ndarray, **params: Any) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format=fmt, **fixed, **params)
        return buf.getvalue()

    return encode


def _pil_decoder(fmt: str) -> Callable[[bytes], np.ndarray]:
    def decode(data: bytes) -> np.ndarray:
        # Restricting the formats makes a wrong file type fail loudly instead of decoding anyway.
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            return _to_rgb_array(im)

    return decode


def _pil_versions(*libs: tuple[str, str]) -> Callable[[], dict[str, str]]:
    def versions() -> dict[str, str]:
        out = {"Pillow": PIL.__version__}
        for label, feature in libs:
            out[label] = features.version(feature) or "unknown"
        return out

    return versions


def _jpeg_lib() -> tuple[str, str]:
    # Pillow's "jpg" feature reports the libjpeg API version (e.g. 6.2); the turbo feature has
    # the real library version when Pillow is built against libjpeg-turbo.
    if features.check_feature("libjpeg_turbo"):
        return "libjpeg-turbo", "libjpeg_turbo"
    return "libjpeg", "jpg"


def _make_jpeg(key: str) -> BaselineCodec:
    sub, sub_name, qualities = {
        "jpeg420": (2, "4:2:0", _JPEG420_QUALITIES),
        "jpeg444": (0, "4:4:4", _JPEG444_QUALITIES),
    }[key]
    label, feature = _jpeg_lib()
    enc = _pil_encoder("JPEG", subsampling=sub, optimize=True)
    return BaselineCodec(
        key=key,
        name=f"JPEG {sub_name} optimized Huffman ({label} {features.version(feature)} via Pillow {PIL.__version__})",
        settings=qualities,
        setting_name="quality",
        extension=".jpg",
        _encode=lambda rgb, q: enc(rgb, quality=int(q)),
        _decode=_pil_decoder("JPEG"),
        _versions=_pil_versions((label, feature)),
    )


def _make_webp() -> BaselineCodec:
    enc = _pil_encoder("WEBP", lossless=False, method=6)
    return BaselineCodec(
        key="webp",
        name=f"WebP lossy 4:2:0 method 6 (libwebp {features.version('webp')} via Pillow {PIL.__version__})",
        settings=_WEBP_QUALITIES,
        setting_name="quality",
        extension=".webp",
        _encode=lambda rgb, q: enc(rgb, quality=int(q)),
        _decode=_pil_decoder("WEBP"),
        _versions=_pil_versions(("libwebp", "webp")),
    )


def _avif_codec_versions() -> dict[str, str]:
    """libaom / dav1d versions as libavif reports them ("dav1d [dec]:1.5.3-..., aom [enc]:3.14.1")."""
    try:
        from PIL import _avif  # Pillow's own extension; has no public version API for AV1 libs
    except ImportError:
        return {}
    out: dict[str, str] = {}
    for part in _avif.codec_versions().split(","):
        name, _, version = part.strip().partition(":")
        lib = name.split(" ")[0].strip()
        if lib and version:
            out[{"aom": "libaom", "dav1d": "dav1d"}.get(lib, lib)] = version.strip()
    return out


def _make_avif() -> BaselineCodec:
    # codec="aom" pins the encoder so a build that also has rav1e/SVT cannot silently switch.
    enc = _pil_encoder("AVIF", codec="aom", subsampling="4:4:4", speed=6)
    aom = _avif_codec_versions().get("libaom", "?")

    def versions() -> dict[str, str]:
        return {"Pillow": PIL.__version__, "libavif": features.version("avif") or "unknown",
                **_avif_codec_versions()}

    return BaselineCodec(
        key="avif",
        name=f"AVIF 4:4:4 speed 6 (libaom {aom}, libavif {features.version('avif')} via Pillow {PIL.__version__})",
        settings=_AVIF_QUALITIES,
        setting_name="quality",
        extension=".avif",
        _encode=lambda rgb, q: enc(rgb, quality=int(q)),
        _decode=_pil_decoder("AVIF"),
        _versions=versions,
    )


def _make_jpeg2000() -> BaselineCodec:
    # 9/7 irreversible wavelet plus the colour transform: Pillow's defaults (5/3, no MCT) are
    # lossless-oriented and 2-4 dB worse at equal rate. Rate control by target compression ratio
    # hits the byte budget directly, which covers the bpp range more evenly than dB targets.
    enc = _pil_encoder("JPEG2000", irreversible=True, mct=1, quality_mode="rates", no_jp2=False)
    return BaselineCodec(
        key="jpeg2000",
        name=f"JPEG 2000 9/7 + MCT, .jp2 (OpenJPEG {features.version('jpg_2000')} via Pillow {PIL.__version__})",
        settings=_JPEG2000_RATIOS,
        setting_name="compression ratio",
        extension=".jp2",
        _encode=lambda rgb, ratio: enc(rgb, quality_layers=[float(ratio)]),
        _decode=_pil_decoder("JPEG2000"),
        _versions=_pil_versions(("OpenJPEG", "jpg_2000")),
    )


# ----------------------------------------------------------------------------------------------
# JPEG XL via imagecodecs (optional)


def _jxl_unavailable() -> str | None:
    try:
        import imagecodecs
    except ImportError:
        return "imagecodecs not installed"
    if not getattr(getattr(imagecodecs, "JPEGXL", None), "available", False):
        return f"imagecodecs {imagecodecs.__version__} built without JPEG XL"
    return None


def _make_jxl() -> BaselineCodec:
    import imagecodecs

    def encode(rgb: np.ndarray, distance: float) -> bytes:
        # A bare codestream is a complete .jxl file; numthreads does not change the output.
        return imagecodecs.jpegxl_encode(rgb, distance=float(distance), effort=7)

    def decode(data: bytes) -> np.ndarray:
        out = np.asarray(imagecodecs.jpegxl_decode(data))
        if out.ndim == 2:  # a grey file would come back without a channel axis
            out = np.repeat(out[:, :, None], 3, axis=2)
        return out[:, :, :3].astype(np.uint8, copy=False)

    def versions() -> dict[str, str]:
        # jpegxl_version() reads like "libjxl 0.11.2".
        lib = imagecodecs.jpegxl_version().replace("libjxl", "").strip()
        return {"imagecodecs": imagecodecs.__version__, "libjxl": lib}

    return BaselineCodec(
        key="jxl",
        name=f"JPEG XL effort 7 (libjxl {versions()['libjxl']} via imagecodecs {imagecodecs.__version__})",
        settings=_JXL_DISTANCES,
        setting_name="butteraugli distance",
        extension=".jxl",
        _encode=encode,
        _decode=decode,
        _versions=versions,
    )


# ----------------------------------------------------------------------------------------------
# HEIC via pillow-heif (optional)


def _heic_unavailable() -> str | None:
    try:
        import pillow_heif
    except ImportError:
        return "pillow-heif not installed"
    info = pillow_heif.libheif_info()
    if "x265" not in info.get("encoders", {}):
        return f"pillow-heif {pillow_heif.__version__}: libheif has no x265 encoder"
    if not info.get("decoders"):
        return f"pillow-heif {pillow_heif.__version__}: libheif has no HEVC decoder"
    return None


def _make_heic() -> BaselineCodec:
    import pillow_heif

    def encode(rgb: np.ndarray, quality: int) -> bytes:
        # pillow_heif's own API (not the Pillow plugin) leaves Pillow's global registry alone.
        buf = io.BytesIO()
        h, w = rgb.shape[:2]
        pillow_heif.encode("RGB", (w, h), rgb.tobytes(), buf, quality=int(quality), chroma=444)
        return buf.getvalue()

    def decode(data: bytes) -> np.ndarray:
        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
        return _to_rgb_array(heif.to_pillow())

    def versions() -> dict[str, str]:
        info = pillow_heif.libheif_info()
        out = {"pillow-heif": pillow_heif.__version__, "libheif": info.get("libheif", "unknown")}
        for desc in list(info.get("encoders", {}).values()) + list(info.get("decoders", {}).values()):
            # e.g. "x265 HEVC encoder (4.3+1-e9b8812)", "libde265 HEVC decoder, version 1.1.3"
            if desc.startswith("x265"):
                out["x265"] = desc.rsplit("(", 1)[-1].rstrip(")")
            elif desc.startswith("libde265"):
                out["libde265"] = desc.rsplit("version", 1)[-1].strip()
        return out

    v = versions()
    return BaselineCodec(
        key="heic",
        name=(f"HEIC 4:4:4 (x265 {v.get('x265', '?')}, libheif {v['libheif']} "
              f"via pillow-heif {pillow_heif.__version__})"),
        settings=_HEIC_QUALITIES,
        setting_name="quality",
        extension=".heic",
        _encode=encode,
        _decode=decode,
        _versions=versions,
    )


# ----------------------------------------------------------------------------------------------
# Registry


def _pillow_unavailable(feature: str, what: str) -> Callable[[], str | None]:
    def check() -> str | None:
        return None if features.check(feature) else f"Pillow {PIL.__version__} built without {what}"

    return check


def _avif_unavailable() -> str | None:
    if not features.check("avif"):
        return f"Pillow {PIL.__version__} built without AVIF"
    from PIL import _avif

    if not _avif.encoder_codec_available("aom"):
        return f"Pillow {PIL.__version__}: libavif has no libaom encoder"
    return None


# key -> (why it is unavailable or None, factory)
_REGISTRY: dict[str, tuple[Callable[[], str | None], Callable[[], BaselineCodec]]] = {
    "jpeg420": (_pillow_unavailable("jpg", "JPEG"), lambda: _make_jpeg("jpeg420")),
    "jpeg444": (_pillow_unavailable("jpg", "JPEG"), lambda: _make_jpeg("jpeg444")),
    "webp": (_pillow_unavailable("webp", "WebP"), _make_webp),
    "avif": (_avif_unavailable, _make_avif),
    "jxl": (_jxl_unavailable, _make_jxl),
    "jpeg2000": (_pillow_unavailable("jpg_2000", "JPEG 2000 (OpenJPEG)"), _make_jpeg2000),
    "heic": (_heic_unavailable, _make_heic),
}


def _reason(key: str) -> str | None:
    try:
        return _REGISTRY[key][0]()
    except Exception as exc:  # a broken optional install must not break the others
        return f"{type(exc).__name__}: {exc}".splitlines()[0]


def baseline_codecs() -> dict[str, BaselineCodec]:
    """Key -> codec for every baseline whose library is usable here, in ``BASELINE_KEYS`` order."""
    return {key: _REGISTRY[key][1]() for key in BASELINE_KEYS if _reason(key) is None}


def unavailable_baselines() -> dict[str, str]:
    """Key -> one-line reason for every baseline that ``baseline_codecs()`` leaves out."""
    return {key: reason for key in BASELINE_KEYS if (reason := _reason(key)) is not None}

"""What evc's alpha plane costs (issue 38), against the other lossless ways of coding it.

For each PNG with transparency, the bytes of its alpha plane as evc stores it (evc.alpha: WebP lossless,
libwebp method 4), and, for the same plane: zlib level 9 of the raw bytes, Pillow's PNG (optimize),
WebP lossless at libwebp's slowest setting (method 6), and WebP's own alpha: the ALPH chunk of a lossy
WebP (quality 80) of the RGBA image, which libwebp codes losslessly (alpha_quality 100) with its alpha
filters (not the size difference of lossy WebP files with and without alpha: libwebp also smooths the
colours under transparent pixels, which makes that difference negative on some images). ``--evc`` also codes each image with the shipped default model at quality 0.5 and gives
the alpha plane's share of the file.

    PYTHONPATH=src python benchmarks/alpha_cost.py [--evc] [PNG ...]

Without paths, it measures the PNGs with transparency found on the development machine (icons,
documentation images), where they exist.
"""

from __future__ import annotations

import argparse
import io
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from evc.alpha import encode_alpha
from evc.image import to_input

DEFAULT_FILES = (
    "/usr/share/icons/Adwaita/512x512/places/folder-pictures.png",
    "/usr/share/icons/Adwaita/512x512/devices/camera-web.png",
    "/root/.pyenv/versions/3.13.0/lib/python3.13/idlelib/Icons/idle_256.png",
    "/root/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html/cargo/images/Cargo-Logo-Small.png",
    "/usr/share/doc/python3-pip/html/topics/deps.png",
    "/usr/lib/node_modules/npm/node_modules/qrcode-terminal/example/basic.png",
    "/usr/lib/google-cloud-sdk/platform/gsutil/third_party/requests/docs/_static/requests-sidebar.png",
    "/usr/lib/google-cloud-sdk/platform/gsutil/third_party/requests/ext/ss.png",
)


def saved(image: Image.Image, fmt: str, **options: object) -> int:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return len(buffer.getvalue())


def alph_chunk(image: Image.Image) -> int:
    """Bytes of the ALPH chunk (with its 8-byte chunk header) in a lossy WebP of ``image``."""
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=80)
    data = buffer.getvalue()
    at = 12
    while at + 8 <= len(data):
        kind, size = data[at : at + 4], int.from_bytes(data[at + 4 : at + 8], "little")
        if kind == b"ALPH":
            return 8 + size
        at += 8 + size + (size & 1)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--evc", action="store_true", help="also code each image with the default model")
    args = parser.parse_args()
    files = args.files or [Path(p) for p in DEFAULT_FILES if Path(p).exists()]
    codec = None
    if args.evc:
        import evc

        codec = evc.load()
    header = (f"{'file':<28} {'size':>9} {'clear%':>6} {'evc alpha':>9} {'ms':>5} {'zlib-9':>7} {'PNG':>7} "
              f"{'WebP-LL m6':>10} {'WebP ALPH':>9}")
    print(header + ("  evc file (alpha share)" if codec else ""))
    totals = np.zeros(5)
    for path in files:
        with Image.open(path) as opened:
            coded = to_input(opened)
            rgba = opened.convert("RGBA")
        if coded.alpha is None:
            print(f"{path.name:<28} fully opaque: no alpha plane")
            continue
        alpha = coded.alpha
        start = time.perf_counter()
        block = len(encode_alpha(alpha))
        elapsed_ms = (time.perf_counter() - start) * 1000
        plane = Image.fromarray(alpha, "L")
        sizes = [
            block,
            len(zlib.compress(alpha.tobytes(), 9)),
            saved(plane, "PNG", optimize=True),
            saved(plane.convert("RGB"), "WEBP", lossless=True, quality=100, method=6),
            alph_chunk(rgba),
        ]
        totals += sizes
        line = (f"{path.name[:28]:<28} {f'{alpha.shape[1]}x{alpha.shape[0]}':>9} {100 * np.mean(alpha < 255):6.1f} "
                f"{sizes[0]:9d} {elapsed_ms:5.0f} {sizes[1]:7d} {sizes[2]:7d} {sizes[3]:10d} {sizes[4]:9d}")
        if codec is not None:
            data = codec.compress(path, 0.5)
            line += f"  {len(data)} B ({100 * block / len(data):.0f}%)"
        print(line)
    print(f"{'total':<28} {'':>9} {'':>6} {int(totals[0]):9d} {'':>5} {int(totals[1]):7d} {int(totals[2]):7d} "
          f"{int(totals[3]):10d} {int(totals[4]):9d}")


if __name__ == "__main__":
    main()

"""Make the committed files of every format version (run once, by hand, when a version is added:
``PYTHONPATH=src python tests/data/formats/make.py``); tests/test_formats.py checks that they still
decode to the committed pixels. The files must never be remade to suit a changed decoder.

The codec is the tests' seeded, untrained EVC-SS (``evc.create_model("EVC-SS", seed=0)``), so the
files do not depend on which weights ship. Each ``vN-*.evc`` has its decoded image beside it
(``.png``, with the EXIF block and XMP packet that version 4 restores, and the alpha of
``v4-int8-alpha``).
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

import evc
from evc.bitstream.container import HEADER_BYTES
from evc.entropy.latent_codec import EncoderOptions

HERE = Path(__file__).resolve().parent
XMP = (b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
       b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
       b'xmlns:dc="http://purl.org/dc/elements/1.1/" dc:format="image/jpeg"/></rdf:RDF></x:xmpmeta>'
       b'<?xpacket end="w"?>')


def image() -> Image.Image:
    """24x16 smooth colours with a camera's EXIF (make, model, date, GPS) and an XMP packet."""
    yy, xx = np.mgrid[0:16, 0:24]
    rgb = np.stack([xx * 10, yy * 15, 255 - xx * 5 - yy * 5], axis=-1).clip(0, 255).astype(np.uint8)
    picture = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0132] = "Canon", "Canon EOS R5", "2026:12:07 10:00:00"
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.5), 3: "E", 4: (13.0, 24.0, 0.5)}
    picture.info["exif"], picture.info["xmp"] = exif.tobytes(), XMP
    return picture


def transparent() -> Image.Image:
    """The same colours as an RGBA image: a left-to-right alpha ramp, a fully transparent corner."""
    rgba = np.asarray(image().convert("RGBA")).copy()
    rgba[:, :, 3] = np.linspace(40, 255, 24).astype(np.uint8)[None, :]
    rgba[:4, :6, 3] = 0
    return Image.fromarray(rgba, "RGBA")


def codec(**options: object) -> evc.Codec:
    return evc.Codec(evc.create_model("EVC-SS", seed=0), "EVC-SS", device="cpu", **options)


def save(name: str, data: bytes, decoder: evc.Codec) -> None:
    (HERE / f"{name}.evc").write_bytes(data)
    decoded = decoder.decompress(data)
    info = PngImagePlugin.PngInfo()
    if decoded.info.get("xmp"):
        info.add_itxt("XML:com.adobe.xmp", decoded.info["xmp"].decode("utf-8"))
    decoded.save(HERE / f"{name}.png", exif=decoded.info.get("exif", b""), pnginfo=info)


def main() -> None:
    source = image()
    plain = source.copy()
    plain.info.clear()
    # Version 1: version 2's layout without the flags byte, so flags 0: float arithmetic, every symbol coded.
    float_codec = codec(exact=False)
    float_codec._encoder_options = EncoderOptions(
        float_codec.model.latent_codec, dataclasses.replace(float_codec.options, skip_certain=False), float_codec.name
    )
    v2_flags0 = float_codec.compress(plain, 0.5)
    flags_at = HEADER_BYTES - 6
    assert v2_flags0[flags_at] == 0
    body = bytearray(v2_flags0[:-4])
    body[4] = 1
    del body[flags_at]
    save("v1-float", bytes(body) + struct.pack(">I", zlib.crc32(bytes(body))), float_codec)
    save("v2-float64", codec(arithmetic="float64").compress(plain, 0.5), codec())
    save("v3-int8", codec().compress(plain, 0.5), codec())
    save("v4-int8-exif-xmp", codec().compress(source, 0.5), codec())
    save("v4-int8-alpha", codec().compress(transparent(), 0.5), codec())


if __name__ == "__main__":
    main()

"""A Display P3 ICC profile built byte by byte (ICC.1 version 2 layout), for colour-management tests.

Pillow's ImageCms creates only sRGB, LAB and XYZ profiles, and no profile file ships on the machine,
so the tests build the one they need: a matrix/TRC display profile with the P3 primaries (adapted to
the D50 connection space, as in Apple's Display P3) and the sRGB tone curve.
"""

from __future__ import annotations

import struct


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + bytes(4) + _s15(x) + _s15(y) + _s15(z)


def _desc(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    # textDescriptionType: ASCII part, then empty Unicode and ScriptCode parts (67 bytes of the latter).
    return b"desc" + bytes(4) + struct.pack(">I", len(ascii_text)) + ascii_text + bytes(4 + 4 + 2 + 1 + 67)


def _srgb_curve() -> bytes:
    # parametricCurveType, function 3: Y = (aX + b)^g for X >= d, else cX (the sRGB curve).
    g, a, b, c, d = 2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045
    return b"para" + bytes(4) + struct.pack(">HH", 3, 0) + b"".join(_s15(v) for v in (g, a, b, c, d))


def display_p3_profile(name: str = "Display P3") -> bytes:
    """The bytes of an RGB display profile with Display P3's primaries, white point and tone curve."""
    curve = _srgb_curve()
    return _profile(b"mntr", b"RGB ", b"XYZ ", [
        (b"desc", _desc(name)),
        (b"cprt", b"text" + bytes(4) + b"No copyright, test data\0"),
        (b"wtpt", _xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", _xyz(0.515121, 0.241196, -0.001053)),
        (b"gXYZ", _xyz(0.291977, 0.692245, 0.041885)),
        (b"bXYZ", _xyz(0.157104, 0.066574, 0.784073)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ])


def gray_profile(name: str = "Gray (sRGB curve)") -> bytes:
    """A gray display profile: D50 white and the sRGB tone curve."""
    return _profile(b"mntr", b"GRAY", b"XYZ ", [
        (b"desc", _desc(name)), (b"cprt", b"text" + bytes(4) + b"No copyright, test data\0"),
        (b"wtpt", _xyz(0.9642, 1.0, 0.8249)), (b"kTRC", _srgb_curve()),
    ])


def _profile(device_class: bytes, space: bytes, pcs: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    entries, data = b"", b""
    for signature, body in tags:
        body += bytes(-len(body) % 4)  # tags start on 4-byte boundaries
        entries += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = 128 + table_size + len(data)
    header = (
        struct.pack(">I", size) + bytes(4) + bytes([2, 0x10, 0, 0]) + device_class + space + pcs
        + struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + b"acsp" + bytes(4 + 4 + 4 + 4 + 8) + struct.pack(">I", 0)
        + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + bytes(4 + 16 + 28)
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + entries + data


def _lab8(lightness: float, a: float, b: float) -> bytes:
    """CIELAB in the 8-bit encoding of lut8 tables: L* 0..100 -> 0..255, a* and b* offset by 128."""
    return bytes([round(lightness * 255 / 100), round(a) + 128, round(b) + 128])


def cmyk_profile(name: str = "Test CMYK") -> bytes:
    """An input-class CMYK -> CIELAB profile: one lut8 (A2B0) with a 2-point grid, i.e. a multilinear
    blend of the 16 corner colours: made up, but a real profile LittleCMS converts with."""
    clut = b""
    for c in (0, 1):  # the first input channel varies slowest
        for m in (0, 1):
            for y in (0, 1):
                for k in (0, 1):
                    ink = 1 - k
                    clut += _lab8(100 * ink * (1 - 0.8 * (0.3 * c + 0.59 * m + 0.11 * y)),
                                  60 * ink * (m - 0.5 * c), 60 * ink * (y - 0.5 * (c + m)))
    identity = bytes(range(256))
    matrix = b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    a2b0 = b"mft1" + bytes(4) + bytes([4, 3, 2, 0]) + matrix + identity * 4 + clut + identity * 3
    return _profile(b"scnr", b"CMYK", b"Lab ", [
        (b"desc", _desc(name)), (b"cprt", b"text" + bytes(4) + b"No copyright, test data\0"),
        (b"wtpt", _xyz(0.9642, 1.0, 0.8249)), (b"A2B0", a2b0),
    ])

"""The .evc container: header, streams and checksum (see docs/format.md)."""

from evc.bitstream.container import FORMAT_VERSION, MAGIC, Q_INDEX_MAX, Header, pack, parse

__all__ = ["FORMAT_VERSION", "MAGIC", "Q_INDEX_MAX", "Header", "pack", "parse"]

"""evc's Pillow plugin: ``.evc`` files through Pillow's own calls.

    import evc
    evc.register_pillow()               # or: import evc.pillow (registers on import)
    image = Image.open("photo.evc")     # size, mode, ICC profile, metadata from the header; pixels at load()
    image.save("copy.evc", quality=0.5) # or target_bpp=..., target_psnr=...; format from the extension

Reading decodes with the model the file names and that model's shipped weights (a file made with other
weights is refused, as :func:`evc.decompress` refuses it); writing codes with ``model=NAME`` or the
default model (:func:`evc.load`). Each model is loaded once per process and kept.

Errors follow Pillow's contract, so that programs that already catch Pillow's errors catch evc's: a
file that starts like an evc file but is not a valid one raises OSError (from ``Image.open`` for its
header, from ``load()`` for the rest), with evc's message; a bad save argument or image raises what
:meth:`evc.Codec.compress` raises (ValueError, TypeError, evc.ImageError), and Pillow removes the file
it created.
"""

from __future__ import annotations

import threading
from typing import IO, Any

from PIL import Image, ImageFile

from evc.bitstream.container import MAGIC, read_header
from evc.codec import Codec, load
from evc.errors import EVCError
from evc.fileinfo import KNOWN_MODEL_IDS, parse_file
from evc.models.registry import get_spec

FORMAT = "EVC"
EXTENSION = ".evc"
# The keyword arguments of Image.save that evc uses; Pillow passes others along too, which are ignored,
# as every Pillow plugin ignores the options of other formats.
SAVE_OPTIONS = ("quality", "target_bpp", "target_psnr")

_codecs: dict[str | None, Codec] = {}
_codecs_lock = threading.Lock()


def _codec(name: str | None) -> Codec:
    """The codec of model ``name`` (None: the default model), loaded on first use and kept."""
    key = None if name is None else get_spec(name).name
    with _codecs_lock:
        if key not in _codecs:
            _codecs[key] = load(key)
        return _codecs[key]


def _accept(prefix: bytes) -> bool:
    return prefix[: len(MAGIC)] == MAGIC


class EvcImageFile(ImageFile.ImageFile):
    """An .evc file opened by ``Image.open``: size, mode ("RGB" or "L"; "RGBA" or "LA" when the file
    holds an alpha plane) and ``info["icc_profile"]``, ``info["exif"]``, ``info["xmp"]`` from the
    header; the pixels are decoded at ``load()``."""

    format = FORMAT
    format_description = "EVC neural image codec"

    def _open(self) -> None:
        assert self.fp is not None
        try:
            header = read_header(self.fp, known_model_ids=KNOWN_MODEL_IDS)
        except EVCError as exc:
            raise OSError(f"cannot open the EVC file: {exc}") from None
        self._size = (header.width, header.height)
        self._mode = header.colour + ("A" if header.alpha else "")
        for key, value in (("icc_profile", header.icc_profile), ("exif", header.exif), ("xmp", header.xmp)):
            if value:
                self.info[key] = value
        self.tile = [ImageFile._Tile(FORMAT, (0, 0, header.width, header.height), 0, None)]


class _Decoder(ImageFile.PyDecoder):
    """Decodes the whole file (Pillow hands over its file object, at the file's start) in one call."""

    _pulls_fd = True

    def decode(self, buffer: Any) -> tuple[int, int]:
        assert self.fd is not None
        data = self.fd.read()
        try:
            _, _, made_by = parse_file(data)
            image = _codec(made_by.name).decompress(data)
        except EVCError as exc:
            raise OSError(f"cannot decode the EVC file: {exc}") from None
        if image.mode != self.mode or image.size != (self.state.xsize, self.state.ysize):
            raise OSError(f"cannot decode the EVC file: it holds a {image.mode} image of {image.size}")
        self.set_as_raw(image.tobytes())
        return -1, 0


def _save(image: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """Pillow's save handler: ``image.save(target, "EVC", quality=... | target_bpp=... |
    target_psnr=..., model=NAME)``, checked by :meth:`evc.Codec.compress` as the API checks them."""
    options = image.encoderinfo
    model = options.get("model")
    if model is not None and not isinstance(model, str):
        raise TypeError(f"model must be a model name (see evc.MODELS), got a {type(model).__name__}")
    rate = {key: options[key] for key in SAVE_OPTIONS if options.get(key) is not None}
    fp.write(_codec(model).compress(image, **rate))


def register() -> None:
    """Register the EVC format with Pillow (open, save, the ``.evc`` extension); calling it again does
    nothing more."""
    Image.register_open(FORMAT, EvcImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_decoder(FORMAT, _Decoder)


register()

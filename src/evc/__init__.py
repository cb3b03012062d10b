"""evc: EVC neural image codec (Wang et al., ICLR 2023) — one model for every bitrate."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from evc.errors import EVCError, FormatError, ImageError, ModelError, UntrainedModelError
from evc.fileinfo import FileInfo, file_info
from evc.models.registry import MODELS, create_model

if TYPE_CHECKING:
    from evc.codec import Codec, EncodeResult, decompress, load

__version__ = "0.1.0"

# Names that need torch, imported at their first use: `import evc` (and `evc info`, `evc models`) stays
# fast, and the codec loads when it is asked for.
_LAZY = {"Codec": "evc.codec", "EncodeResult": "evc.codec", "decompress": "evc.codec", "load": "evc.codec"}


def __getattr__(name: str) -> Any:
    """The codec's names on first use, and submodules (``evc.codec``, ``evc.image``, ...) as attributes,
    as they were when importing evc imported them all."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # once: later look-ups do not come here
        return value
    if not name.startswith("_"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":  # the submodule exists; something it imports does not
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def register_pillow() -> None:
    """Register the EVC format with Pillow: ``Image.open`` reads .evc files (lazily: size, mode and ICC
    profile from the header, pixels at ``load()``), ``image.save(target, "EVC", quality=...)`` (or
    ``target_bpp=``, ``target_psnr=``) writes them, and ``.evc`` is a registered extension. The same as
    ``import evc.pillow``; see :mod:`evc.pillow`. Calling it again does nothing more."""
    from evc.pillow import register

    register()


__all__ = [
    "MODELS",
    "Codec",
    "EVCError",
    "EncodeResult",
    "FileInfo",
    "FormatError",
    "ImageError",
    "ModelError",
    "UntrainedModelError",
    "__version__",
    "create_model",
    "decompress",
    "file_info",
    "load",
    "register_pillow",
]

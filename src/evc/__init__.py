"""evc: EVC neural image codec (Wang et al., ICLR 2023) — one model for every bitrate."""

# First, before torch loads: the thread policy measures the machine's load from here (evc.threads).
from evc import threads as _threads  # noqa: F401, I001
from evc.codec import Codec, EncodeResult, FileInfo, decompress, file_info, load
from evc.errors import EVCError, FormatError, ImageError, ModelError, UntrainedModelError
from evc.models.registry import MODELS, create_model

__version__ = "0.1.0"


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

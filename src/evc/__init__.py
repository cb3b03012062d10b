"""evc: EVC neural image codec (Wang et al., ICLR 2023) — one model for every bitrate."""

from evc.cpu_policy import configure_openmp

configure_openmp()  # before torch is first imported (evc.codec imports it): see evc.cpu_policy

from evc.codec import Codec, EncodeResult, FileInfo, decompress, file_info, load  # noqa: E402
from evc.errors import EVCError, FormatError, ImageError, ModelError, UntrainedModelError  # noqa: E402
from evc.models.registry import MODELS, create_model  # noqa: E402

__version__ = "0.1.0"

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
]

"""One check for every public argument, shared by the API (``evc.load``, ``Codec``) and the command line.

Each check takes the value as the caller passed it, of any type, and returns it normalised (a Python
``int``, ``float``, ``bool`` or ``str``), or raises:

- ``TypeError`` when the value has the wrong type (a string where a number is meant, a float where an
  integer is meant, and ``True``/``False`` for a number: bool is an int in Python, but never a rate);
- ``ValueError`` when the type is right and the value is not (out of range, NaN, infinite).

The message names the argument, what it accepts and the value given, and is true for every value; the
command line shows it after ``argument --name:``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evc.bitstream.container import Q_INDEX_MAX
from evc.entropy.streams import MAX_SUBSTREAMS
from evc.errors import EVCError

if TYPE_CHECKING:  # torch is imported where a device is chosen: the command line checks options without it
    import torch

QUALITY_RANGE = (0.0, 1.0)
Q_INDEX_RANGE = (1, Q_INDEX_MAX)  # the file's u16 field; 0 is invalid
SUBSTREAMS_RANGE = (1, MAX_SUBSTREAMS)
OUTPUT_QUALITY_RANGE = (1, 100)
# The transforms' arithmetic, by the names of torch's dtypes (the codec takes torch's dtype of that name).
PRECISIONS = ("float32", "float16", "bfloat16")
DEFAULT_QUALITY = 0.5  # the rate when none is given
# Large images run through the networks in tiles, so memory grows only with the buffers that hold the
# whole image and latent (measured: about 100 bytes per pixel, 4.9 GB to encode 8000 x 6000); beyond
# this many padded pixels (134 M, e.g. 16384 x 8192, about 13 GB) evc refuses rather than risk
# exhausting memory or decoding for many minutes. Settable (Codec.max_pixels, --max-pixels).
DEFAULT_MAX_PIXELS = 1 << 27


def _shown(value: Any) -> str:
    """The value as the message quotes it: strings quoted, numbers as Python prints them."""
    if isinstance(value, bool):
        return f"{value} (a bool)"
    if isinstance(value, (str, bytes)):
        return repr(value)
    if isinstance(value, numbers.Number):
        return str(value)
    return f"a {type(value).__name__}"


def _real(name: str, value: Any, accepts: str) -> float:
    """A real number (int, float, numpy scalar; not bool) as a finite or non-finite float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {accepts}, got {_shown(value)}")
    return float(value)


def _integer(name: str, value: Any, accepts: str) -> int:
    """An integer (int, numpy integer; not bool, not float even when whole)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {accepts}, got {_shown(value)}")
    return int(value)


def _integer_in(name: str, value: Any, low: int, high: int) -> int:
    accepts = f"an integer in {low}..{high}"
    number = _integer(name, value, accepts)
    if not low <= number <= high:
        raise ValueError(f"{name} must be {accepts}, got {_shown(value)}")
    return number


def quality(value: Any) -> float:
    """Quality in [0, 1]: 0 is the lowest-rate anchor, 1 the highest."""
    accepts = "a number in [0, 1]"
    number = _real("quality", value, accepts)
    if not QUALITY_RANGE[0] <= number <= QUALITY_RANGE[1]:  # false for NaN too
        raise ValueError(f"quality must be {accepts}, got {_shown(value)}")
    return number


def q_index(value: Any) -> int:
    """The file's rate field, round(100 * q_scale): an integer in 1..Q_INDEX_MAX (65535)."""
    return _integer_in("q_index", value, *Q_INDEX_RANGE)


def _positive_finite(name: str, value: Any, unit: str) -> float:
    accepts = f"a positive finite number ({unit})"
    number = _real(name, value, accepts)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be {accepts}, got {_shown(value)}")
    return number


def target_bpp(value: Any) -> float:
    """A file size target in bits per pixel: positive and finite."""
    return _positive_finite("target_bpp", value, "bits per pixel")


def target_psnr(value: Any) -> float:
    """A quality target in dB PSNR: positive and finite."""
    return _positive_finite("target_psnr", value, "dB")


@dataclass(frozen=True)
class Rate:
    """The rate of one encode as :func:`rate` settles it: exactly one field is set, checked.

    ``quality``: in [0, 1] (0 is the lowest-rate trained anchor, 1 the highest); ``q_index``: the
    file's rate field itself, 1..65535; ``target_bpp``: the best quality within that many bits per
    pixel; ``target_psnr``: the smallest file reaching that many dB (both positive and finite).
    :func:`evc.ratecontrol.coded_at` turns it into a q index.
    """

    quality: float | None = None
    q_index: int | None = None
    target_bpp: float | None = None
    target_psnr: float | None = None

    @property
    def is_target(self) -> bool:
        """Whether the q index is searched for on real files (a bpp or PSNR target), not set directly."""
        return self.target_bpp is not None or self.target_psnr is not None


def rate(
    quality_value: Any = None, q_index_value: Any = None, target_bpp_value: Any = None, target_psnr_value: Any = None
) -> Rate:
    """Check the four ways to set the rate, of which at most one may be given (None: not given), into
    a :class:`Rate`; none given is quality :data:`DEFAULT_QUALITY`."""
    given = {
        "quality": quality_value, "q_index": q_index_value,
        "target_bpp": target_bpp_value, "target_psnr": target_psnr_value,
    }
    chosen = [name for name, v in given.items() if v is not None]
    if len(chosen) > 1:
        raise ValueError(f"give at most one of quality, q_index, target_bpp, target_psnr (got {', '.join(chosen)})")
    if not chosen:
        return Rate(quality=DEFAULT_QUALITY)
    checks = {"quality": quality, "q_index": q_index, "target_bpp": target_bpp, "target_psnr": target_psnr}
    name = chosen[0]
    return Rate(**{name: checks[name](given[name])})


def progress(value: Any) -> Callable[[str], Any] | None:
    """A progress hook: None, or a callable that takes one line of text per step."""
    if value is not None and not callable(value):
        raise TypeError(f"progress must be None or a callable taking a line of text, got {_shown(value)}")
    return value


def encoder_level(value: Any, levels: int | None, model: str = "this model") -> int | None:
    """None (every level), or an encoder level 0..levels-1 of a scalable model (``levels`` None: the
    model has one encoder, and only None is accepted)."""
    if value is None:
        return None
    if levels is None:
        raise ValueError(
            f"{model} has one encoder; encoder_level applies to scalable models only (Scale-SS, Scale-SL)"
        )
    accepts = f"an integer in 0..{levels - 1}"
    number = _integer("encoder_level", value, accepts)
    if not 0 <= number < levels:
        raise ValueError(f"encoder_level must be {accepts} for {model}, got {_shown(value)}")
    return number


def substreams(value: Any) -> int:
    """Independent streams per coding step of the latent: 1..MAX_SUBSTREAMS (8)."""
    return _integer_in("substreams", value, *SUBSTREAMS_RANGE)


def precision(value: Any) -> str:
    """Arithmetic of the image transforms: "float32", "float16" or "bfloat16"."""
    accepts = "one of " + ", ".join(PRECISIONS)
    if not isinstance(value, str):
        raise TypeError(f"precision must be {accepts}, got {_shown(value)}")
    if value not in PRECISIONS:
        raise ValueError(f"precision must be {accepts}, got {_shown(value)}")
    return value


def flag(name: str, value: Any) -> bool:
    """A yes/no option (``exact``, ``channels_last``): True or False only, so that a string such as
    "false" is not taken for True."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {_shown(value)}")
    return value


def max_pixels(value: Any) -> int:
    """The pixel limit of encoding and decoding (counted once padded to multiples of 64): an integer >= 1."""
    accepts = "a positive integer"
    number = _integer("max_pixels", value, accepts)
    if number < 1:
        raise ValueError(f"max_pixels must be {accepts}, got {_shown(value)}")
    return number


def output_quality(value: Any) -> int:
    """Quality of a lossy output format (JPEG, WebP, AVIF) when decoding: 1..100."""
    accepts = f"an integer in {OUTPUT_QUALITY_RANGE[0]}..{OUTPUT_QUALITY_RANGE[1]}"
    number = _integer("output quality", value, accepts)
    if not OUTPUT_QUALITY_RANGE[0] <= number <= OUTPUT_QUALITY_RANGE[1]:
        raise ValueError(f"output quality must be {accepts}, got {_shown(value)}")
    return number


def device(value: str | torch.device | None) -> torch.device:
    """The device to run on: ``None`` is CUDA when available, else the CPU; ``"cpu"``, ``"cuda"`` or
    ``"cuda:N"`` otherwise. The codec and the trainer both choose here.

    Raises EVCError (not TypeError/ValueError: a device can be right and still unavailable here) for
    an unknown device, an unsupported type, or CUDA on a machine without it.
    """
    import torch

    if value is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(value)
    except (RuntimeError, TypeError):
        raise EVCError(f"unknown device {value!r}; use cpu, cuda or cuda:N") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise EVCError(f"device {value!r} requested but CUDA is not available")
    if chosen.type not in ("cpu", "cuda"):
        raise EVCError(f"device {value!r} is not supported; use cpu, cuda or cuda:N")
    return chosen

"""Weights files read without torch: which files a weights location holds, their metadata, which model
they hold (:func:`held_model`, the one place that settles it), and the identity of the weights in them
(fingerprint and rate anchors), computed with numpy.

`evc models` (model cards) and `evc info` (whether the shipped weights made a file, and its quality)
need no more than this, so they answer without importing torch, which takes longer to import than
they take to run. :mod:`evc.models.weights` loads tensors into models and re-exports these;
:mod:`evc.fileinfo` falls back on it for tensors numpy cannot hold (:class:`NeedsTorch`).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from evc.errors import ModelError
from evc.models.registry import ModelSpec, get_spec
from evc.weights_keys import MODEL_KEY, PARTS_KEY

# The tensor that holds the rate anchors' q_scale values, which the codec codes with.
Q_SCALE_TENSOR = "rate.q_scale"
# The safetensors format's own limit on its JSON header.
_MAX_HEADER_BYTES = 100_000_000


def weight_files(path: Path) -> list[Path]:
    """The .safetensors files of a weights location (a file, or a folder of parts, sorted); ModelError
    when there are none."""
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise ModelError(f"no .safetensors files in {path}")
        return files
    if not path.exists():
        raise ModelError(f"weights file not found: {path}")
    return [path]


def read_metadata(path: str | Path) -> dict[str, str]:
    """Metadata of a weights file or folder (of its first part), without loading tensors."""
    first = weight_files(Path(path))[0]
    try:
        return _header_metadata(first)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{first} is not a readable safetensors file ({exc})") from None


def _header_metadata(file: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's header, read as the format lays it out (a u64 size,
    then that much JSON): safetensors' own reader imports numpy or torch to open a file. ValueError
    for a header that is not the format's."""
    with open(file, "rb") as f:
        size_field = f.read(8)
        if len(size_field) < 8:
            raise ValueError("shorter than the 8-byte header size")
        (size,) = struct.unpack("<Q", size_field)
        total = f.seek(0, 2)
        if size > min(_MAX_HEADER_BYTES, total - 8):
            raise ValueError(f"header of {size} bytes in a file of {total}")
        f.seek(8)
        header = json.loads(f.read(size))  # a UnicodeDecodeError or JSONDecodeError is a ValueError
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(header, dict) or not isinstance(metadata, (dict, type(None))):
        raise ValueError("the header is not a JSON object with a __metadata__ object")
    metadata = metadata or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValueError("the metadata is not a map of strings")
    return metadata


def held_model(
    source: str | Path, metadata: Mapping[str, str], name: str | None = None, default: str | None = None
) -> ModelSpec:
    """The model the weights at ``source`` hold, from their ``metadata`` (:func:`read_metadata`): the
    one it names (``evc.model``), else ``name``, else ``default``.

    ``name``: the model the caller asks for, which the weights must hold; ``default``: the model taken
    when the metadata names none, without that demand. Raises ModelError when the metadata names
    another model than ``name``, when nothing names a model, or for an unknown model name.
    """
    named = metadata.get(MODEL_KEY)
    if named is None:
        fallback = name if name is not None else default
        if fallback is None:
            raise ModelError(f"{source} does not say which model it holds; pass the model name")
        return get_spec(fallback)
    held = get_spec(named)
    if name is not None and get_spec(name) != held:
        raise ModelError(f"{source} holds weights for {held.name}, not {get_spec(name).name}")
    return held


def check_parts(path: str | Path, files: list[Path], metadata: Mapping[str, str]) -> None:
    """ModelError when the metadata declares another number of parts than ``files`` holds."""
    declared = metadata.get(PARTS_KEY)
    if declared is not None and declared != str(len(files)):
        raise ModelError(f"{path} holds {len(files)} weights files but they say the model has {declared} parts")


class NeedsTorch(Exception):
    """A tensor numpy cannot hold (bfloat16, say): the identity is for torch to compute."""


def _float32_tensors(path: str | Path) -> Iterator[tuple[str, Any]]:
    """Every tensor of the weights as a float32 numpy array, sorted by name (a later part's tensor of
    the same name wins, as in evc.models.weights.load_state)."""
    import numpy as np

    files = weight_files(Path(path))
    with ExitStack() as stack:
        owner: dict[str, Any] = {}
        for file in files:
            try:
                handle = stack.enter_context(safe_open(str(file), framework="np"))
            except (SafetensorError, OSError, ValueError) as exc:
                raise ModelError(f"{file} is not a readable safetensors file ({exc})") from None
            owner.update((name, handle) for name in handle.keys())
        for name in sorted(owner):
            try:
                array = owner[name].get_tensor(name)
            except (SafetensorError, TypeError, ValueError) as exc:
                raise NeedsTorch(str(exc)) from None
            if array.dtype.kind not in "biuf":
                raise NeedsTorch(f"{name} is {array.dtype}")
            yield name, array.astype(np.float32, copy=False)  # shape kept; tobytes() is C order


def tensors_fingerprint(tensors: Iterable[tuple[str, tuple[int, ...], bytes]]) -> int:
    """32-bit fingerprint of named float32 tensors given in name order as (name, shape, C-order bytes):
    the one hash behind :func:`evc.models.weights.state_fingerprint` and :func:`numpy_identity`."""
    digest = hashlib.sha256()
    for name, shape, data in tensors:
        digest.update(name.encode())
        digest.update(str(tuple(int(n) for n in shape)).encode())
        digest.update(data)
    return int.from_bytes(digest.digest()[:4], "big")


def numpy_identity(path: str | Path) -> tuple[int, list[float] | None]:
    """The fingerprint (:func:`evc.models.weights.state_fingerprint` of the stored tensors, the same
    bytes hashed) and the stored anchor q_scale values (None if there is no such tensor) of a weights
    file or folder. Raises NeedsTorch for a tensor numpy cannot hold, ModelError for unreadable files."""
    check_parts(path, weight_files(Path(path)), read_metadata(path))
    anchors: list[float] | None = None

    def tensors() -> Iterator[tuple[str, tuple[int, ...], bytes]]:
        nonlocal anchors
        for name, array in _float32_tensors(path):
            if name == Q_SCALE_TENSOR:
                anchors = [float(v) for v in array.reshape(-1)]
            yield name, array.shape, array.tobytes()

    return tensors_fingerprint(tensors()), anchors

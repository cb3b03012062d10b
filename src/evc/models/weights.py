"""Weights files: fp16 safetensors with metadata, split into parts, and a fingerprint of the weights.

A weights location is a .safetensors file or a folder of them (a model split into parts, each under
16 MiB); all parts are merged. Each file's metadata names the model ("evc.model"). :func:`load_model`
is the one loader: it reads the metadata once and settles which model the weights hold there
(:func:`evc.models.metadata.held_model`).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from evc.errors import ModelError
from evc.fileutil import default_file_mode
from evc.models.evc import EVC
# Reading metadata needs no torch (evc.models.metadata); re-exported, code imports it from here.
from evc.models.metadata import check_parts, held_model, read_metadata, tensors_fingerprint, weight_files  # noqa: F401
from evc.models.registry import ModelSpec
from evc.weights_keys import *  # noqa: F403  every metadata key, re-exported: code imports them from here

MAX_PART_BYTES = 15 * 1024 * 1024


STORED_DTYPE = torch.float16  # the precision of every weights file save_weights writes


def weights_fingerprint(model: torch.nn.Module) -> int:
    """32-bit fingerprint of the exact weights in use; files carry it so a decoder with other weights
    refuses them instead of producing a wrong image."""
    return state_fingerprint(model.state_dict())


def state_fingerprint(state: dict[str, torch.Tensor]) -> int:
    """:func:`weights_fingerprint` of a state dict (e.g. from :func:`load_state`), without a model."""
    def tensors() -> Iterator[tuple[str, tuple[int, ...], bytes]]:
        for name, tensor in sorted(state.items()):
            t = tensor.detach().to("cpu", torch.float32).contiguous()
            yield name, tuple(t.shape), t.numpy().tobytes()

    return tensors_fingerprint(tensors())


@torch.no_grad()
def round_to_stored_precision(model: torch.nn.Module) -> None:
    """Round every floating-point weight of ``model`` in place to the float16 value that
    :func:`save_weights` stores, so the model codes exactly as it will after saving and loading."""
    for tensor in model.state_dict().values():
        if tensor.is_floating_point():
            tensor.copy_(tensor.to(STORED_DTYPE).to(tensor.dtype))


def stored_copy(model: EVC) -> tuple[EVC, int]:
    """A copy of ``model`` with its weights rounded to what :func:`save_weights` stores
    (:func:`round_to_stored_precision`), so that it codes exactly as it will once saved and loaded, and
    their fingerprint (:func:`weights_fingerprint`). ``model`` itself is left as it was."""
    stored = copy.deepcopy(model)
    round_to_stored_precision(stored)
    return stored, weights_fingerprint(stored)


def load_model(
    source: str | Path, name: str | None = None, default: str | None = None
) -> tuple[EVC, ModelSpec, dict[str, str]]:
    """The model whose weights are at ``source`` (a .safetensors file or folder), its spec and the
    weights' metadata, read once.

    Which model they hold is settled by :func:`~evc.models.metadata.held_model`: the one their metadata
    names, which must be ``name`` when given; else ``name``, else ``default``. The model is built
    without touching torch's global random state. Raises ModelError for unreadable weights, weights of
    another model than ``name``, weights that name no model when neither ``name`` nor ``default`` is
    given, and tensors that do not fit the model (:func:`apply_state`).
    """
    metadata = read_metadata(source)
    spec = held_model(source, metadata, name, default)
    model = spec.build(seed=0)  # every weight is then replaced: the seed only spares the caller's random state
    apply_state(model, _tensors(source, metadata), str(source))
    return model, spec, metadata


def load_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors (as float32) and the metadata of a weights file or folder."""
    metadata = read_metadata(path)
    return _tensors(path, metadata), metadata


def _tensors(path: str | Path, metadata: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """Every tensor of a weights location (as float32; a later part's tensor of the same name wins),
    once ``metadata`` (its first part's) agrees with the number of parts."""
    files = weight_files(Path(path))
    check_parts(path, files, metadata)
    state: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            part = load_file(str(file))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"{file} is not a readable safetensors file ({exc})") from None
        state.update({k: v.float() for k, v in part.items()})
    return state


def apply_state(model: EVC, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model``, or raise ModelError naming the first tensor that does not fit."""
    expected = model.state_dict()
    problems = []
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    misshapen = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if misshapen:
        k = misshapen[0]
        problems.append(
            f"{len(misshapen)} of the wrong shape (e.g. {k}: {tuple(state[k].shape)} in the file, "
            f"{tuple(expected[k].shape)} in the model)"
        )
    if problems:
        raise ModelError(f"weights in {source} do not fit this model: tensors " + ", ".join(problems))
    model.load_state_dict(state)


def save_weights(
    model: EVC,
    folder: str | Path,
    model_name: str,
    metadata: dict[str, object] | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write the model in fp16 to ``folder`` as parts of at most 15 MiB; returns the files written.

    A folder that already holds weights is only replaced with ``overwrite=True``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(folder.glob("*.safetensors"))
    if existing and not overwrite:
        raise ModelError(f"{folder} already holds weights ({existing[0].name}); pass overwrite=True to replace them")
    meta = {MODEL_KEY: model_name, ANCHORS_KEY: json.dumps([round(float(s), 6) for s in model.rate.q_scale.detach().cpu()])}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()})
    parts: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu", STORED_DTYPE).contiguous()
        if parts[-1] and size + t.numel() * 2 > MAX_PART_BYTES:
            parts.append({})
            size = 0
        parts[-1][name] = t
        size += t.numel() * 2
    meta[PARTS_KEY] = str(len(parts))
    for old in existing:
        old.unlink()
    files = []
    for i, part in enumerate(parts, start=1):
        file = folder / f"{model_name}.part{i}of{len(parts)}.safetensors"
        save_file(part, str(file), metadata=meta)
        os.chmod(file, default_file_mode())
        files.append(file)
    return files

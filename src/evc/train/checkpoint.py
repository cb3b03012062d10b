"""Checkpoints that resume exactly: model, optimizer, step, training time and RNG states, written atomically."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evc.errors import EVCError

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    state = dict(state)
    state["rng"] = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write leaves the previous checkpoint intact


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's state (model, optimizer, step, ...), read without touching any RNG.

    Raises EVCError when the file is missing or unreadable.
    """
    if not path.is_file():
        raise EVCError(f"no checkpoint to resume from at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise EVCError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc})") from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's state, with the RNGs of torch, CUDA, numpy and Python restored to where it was
    written (so a resumed run draws what the uninterrupted run would have). Raises EVCError."""
    state = read_checkpoint(path)
    rng = state.get("rng", {})
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if rng.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    if "numpy" in rng:
        np.random.set_state(rng["numpy"])
    if "python" in rng:
        random.setstate(rng["python"])
    return state

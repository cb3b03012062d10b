"""Shared test helpers: seeded random-weight codecs (cached per session), seeded EVC-SS weights saved
like shipped ones (the ``weights`` fixture) and small test images."""

from __future__ import annotations

import os

# One compute thread per process, subprocesses included: the suite's tensors are small, and on a machine
# whose cores are shared with other work, several threads per process wait on each other (the suite
# once took 20 minutes beside one busy process, against 3.5 idle). Set before torch starts its pools.
# EVC_THREADS is the thread policy's own setting (evc.threads), which the codec and training read:
# the suite gives it the same fixed count (EVC_TEST_THREADS=auto tries the policy itself).
os.environ["EVC_THREADS"] = os.environ.get("EVC_TEST_THREADS", "1")
os.environ["OMP_NUM_THREADS"] = "1" if os.environ["EVC_THREADS"] == "auto" else os.environ["EVC_THREADS"]
os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

import threading  # noqa: E402
from collections.abc import Callable  # noqa: E402
from functools import lru_cache  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import evc  # noqa: E402
from evc.models.weights import save_weights  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@lru_cache(maxsize=None)
def random_codec(name: str, seed: int = 0) -> evc.Codec:
    """An untrained codec with seeded weights (never shipped: tests only)."""
    return evc.Codec(evc.create_model(name, seed=seed), name, device="cpu")


def rgb_array(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A busier uint8 RGB test image than :func:`smooth_image` (larger swings, more noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([np.sin(xx / 6.0 + c) * np.cos(yy / 4.0 - c) for c in range(3)], axis=-1) * 100 + 128
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def smooth_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A natural-ish (smooth plus noise) uint8 RGB image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack(
        [np.sin(xx / 7.0 + c) * np.cos(yy / 5.0 - c) for c in range(3)], axis=-1
    ) * 80 + 128
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def run_in_threads(work: Callable[[int], object], count: int) -> list[object]:
    """Call ``work(i)`` for i in 0..count-1, each in its own thread, all released together; returns each
    call's result, or the exception it raised (so that an assertion shows it)."""
    start = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - returned to the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results

@pytest.fixture
def codec_ss() -> evc.Codec:
    return random_codec("EVC-SS")


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> Path:
    """Seeded random EVC-SS weights saved like shipped weights, for --weights (tests only read them)."""
    folder = tmp_path_factory.mktemp("weights") / "ss"
    save_weights(evc.create_model("EVC-SS", seed=0), folder, "EVC-SS")
    return folder

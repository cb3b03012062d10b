"""What an ONNX export of one model holds, without torch: the file names, the manifest and the coder's
tables, written by :mod:`evc.onnx.export` and read by :mod:`evc.onnx.runtime`.

An export folder holds:

``manifest.json``
    ``layout`` (EXPORT_LAYOUT), ``model`` and ``model_id``, ``format_version`` (the newest .evc format
    version the exporting evc writes and reads), ``weights_fingerprint`` (the fingerprint every file
    coded with these weights carries: :func:`evc.models.metadata.tensors_fingerprint` of the weights
    the codec codes with), ``anchor_q_scales`` (the rate anchors' q_scale values, lowest rate first, for
    the quality -> q index mapping of :mod:`evc.models.rates`), ``levels`` (encoder levels: 1, or 4
    for a scalable model), ``tiles`` (per graph: image pixels per input pixel along a side, and the
    halo in input pixels that tiling it exactly needs, :mod:`evc.nn.tiling`'s) and ``evc_version``.
``g_a.onnx``
    image (1, 3, H, W) float32 in [0, 1], H and W multiples of 64 -> the latent of every encoder level,
    outputs ``y`` or ``y0`` .. ``y3`` (1, 192, H/16, W/16) float32.
``h_a.onnx``
    (latent, q_scale) -> (``y_scaled``, the latent divided by the rate's step; ``z``, the hyper-latent
    before rounding), float32.
``hyper.onnx`` and ``step_two.onnx``
    the entropy-parameter networks in exact integer arithmetic (:mod:`evc.onnx.integer_graph`).
``g_s.onnx``
    (y_hat float64, q_step float64, q_scale float32) -> the reconstruction (1, 3, H, W) float32.
``tables.npz``
    the coder's tables: ``scale_table`` (float32 sigma thresholds of the Gaussian scale index),
    ``gaussian_pmf`` / ``gaussian_offset`` / ``gaussian_size`` (each scale's pmf over offset..offset +
    size - 1, concatenated) and ``z_pmf`` / ``z_offset`` / ``z_size`` (the hyper-latent's per channel).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from evc.errors import ModelError

EXPORT_LAYOUT = 1  # changes whenever the files or their inputs and outputs change
MANIFEST = "manifest.json"
TABLES = "tables.npz"
GRAPHS = ("g_a", "h_a", "hyper", "step_two", "g_s")


@dataclass(frozen=True)
class Manifest:
    """The manifest of an export (see the module docstring)."""

    model: str
    model_id: int
    format_version: int
    weights_fingerprint: int
    anchor_q_scales: list[float]
    levels: int
    tiles: dict[str, list[int]]
    evc_version: str
    layout: int = EXPORT_LAYOUT

    def write(self, folder: Path) -> None:
        (folder / MANIFEST).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        """The manifest of the export in ``folder``; ModelError naming `evc export` for a folder that
        holds none, or one this evc cannot read."""
        path = folder / MANIFEST
        if not path.is_file():
            raise ModelError(f"{folder} holds no ONNX export of evc ({MANIFEST} missing); make one with "
                             f"`evc export {folder} --model NAME`")
        try:
            fields = json.loads(path.read_text())
            manifest = cls(**fields)
        except (ValueError, TypeError) as exc:
            raise ModelError(f"{path} is not an evc export manifest ({exc}); make the export again with "
                             f"`evc export {folder}`") from None
        if manifest.layout != EXPORT_LAYOUT:
            raise ModelError(f"{folder} was exported by evc {manifest.evc_version} in export layout "
                             f"{manifest.layout}; this evc reads layout {EXPORT_LAYOUT}: run `evc export {folder} "
                             f"--model {manifest.model}` again")
        return manifest


def pack_pmfs(pmfs: list[tuple[np.ndarray, int]], prefix: str) -> dict[str, np.ndarray]:
    """Tables ``[(pmf, offset), ...]`` as three arrays for an .npz file (see :func:`unpack_pmfs`)."""
    return {
        f"{prefix}_pmf": np.concatenate([np.asarray(pmf, dtype=np.float64) for pmf, _ in pmfs]),
        f"{prefix}_offset": np.array([offset for _, offset in pmfs], dtype=np.int64),
        f"{prefix}_size": np.array([len(pmf) for pmf, _ in pmfs], dtype=np.int64),
    }


def unpack_pmfs(tables: dict[str, np.ndarray], prefix: str) -> list[tuple[np.ndarray, int]]:
    """The tables :func:`pack_pmfs` packed, the same float64 values."""
    values, offsets, sizes = (tables[f"{prefix}_{key}"] for key in ("pmf", "offset", "size"))
    ends = np.cumsum(sizes)
    return [(values[end - size : end], int(offset)) for offset, size, end in zip(offsets, sizes, ends)]

"""Run logs: CSV files (train.csv, val.csv) and TensorBoard event files in the run folder, and the
training statistics between two rows of train.csv (LogWindow)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import torch

from evc.extras import require
from evc.models.variable_rate import NUM_ANCHORS

# Each row holds the means over the steps since the previous row, overall and per rate anchor (a0 =
# the lowest rate), since single batches swing widely with the anchors they happen to draw.
TRAIN_COLUMNS = ["step", "loss", "bpp", "mse", "psnr", "lr", "images_per_s", "elapsed_s"] + [
    f"{name}_a{a}" for name in ("bpp", "psnr") for a in range(NUM_ANCHORS)
]
VAL_COLUMNS = ["step", "anchor", "q_index", "bpp", "psnr"]


def _summary_writer(folder: Path, purge_step: int | None):
    require("tensorboard", "train")
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(folder), purge_step=purge_step)


class RunLog:
    def __init__(self, out: Path, start_step: int) -> None:
        self.train_file, self.train_csv = self._open(out / "train.csv", TRAIN_COLUMNS)
        self.val_file, self.val_csv = self._open(out / "val.csv", VAL_COLUMNS)
        # On resume, drop TensorBoard events logged after the checkpoint we resume from.
        self.tensorboard = _summary_writer(out / "tensorboard", start_step if start_step else None)
        self.out = out
        self._extra: dict[str, tuple] = {}

    @staticmethod
    def _open(path: Path, columns: list[str]):
        new = not path.exists()
        handle = open(path, "a", newline="")
        writer = csv.DictWriter(handle, fieldnames=columns)
        if new:
            writer.writeheader()
        return handle, writer

    def train(self, row: dict[str, Any]) -> None:
        self.train_csv.writerow(row)
        self.train_file.flush()
        for key in ("loss", "bpp", "psnr", "lr", "images_per_s"):
            self.tensorboard.add_scalar(f"train/{key}", row[key], row["step"])

    def validation(self, step: int, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.val_csv.writerow({"step": step, **row})
            self.tensorboard.add_scalar(f"val/bpp_anchor{row['anchor']}", row["bpp"], step)
            self.tensorboard.add_scalar(f"val/psnr_anchor{row['anchor']}", row["psnr"], step)
        self.val_file.flush()
        self.tensorboard.flush()

    def extra(self, name: str, row: dict[str, Any]) -> None:
        """A task's own rows (e.g. mask statistics) in <name>.csv and TensorBoard."""
        if name not in self._extra:
            self._extra[name] = self._open(self.out / f"{name}.csv", list(row))
        handle, writer = self._extra[name]
        writer.writerow(row)
        handle.flush()
        for key, value in row.items():
            if key != "step":
                self.tensorboard.add_scalar(f"{name}/{key}", value, row["step"])

    def close(self) -> None:
        self.train_file.close()
        self.val_file.close()
        for handle, _ in self._extra.values():
            handle.close()
        self.tensorboard.close()


class LogWindow:
    """Training statistics between two log rows, overall and per rate anchor.

    A step contributes a vector: [loss / processes, count per anchor, MSE sum per anchor, bpp sum per
    anchor], so that summing over processes (all_reduce) and over steps gives window means.
    """

    def __init__(self, start: float) -> None:
        self.reset(start)

    def reset(self, start: float) -> None:
        """Start an empty window at time ``start`` (time.perf_counter seconds)."""
        self.start = start
        self.steps = 0
        self.total = torch.zeros(1 + 3 * NUM_ANCHORS, dtype=torch.float64)

    @staticmethod
    def step_stats(loss: torch.Tensor, mse: torch.Tensor, bpp: torch.Tensor, anchors: torch.Tensor, processes: int) -> torch.Tensor:
        """One process's vector for one step: ``loss`` the batch mean, ``mse``, ``bpp`` and ``anchors`` (B,)."""
        one_hot = torch.nn.functional.one_hot(anchors.long(), NUM_ANCHORS).float()
        return torch.cat([
            (loss.float() / processes).view(1),
            one_hot.sum(0),
            (one_hot * mse.float().view(-1, 1)).sum(0),
            (one_hot * bpp.float().view(-1, 1)).sum(0),
        ])

    def add(self, stats: torch.Tensor) -> None:
        """Add one step's vector, summed over processes."""
        self.total += stats.double()
        self.steps += 1

    def row(self, step: int, lr: float, now: float, elapsed_s: float) -> dict[str, float]:
        """The train.csv row (TRAIN_COLUMNS) of the window ending at ``now``; anchors not drawn are NaN."""
        steps = max(self.steps, 1)
        counts, mse, bpp = self.total[1:].view(3, NUM_ANCHORS)
        crops = float(counts.sum())
        mean_mse = float(mse.sum()) / max(crops, 1)
        row = {
            "step": step, "loss": float(self.total[0]) / steps, "bpp": float(bpp.sum()) / max(crops, 1),
            "mse": mean_mse, "psnr": _psnr(mean_mse), "lr": lr,
            "images_per_s": crops / max(now - self.start, 1e-9), "elapsed_s": elapsed_s,
        }
        for a in range(NUM_ANCHORS):
            n = float(counts[a])
            row[f"bpp_a{a}"] = float(bpp[a]) / n if n else float("nan")
            row[f"psnr_a{a}"] = _psnr(float(mse[a]) / n) if n else float("nan")
        return row


def _psnr(mse: float) -> float:
    return -10 * math.log10(max(mse, 1e-10))

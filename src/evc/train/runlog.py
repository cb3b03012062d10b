"""Run logs: CSV files (train.csv, val.csv) and TensorBoard event files in the run folder."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from evc.extras import require

# Each row holds the means over the steps since the previous row, overall and per rate anchor (a0 =
# the lowest rate), since single batches swing widely with the anchors they happen to draw.
TRAIN_COLUMNS = ["step", "loss", "bpp", "mse", "psnr", "lr", "images_per_s", "elapsed_s"] + [
    f"{name}_a{a}" for name in ("bpp", "psnr") for a in range(4)
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

"""`evc train` / `python -m evc.train`: options generated from TrainConfig, so they cannot drift apart."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path

from evc.train.config import TrainConfig, make_config, read_toml

HELP = {
    "model": "model to train (registry name)",
    "data": "training images: folders and/or shard roots with manifest.json (repeatable)",
    "out": "run folder: config.toml, checkpoint.pt, export/, train.csv, val.csv, tensorboard/",
    "init_weights": "start from these weights instead of a random initialisation",
    "steps": "total optimisation steps",
    "batch_size": "crops per step and process",
    "crop": "crop size in pixels (multiple of 64)",
    "lr": "peak learning rate (Adam)",
    "lr_final_fraction": "final learning rate as a fraction of the peak (cosine decay)",
    "warmup_steps": "linear warm-up steps",
    "rate_lr_factor": "learning-rate multiplier of the rate parameters (q_scale, q_basic)",
    "cache_images": "decode each training image once and keep it in memory",
    "grad_clip": "clip the gradient norm at this value (0: off)",
    "seed": "seed of the initialisation, the data order and the noise",
    "workers": "data-loading processes",
    "device": "cpu, cuda, cuda:N (default: cuda if available); under torchrun each process takes its own GPU",
    "amp": "bf16 autocast of the networks (CUDA, and CPUs with native bf16); rate terms stay float32",
    "channels_last": "channels-last memory layout (CUDA only)",
    "compile": "torch.compile the transforms",
    "log_every": "log every N steps (train.csv, TensorBoard)",
    "val_every": "validate on Kodak with real coding every N steps",
    "val_images": "how many Kodak images to validate on (0: off)",
    "kodak": "Kodak folder (default: ../shared/data/kodak)",
    "checkpoint_every": "checkpoint and export every N steps",
    "time_limit_minutes": "stop cleanly after this many minutes (0: no limit); the lr schedule then follows time",
    # evc distill
    "teacher": "the teacher's weights (file or folder; its metadata names the teacher model)",
    "student": "the student model (registry name), smaller than the teacher",
    "sparsity": "sparsity loss: ours (decaying ceiling on the removed masks), l1 or l2 (on every mask)",
    "sparsity_weight": "weight of the sparsity loss (0: the loss's default)",
    "decay_steps": "steps of the mask-decay phase",
    "finetune_steps": "steps of the fine-tune phase after merging (0: none)",
    "mask_lr": "learning rate of the masks",
}
# Settings a distillation derives itself (from the teacher and the phases).
DISTILL_DERIVED = ("model", "steps", "init_weights")


def build_parser(
    prog: str = "evc train", cls: type[TrainConfig] = TrainConfig, exclude: tuple[str, ...] = ()
) -> argparse.ArgumentParser:
    from evc.cli.main import _Parser  # one-line errors, like every evc command

    description = (cls.__doc__ or "").strip() if cls is not TrainConfig else "Train an EVC model (variable rate, 4 anchors)."
    parser = _Parser(prog=prog, description=description)
    parser.add_argument("--config", metavar="FILE", help="TOML file of settings (the command line overrides it)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    for f in fields(cls):
        if f.name in exclude:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = type(getattr(cls(), f.name))
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=HELP[f.name])
        elif kind is list:
            parser.add_argument(flag, action="append", default=None, metavar="PATH", help=HELP[f.name])
        else:
            parser.add_argument(flag, type=kind, default=None, help=HELP[f.name])
    return parser


def _resolve(args: argparse.Namespace, cls: type[TrainConfig], saved_name: str) -> TrainConfig:
    """Settings from --config (or, on --resume, the run's saved config) and the command line."""
    overrides = {f.name: getattr(args, f.name, None) for f in fields(cls)}
    file_values = read_toml(args.config, cls) if args.config else {}
    if args.resume and not args.config:
        out = overrides["out"] or file_values.get("out")
        saved = Path(out) / saved_name if out else None
        if saved is None or not saved.is_file():
            from evc.train.config import ConfigError

            raise ConfigError("--resume needs --out RUN_FOLDER of an existing run (with its config.toml)")
        file_values = read_toml(saved, cls)
    for name in DISTILL_DERIVED if cls is not TrainConfig else ():
        file_values.pop(name, None)
    return make_config(file_values, overrides, cls)


def run(argv: list[str]) -> int:
    from evc.train.trainer import Trainer, describe_export

    args = build_parser().parse_args(argv)
    config = _resolve(args, TrainConfig, "config.toml")
    trainer = Trainer(config, resume=args.resume)
    export = trainer.run()
    if trainer.procs.is_main:
        print(describe_export(export))
    return 0


def run_distill_command(argv: list[str]) -> int:
    from evc.distill.distill import DistillConfig, run_distill
    from evc.train.trainer import describe_export

    args = build_parser("evc distill", DistillConfig, DISTILL_DERIVED).parse_args(argv)
    config = _resolve(args, DistillConfig, "decay/config.toml")
    export = run_distill(config, resume=args.resume)  # type: ignore[arg-type]
    if int(os.environ.get("RANK", "0")) == 0:
        print(describe_export(export))
    return 0


def main() -> int:
    from evc.cli.main import main as evc_main

    return evc_main(["train", *sys.argv[1:]])

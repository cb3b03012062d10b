"""`evc train` / `python -m evc.train`: options generated from TrainConfig, so they cannot drift apart."""

from __future__ import annotations

import argparse
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
    "grad_clip": "clip the gradient norm at this value (0: off)",
    "seed": "seed of the initialisation, the data order and the noise",
    "workers": "data-loading processes",
    "device": "cpu, cuda, cuda:N (default: cuda if available); under torchrun each process takes its own GPU",
    "amp": "bf16 autocast for the transforms on CUDA",
    "channels_last": "channels-last memory layout on CUDA",
    "compile": "torch.compile the transforms",
    "log_every": "log every N steps (train.csv, TensorBoard)",
    "val_every": "validate on Kodak with real coding every N steps",
    "val_images": "how many Kodak images to validate on (0: off)",
    "kodak": "Kodak folder (default: ../shared/data/kodak)",
    "checkpoint_every": "checkpoint and export every N steps",
    "time_limit_minutes": "stop cleanly after this many minutes (0: no limit)",
}


def build_parser(prog: str = "evc train") -> argparse.ArgumentParser:
    from evc.cli.main import _Parser  # one-line errors, like every evc command

    parser = _Parser(prog=prog, description="Train an EVC model (variable rate, 4 anchors).")
    parser.add_argument("--config", metavar="FILE", help="TOML file of settings (the command line overrides it)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = type(getattr(TrainConfig(), f.name))
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=HELP[f.name])
        elif kind is list:
            parser.add_argument(flag, action="append", default=None, metavar="PATH", help=HELP[f.name])
        else:
            parser.add_argument(flag, type=kind, default=None, help=HELP[f.name])
    return parser


def run(argv: list[str]) -> int:
    from evc.train.trainer import Trainer, describe_export

    args = build_parser().parse_args(argv)
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    file_values = read_toml(args.config) if args.config else {}
    if args.resume and not args.config:
        out = overrides["out"] or file_values.get("out")
        saved = Path(out) / "config.toml" if out else None
        if saved is None or not saved.is_file():
            from evc.train.config import ConfigError

            raise ConfigError("--resume needs --out RUN_FOLDER of an existing run (with its config.toml)")
        file_values = read_toml(saved)
    config = make_config(file_values, overrides)
    trainer = Trainer(config, resume=args.resume)
    export = trainer.run()
    if trainer.procs.is_main:
        print(describe_export(export))
    return 0


def main() -> int:
    from evc.cli.main import main as evc_main

    return evc_main(["train", *sys.argv[1:]])

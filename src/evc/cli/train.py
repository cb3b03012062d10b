"""`evc train | distill`: options generated from the config dataclasses, so they cannot drift apart.

Under torchrun, run the same command line as ``python -m evc train ...`` (each process parses it).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import fields
from pathlib import Path

from evc.cli.common import EXIT_OK
from evc.train.config import ConfigError, TrainConfig, make_config, read_toml

HELP = {
    "model": "model to train (registry name)",
    "data": "training images: folders and/or shard roots with manifest.json (repeatable)",
    "out": "run folder: config.toml, checkpoint.pt, export/, train.csv, val.csv, tensorboard/",
    "holdout": "leave the validation split's 16 photos (evc.shared_data.VALIDATION_PHOTOS) out of training",
    "anchor_weights": "how often each rate anchor is drawn, low rate to high, e.g. 1,1,2,2 (default: uniform)",
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
    "prefetch": "with --workers 0: load the next batch in a thread while the step runs",
    "threads": "CPU threads: auto (the free cores, measured again every 5 seconds) or a count "
               "(default: $EVC_THREADS, else $OMP_NUM_THREADS, else auto)",
    "workers": "data-loading processes (0: a thread of the training process, a step ahead)",
    "device": "cpu, cuda, cuda:N (default: cuda if available); under torchrun each process takes its own GPU",
    "amp": "bf16 autocast of the networks (CUDA, and CPUs with native bf16); rate terms stay float32",
    "channels_last": "channels-last memory layout (CUDA only)",
    "compile": "torch.compile the transforms",
    "log_every": "log every N steps (train.csv, TensorBoard)",
    "val_every": "validate on Kodak with real coding every N steps",
    "val_images": "how many Kodak images to validate on (0: off)",
    "kodak": "Kodak folder (default: ../shared/data/kodak)",
    "checkpoint_every": "checkpoint and export every N steps",
    "time_limit_minutes": "stop cleanly after this many minutes of training (0: no limit; paused time does not "
                          "count); the lr schedule then follows time",
    "downscale_p": "random downscaling: the share of crops cut larger and scaled down to the crop (0: off)",
    "downscale_min": "random downscaling: the smallest scale factor (drawn log-uniformly in [this, 1])",
    "ema_decay": "keep an exponential moving average of the weights with this decay, e.g. 0.999 (0: none); "
                 "exported beside the raw weights as export-ema/",
    "keep_exports_every": "keep a copy of the exports every N steps in exports/step-N/ (a multiple of "
                          "--checkpoint-every; 0: none)",
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


def _add_config_options(parser: argparse.ArgumentParser, cls: type[TrainConfig], exclude: tuple[str, ...] = ()) -> None:
    """--config, --resume, and one option per field of ``cls`` but ``exclude`` (default None: not given)."""
    parser.add_argument("--config", metavar="FILE", help="TOML file of settings (the command line overrides it)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    defaults = cls()
    for f in fields(cls):
        if f.name in exclude:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = type(getattr(defaults, f.name))
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=HELP[f.name])
        elif kind is list:
            parser.add_argument(flag, action="append", default=None, metavar="PATH", help=HELP[f.name])
        else:
            parser.add_argument(flag, type=kind, default=None, help=HELP[f.name])


def _resolve(args: argparse.Namespace, cls: type[TrainConfig], saved_name: str) -> TrainConfig:
    """Settings from --config (or, on --resume, the run's saved config) and the command line."""
    overrides = {f.name: getattr(args, f.name, None) for f in fields(cls)}
    file_values = read_toml(args.config, cls) if args.config else {}
    if args.resume and not args.config:
        out = overrides["out"] or file_values.get("out")
        saved = Path(out) / saved_name if out else None
        if saved is None or not saved.is_file():
            raise ConfigError("--resume needs --out RUN_FOLDER of an existing run (with its config.toml)")
        file_values = read_toml(saved, cls)
    for name in DISTILL_DERIVED if cls is not TrainConfig else ():
        file_values.pop(name, None)
    return make_config(file_values, overrides, cls)


def cmd_train(args: argparse.Namespace) -> int:
    from evc.train.trainer import Trainer, describe_export

    config = _resolve(args, TrainConfig, "config.toml")
    trainer = Trainer(config, resume=args.resume)
    export = trainer.run()
    if trainer.procs.is_main:
        print(describe_export(export))
    return EXIT_OK


def cmd_distill(args: argparse.Namespace) -> int:
    from evc.distill.distill import DistillConfig, run_distill
    from evc.train.trainer import describe_export

    config = _resolve(args, DistillConfig, "decay/config.toml")
    export = run_distill(config, resume=args.resume)  # type: ignore[arg-type]
    if int(os.environ.get("RANK", "0")) == 0:
        print(describe_export(export))
    return EXIT_OK


def _complete_train(parser: argparse.ArgumentParser) -> None:
    parser.description = "Train an EVC model (variable rate, 4 anchors)."
    _add_config_options(parser, TrainConfig)


def _complete_distill(parser: argparse.ArgumentParser) -> None:
    from evc.distill.distill import DistillConfig  # the training stack: imported only for this command

    parser.description = (DistillConfig.__doc__ or "").strip()
    _add_config_options(parser, DistillConfig, DISTILL_DERIVED)


def register(commands: argparse._SubParsersAction) -> None:
    """Add `train` and `distill` to the `evc` parser's subcommands (their options are added when they run)."""
    # own_extras: these two have always reported unknown options as "see 'evc train --help'".
    train = commands.add_parser("train", help="train a model (evc train --help)", own_extras=True,
                                complete=_complete_train)
    train.set_defaults(run=cmd_train)
    distill = commands.add_parser("distill", help="distil a smaller model by mask decay (evc distill --help)",
                                  own_extras=True, complete=_complete_distill)
    distill.set_defaults(run=cmd_distill)

"""One training run's settings: defaults, overridden by a TOML file, overridden by the command line.

The resolved settings are written to ``<out>/config.toml`` so every run can be repeated.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from evc.errors import EVCError
from evc.models.rates import NUM_ANCHORS
from evc.shared_data import VALIDATION_PHOTOS
from evc.threads import parse as parse_threads


class ConfigError(EVCError):
    pass


@dataclass
class TrainConfig:
    model: str = "EVC-LL"
    data: list[str] = field(default_factory=list)  # folders of images and/or shard roots with manifest.json
    # Leave the validation split's photos (evc.shared_data.VALIDATION_PHOTOS) out of the training data.
    holdout: bool = True
    out: str = "runs/evc"
    init_weights: str = ""  # start from these weights (file or folder) instead of random init
    steps: int = 100_000
    batch_size: int = 8  # per process
    crop: int = 256
    # Adam with a short linear warm-up and a cosine decay to lr_final_fraction * lr: one knob for any
    # budget, and the end-of-training decay gives the usual gain of a final low-lr phase.
    lr: float = 1e-4
    lr_final_fraction: float = 0.1
    warmup_steps: int = 500
    # The rate parameters (q_scale per anchor, q_basic) learn at lr * rate_lr_factor: at small budgets
    # the anchors' q_scale barely leave their initial values at the network's learning rate.
    rate_lr_factor: float = 1.0
    grad_clip: float = 1.0
    # How often each rate anchor is drawn, low rate to high, e.g. "1,1,2,2" ("": uniform).
    anchor_weights: str = ""
    seed: int = 0
    workers: int = 2
    # With workers=0: make the next batch in a thread of the training process while the step runs.
    prefetch: bool = True
    # CPU threads: "auto" (the free cores, measured again every 5 seconds: see evc.threads) or a
    # count; "" = $EVC_THREADS, else $OMP_NUM_THREADS, else auto. One process on the CPU only.
    threads: str = ""
    cache_images: bool = True  # decode each training image once and keep it in memory (0.6 GiB for the shards)
    device: str = ""  # "" = cuda if available, else cpu
    # bf16 autocast of the networks (the entropy model's arithmetic and rate terms stay float32), on
    # CUDA and on CPUs with native bf16; the run's config.toml records what was actually used.
    amp: bool = True
    channels_last: bool = True  # on CUDA only (see evc.train.speed)
    compile: bool = False  # torch.compile the transforms
    log_every: int = 50
    val_every: int = 2_000
    val_images: int = 4  # first N Kodak images; 0 disables validation
    kodak: str = ""  # Kodak folder for validation ("" = ../shared/data/kodak if present)
    checkpoint_every: int = 1_000
    # Stop cleanly (validation, checkpoint, export) after this long; 0 = no limit. With a limit, the
    # learning-rate schedule runs on the time budget: it ends its decay when the time is up.
    time_limit_minutes: float = 0.0
    # Random downscaling: this share of the crops is cut larger and scaled down to the crop, by a
    # factor drawn log-uniformly in [downscale_min, 1] (0: off).
    downscale_p: float = 0.0
    downscale_min: float = 0.5
    # Keep an exponential moving average of the weights (0: none) and export it beside the raw
    # weights, as export-ema/ (evc.train.ema); the validation split decides which of the two is used.
    ema_decay: float = 0.0
    # Also keep a copy of the exports every N steps (a multiple of checkpoint_every; 0: none), in
    # exports/step-N/: candidates for the export at the best validation point, not only the last.
    keep_exports_every: int = 0

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("no training data: give --data FOLDER (a folder of images or a shard root)")
        positive = ("steps", "batch_size", "crop", "log_every", "val_every", "checkpoint_every")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.crop % 64:
            raise ConfigError(f"crop must be a multiple of 64, got {self.crop}")
        if not self.lr > 0 or not 0 <= self.lr_final_fraction <= 1 or not self.rate_lr_factor > 0:
            raise ConfigError("lr and rate_lr_factor must be positive and lr_final_fraction in [0, 1]")
        if min(self.warmup_steps, self.workers, self.val_images, self.grad_clip, self.time_limit_minutes) < 0:
            raise ConfigError("warmup_steps, workers, val_images, grad_clip and time_limit_minutes must not be negative")

        if not 0 <= self.downscale_p <= 1 or not 0 < self.downscale_min <= 1:
            raise ConfigError(
                f"downscale_p must be in [0, 1] and downscale_min in (0, 1], got {self.downscale_p} and {self.downscale_min}"
            )
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1) (0: no weight average), got {self.ema_decay}")
        if self.keep_exports_every < 0 or self.keep_exports_every % self.checkpoint_every:
            raise ConfigError(
                f"keep_exports_every must be a multiple of checkpoint_every ({self.checkpoint_every}) or 0, "
                f"got {self.keep_exports_every}"
            )
        self.anchor_probabilities()
        try:
            parse_threads(self.threads or None)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def held_out_photos(self) -> tuple[str, ...]:
        """The training photos this run leaves out (the validation split), none without holdout."""
        return VALIDATION_PHOTOS if self.holdout else ()

    def anchor_probabilities(self) -> tuple[float, ...] | None:
        """The anchor_weights as NUM_ANCHORS positive numbers, or None for uniform; ConfigError if malformed."""
        if not self.anchor_weights.strip():
            return None
        try:
            weights = tuple(float(w) for w in self.anchor_weights.split(","))
        except ValueError:
            weights = ()
        if len(weights) != NUM_ANCHORS or not all(math.isfinite(w) and w > 0 for w in weights):
            raise ConfigError(
                f"anchor_weights must be {NUM_ANCHORS} positive numbers separated by commas, got {self.anchor_weights!r}"
            )
        return weights

    def to_toml(self) -> str:
        lines = ["# evc training run (resolved settings)"]
        for f in fields(self):
            lines.append(f"{f.name} = {_toml_value(getattr(self, f.name))}")
        return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def read_toml(path: str | Path, cls: type[TrainConfig] = TrainConfig) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"config file {path}: unknown settings {', '.join(unknown)}")
    return values


def make_config(file_values: dict[str, Any], overrides: dict[str, Any], cls: type[TrainConfig] = TrainConfig) -> TrainConfig:
    """Defaults <- file values <- command-line overrides (None means "not given")."""
    config = cls()
    types = {f.name: type(getattr(config, f.name)) for f in fields(cls)}
    merged = {**file_values, **{k: v for k, v in overrides.items() if v is not None}}
    for name, value in merged.items():
        expected = types[name]
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"setting {name} must be {expected.__name__}, got {value!r}")
        if expected is list and not all(isinstance(v, str) for v in value):
            raise ConfigError(f"setting {name} must be a list of strings")
    config = dataclasses.replace(config, **merged)
    config.validate()
    return config

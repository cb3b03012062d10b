"""The training loop: one process or many (DDP under torchrun), CPU or CUDA.

Read ``Trainer.run()`` first: it is the loop, and each of its steps is a short method below it, in
the order it runs:

    set up (Trainer.__init__): processes, device settings, data, model and objective, optimizer, resume
    each step:  learning rate -> train step -> [main process] log, checkpoint + export, validate
                -> all processes wait for the main one
    stop:       the last step, ``until_step``, the time budget, or Ctrl-C (checkpoint, then re-raise)

Every DDP call (all-reduce, broadcast, barrier) goes through :class:`Processes`; files are written by
the main process only, in ``Trainer._report`` and the run's opening and closing.

Exact resume rests on two choices: every step reseeds the random number generator from (seed, step,
rank), and each step's data is a pure function of (seed, step, rank) (see data.py). A checkpoint then
needs only the model, optimizer, step and the training time so far (which drives a time-budget
schedule).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from evc import arguments
from evc.entropy.exact_parameters import exact_headroom, format_headroom
from evc.errors import EVCError
from evc.extras import require
from evc.models.card import TrainingTotals, training_totals
from evc.models.evc import EVC
from evc.models.registry import create_model, get_spec
from evc.models.scalable import expand_single_encoder_state
from evc.models.variable_rate import LAMBDAS, NUM_ANCHORS
from evc.models.weights import (
    CROP_KEY,
    DATA_KEY,
    DATE_KEY,
    DEVICE_KEY,
    EMA_KEY,
    HELD_OUT_KEY,
    IMAGES_SEEN_KEY,
    INIT_WEIGHTS_KEY,
    LAMBDAS_KEY,
    MODEL_KEY,
    RECIPE_KEY,
    STEPS_KEY,
    TRAINING_SECONDS_KEY,
    apply_state,
    load_model,
    read_metadata,
    save_weights,
)
from evc.threads import ThreadPolicy
from evc.train.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from evc.train.clock import TrainingClock
from evc.train.config import ConfigError, TrainConfig
from evc.train.data import Prefetcher, RandomCrops, StepBatches, find_images, step_batches
from evc.train.ema import WeightAverage
from evc.train.objective import RateDistortionLoss
from evc.train.runlog import LogWindow, RunLog
from evc.train.speed import StepSettings, cpu_model_name, keep_allocations_mapped, step_settings
from evc.train.validation import kodak_images, validate

EXPORT_DIR = "export"
EMA_EXPORT_DIR = "export-ema"  # the weight average's export, beside the raw weights'
KEPT_EXPORTS_DIR = "exports"  # exports kept along the run (keep_exports_every): exports/step-N/{export,export-ema}
# How often a CPU run re-measures the free cores (evc.threads). By time, not by step: next to a process
# of equal weight, 2 spinning OpenMP threads on 2 cores fell to 0.77 crops/s (4 % of alone;
# benchmarks/train_share.py, 2026-12-04), so a 50-step log window then lasted about 17 minutes.
FOLLOW_FREE_CORES_EVERY_S = 5.0


def learning_rate_factor(step: int, config: TrainConfig, elapsed_s: float = 0.0) -> float:
    """Linear warm-up, then cosine decay from 1 to lr_final_fraction.

    The decay's progress is the larger of the steps done and, under a time limit, the training time
    used: a run stopped by its time budget still ends at the low learning rate.
    """
    warmup = min(config.warmup_steps, config.steps // 10)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, config.steps - warmup)
    if config.time_limit_minutes > 0:
        progress = max(progress, elapsed_s / (config.time_limit_minutes * 60))
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return config.lr_final_fraction + (1 - config.lr_final_fraction) * cosine


def device_description(device: torch.device) -> str:
    """The hardware a run trains on, for the model card ("NVIDIA H200", "CPU: AMD EPYC, 2 threads")."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU: {cpu_model_name()}, {torch.get_num_threads()} threads"


def build_model(config: TrainConfig) -> EVC:
    """The model to train: fresh, or from --init-weights. A scalable model also starts from the
    single-encoder model of the same sizes (Scale-SL from EVC-SL): that encoder fills every level.

    Raises ConfigError when --init-weights holds another model, ModelError for unusable weights.
    """
    spec = get_spec(config.model)
    if not config.init_weights:
        return create_model(spec.name, seed=config.seed)
    # Weights that name no model are taken for the model trained.
    loaded, source, _ = load_model(config.init_weights, default=spec.name)
    if source == spec:
        return loaded
    if spec.scalable and not source.scalable and (source.encoder, source.decoder) == (spec.encoder, spec.decoder):
        model = create_model(spec.name, seed=config.seed)
        state = expand_single_encoder_state(loaded.state_dict(), model.num_levels)  # type: ignore[attr-defined]
        apply_state(model, state, config.init_weights)
        return model
    raise ConfigError(f"--init-weights {config.init_weights} holds {source.name}, not {spec.name}")


class TrainingTask:
    """What the loop trains: here a registry model on the rate-distortion loss. Mask decay subclasses
    this (evc.distill) and so reuses the loop, data, checkpoints, logs, validation and DDP as they are."""

    log_name = ""  # a task's own CSV in the run folder (log_row), if any

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    @property
    def name(self) -> str:
        """What the checkpoint trains; a resumed run must match it."""
        return get_spec(self.config.model).name

    def build(self) -> nn.Module:
        """The module to train (on the CPU; the trainer moves it)."""
        return build_model(self.config)

    def transforms(self, module: nn.Module) -> list[nn.Module]:
        """The parts that ``compile = true`` compiles."""
        return [module.g_a, module.g_s]

    def objective(self, module: nn.Module) -> nn.Module:
        """A module whose forward(x, anchor, entropy_autocast) returns (loss, mse, bpp)
        (:class:`~evc.train.objective.RateDistortionLoss`)."""
        return RateDistortionLoss(module)

    def param_groups(self, module: nn.Module) -> list[dict]:
        """Optimizer groups; a group's "lr_factor" scales the run's learning rate for it."""
        rate = {id(p) for p in module.rate.parameters()}
        return [
            {"params": [p for p in module.parameters() if id(p) not in rate]},
            {"params": [p for p in module.parameters() if id(p) in rate], "lr_factor": self.config.rate_lr_factor},
        ]

    def before_step(self, step: int) -> None:
        """Called before each optimisation step with the step about to run."""

    def after_step(self, step: int) -> None:
        """Called right after the optimiser updated the parameters in that step."""

    def codec_model(self, module: nn.Module) -> tuple[EVC, str]:
        """The plain model (and its registry name) to validate and export."""
        return module, self.name  # type: ignore[return-value]

    def metadata(self) -> dict[str, object]:
        """The task's own entries in the export's metadata."""
        return {}

    def log_row(self, module: nn.Module) -> dict[str, float] | None:
        """The task's own row for ``<log_name>.csv`` at each log step, or None."""
        return None


class Trainer:
    """Trains ``config.model`` on ``config.data``; ``run()`` returns the folder of exported weights.

    ``resume`` continues the run in ``config.out`` from its checkpoint (else a run there is refused
    with EVCError). ``tune_allocator=False`` leaves glibc's allocator as it is (to time the plain
    step, benchmarks/train_speed.py); runs always tune it on the CPU.
    """

    def __init__(
        self, config: TrainConfig, resume: bool = False, task: TrainingTask | None = None, tune_allocator: bool = True
    ) -> None:
        self.task = task or TrainingTask(config)
        self.out = Path(config.out)
        self.procs = start_processes(config.device)
        if not resume and (self.out / CHECKPOINT_NAME).exists():
            raise EVCError(f"{self.out} already holds a training run; pass --resume to continue it or choose another --out")
        self.settings, self.config = self._device_settings(config, tune_allocator)
        # One process on the CPU follows the free cores (evc.threads); GPUs and torchrun's CPU processes
        # keep torch's setting.
        single_cpu = self.procs.device.type == "cpu" and self.procs.world_size == 1
        self.thread_policy = ThreadPolicy(self.config.threads or None) if single_cpu else None
        self._followed_at = -math.inf  # time.monotonic() of the last thread-count choice
        self.data = self._training_data()
        self.model, self.objective = self._model_and_objective()
        self.optimizer = self._optimizer()
        self.step = 0
        self.elapsed_before = 0.0  # training seconds of earlier sessions of this run
        self.ema = WeightAverage(self.model, self.config.ema_decay) if self.config.ema_decay > 0 else None
        if resume:
            self._resume()
        self._clock = TrainingClock(self.elapsed_before)
        self.validation_images = kodak_images(self.config.kodak, self.config.val_images)
        # The training already in the init weights' lineage, which the export's totals continue.
        self.earlier_training = (
            training_totals(read_metadata(self.config.init_weights)) if self.config.init_weights else None
        )
        # Opened by run(): the clock, progress bar, log window and (main process) the run's log files.
        self._started: float | None = None
        self._bar = None
        self._window = LogWindow(0.0)
        self._runlog: RunLog | None = None

    def run(self, until_step: int | None = None) -> Path:
        """Train to ``config.steps`` (or stop, with a checkpoint and export, at ``until_step``, or when
        the time budget is spent); returns the export."""
        last = self.config.steps if until_step is None else min(until_step, self.config.steps)
        self._open_run()
        batches = None
        restore_signals = _stop_cleanly_on_signals()
        try:
            batches = self.batches()
            self.follow_free_cores()
            while self.step < last:
                images, anchors = next(batches)
                lr = self._set_learning_rate()
                self._window.add(self.train_step(images, anchors))
                self.step += 1
                self._bar.update(1)
                out_of_time = self._out_of_time()
                if self.procs.is_main:  # the one process that writes files
                    self._report(lr, finished=self.step == last or out_of_time)
                self.follow_free_cores()
                self.procs.barrier()  # the others wait for it, e.g. while it validates
                if out_of_time:
                    _say(f"time limit reached at step {self.step}; resume with --resume (and a larger --time-limit-minutes)")
                    break
        except KeyboardInterrupt:
            if self.procs.is_main:
                self._save()
            raise
        finally:
            restore_signals()
            if isinstance(batches, Prefetcher):
                batches.close()
            self._close_run()
        return self.out / EXPORT_DIR

    # -- set up (in __init__'s order) ------------------------------------------------------------
    def _device_settings(self, config: TrainConfig, tune_allocator: bool) -> tuple[StepSettings, TrainConfig]:
        """How the step runs on this device, and the config as run: what runs is what the run records
        (config.toml, checkpoint), e.g. no bf16 on a CPU without it."""
        settings = step_settings(self.procs.device, config.amp, config.channels_last, tune_allocator)
        config = dataclasses.replace(config, amp=settings.amp, channels_last=settings.channels_last)
        if settings.keep_allocations_mapped:
            keep_allocations_mapped()
        return settings, config

    def _training_data(self) -> RandomCrops:
        """The training crops; only the main process reports skipped files."""
        config = self.config
        exclude = config.held_out_photos()
        records = find_images(config.data, config.crop, _say if self.procs.is_main else (lambda _: None), exclude)
        return RandomCrops(
            records, config.crop, config.seed, cache=config.cache_images, anchor_weights=config.anchor_probabilities(),
            downscale=(config.downscale_p, config.downscale_min),
        )

    def _model_and_objective(self) -> tuple[nn.Module, nn.Module]:
        """The task's module on the device in the step's precision and layout, and its objective
        (the unit DDP replicates when there are several processes)."""
        config, device = self.config, self.procs.device
        model = self.task.build().to(device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if config.compile:
            for transform in self.task.transforms(model):
                transform.compile()
        objective = self.task.objective(model).to(device)
        return model, self.procs.replicate(objective)

    def _optimizer(self) -> torch.optim.Adam:
        """Adam over the task's groups; each group keeps its "base_lr", which the schedule scales."""
        groups = [g for g in self.task.param_groups(self.model) if g["params"]]
        for group in groups:
            group["base_lr"] = group.pop("lr", self.config.lr) * group.pop("lr_factor", 1.0)
            group["lr"] = group["base_lr"]
        return torch.optim.Adam(groups, lr=self.config.lr)

    def _resume(self) -> None:
        """Continue from the run's checkpoint: model, optimizer, step, training time so far, and the
        random number generators' states (load_checkpoint restores them).

        Raises EVCError when the checkpoint is missing, unreadable or trains another model.
        """
        path = self.out / CHECKPOINT_NAME
        # Learning rates follow this run's settings (a resume may change --lr or the time budget).
        base_lrs = [group["base_lr"] for group in self.optimizer.param_groups]
        state = load_checkpoint(path)
        if state["model_name"] != self.task.name:
            raise EVCError(f"{path} trains {state['model_name']}, not {self.task.name}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]
        self.elapsed_before = float(state.get("elapsed_s", 0.0))
        if self.ema is not None:
            if state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
            else:  # turned on by this resume: the average starts from the weights as they are now
                self.ema = WeightAverage(self.model, self.config.ema_decay, start_step=self.step)
        for group, base_lr in zip(self.optimizer.param_groups, base_lrs):
            group["base_lr"] = base_lr

    # -- open and close one session of run() ---------------------------------------------------
    def _open_run(self) -> None:
        """Main process: the run folder, its config.toml and log files. Every process: the clock,
        the log window and the progress bar (shown by the main process only)."""
        tqdm = require("tqdm", "train").tqdm
        if self.procs.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.toml").write_text(self.config.to_toml())
            self._runlog = RunLog(self.out, self.step)
        self.model.train()
        self._started = time.perf_counter()
        self._clock.start()
        self._window = LogWindow(self._started)
        self._bar = tqdm(
            total=self.config.steps, initial=self.step, disable=not self.procs.is_main or None, unit="step", file=sys.stderr
        )

    def _close_run(self) -> None:
        """Close the progress bar and log files, and leave the process group."""
        self._clock.stop()
        if self._bar is not None:
            self._bar.close()
        if self._runlog is not None:
            self._runlog.close()
            self._runlog = None
        self.procs.close()

    # -- one step --------------------------------------------------------------------------------
    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 images (B, 3, crop, crop), anchors (B,)) of this process, from step ``self.step`` on, for
        :meth:`train_step`."""
        sampler = StepBatches(self.step, self.config.batch_size, self.procs.rank, self.procs.world_size)
        if self.config.workers == 0 and self.config.prefetch:  # a thread of this process, overlapping the step
            return Prefetcher(step_batches(self.data, sampler))
        loader = DataLoader(
            self.data,
            batch_sampler=sampler,
            num_workers=self.config.workers,
            pin_memory=self.procs.device.type == "cuda",
            persistent_workers=self.config.workers > 0,
        )
        return iter(loader)

    def _set_learning_rate(self) -> float:
        """Set each group's learning rate for this step; returns the run's (config.lr times the schedule)."""
        factor = learning_rate_factor(self.step, self.config, self._elapsed())
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        return self.config.lr * factor

    def follow_free_cores(self) -> None:
        """Set the CPU thread count by the thread policy, saying when it changes; at most once every
        FOLLOW_FREE_CORES_EVERY_S seconds (the check is cheap: two clock reads; a choice reads /proc/stat)."""
        if self.thread_policy is None:
            return
        now = time.monotonic()
        if now - self._followed_at < FOLLOW_FREE_CORES_EVERY_S:
            return
        self._followed_at = now
        count = self.thread_policy.choose()
        if count != torch.get_num_threads():
            _say(f"step {self.step}: {count} CPU thread{'s' if count > 1 else ''} (free cores: evc.threads)")
            torch.set_num_threads(count)

    def train_step(self, images: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """One optimisation step on uint8 ``images`` (B, 3, H, W) at rate ``anchors`` (B,); returns its
        statistics (see :class:`LogWindow`), summed over processes, on the CPU. Does not advance
        ``self.step``."""
        config, device = self.config, self.procs.device
        self.task.before_step(self.step)
        torch.manual_seed(_step_seed(config.seed, self.step, self.procs.rank))
        x = images.to(device, non_blocking=True).float().div_(255.0)
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        anchors = anchors.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp):
            loss, mse, bpp = self.objective(x, anchors, entropy_autocast=self.settings.entropy_networks_autocast)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.task.after_step(self.step)
        stats = LogWindow.step_stats(loss.detach(), mse, bpp, anchors, self.procs.world_size)
        return self.procs.sum(stats).cpu()

    # -- after a step (main process) -------------------------------------------------------------
    def _report(self, lr: float, finished: bool) -> None:
        """Log, checkpoint and export, validate: each when due, and all three at the last step."""
        config = self.config
        if self.step % config.log_every == 0 or finished:
            self._log(lr)
        if self.step % config.checkpoint_every == 0 or finished:
            self._save()
        if self.step % config.val_every == 0 or finished:
            self._validate()

    def _log(self, lr: float) -> None:
        """A row of train.csv (and the task's own CSV), the progress bar, and without a terminal a line."""
        assert self._runlog is not None
        now = time.perf_counter()
        row = self._window.row(self.step, lr, now, self._elapsed())
        self._window.reset(now)
        bar = self._bar
        bar.set_postfix(loss=f"{row['loss']:.3f}", bpp=f"{row['bpp']:.3f}", psnr=f"{row['psnr']:.2f}", img_s=f"{row['images_per_s']:.1f}")
        if bar.disable:  # no terminal: progress as plain lines
            anchors = " ".join(f"{row[f'bpp_a{a}']:.3f}/{row[f'psnr_a{a}']:.2f}" for a in range(NUM_ANCHORS))
            _say(
                f"step {self.step}: loss {row['loss']:.3f}, bpp/dB per anchor {anchors}, lr {lr:.2e}, "
                f"{row['images_per_s']:.2f} crops/s, {row['elapsed_s'] / 60:.1f} min"
            )
        extra = self.task.log_row(self.model)
        if extra is not None:
            self._runlog.extra(self.task.log_name, {"step": self.step, **extra})
        self._runlog.train(row)

    def _save(self) -> None:
        """Write the checkpoint, then export the codec model with its metadata (main process only)."""
        save_checkpoint(
            self.out / CHECKPOINT_NAME,
            {
                "model_name": self.task.name,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "step": self.step,
                "elapsed_s": self._elapsed(),
                "config": dataclasses.asdict(self.config),
                "ema": self.ema.state_dict() if self.ema is not None else None,
            },
        )
        exported, name = self.task.codec_model(self.model)
        metadata = self._metadata()
        save_weights(exported, self.out / EXPORT_DIR, name, metadata, overwrite=True)
        exports = [EXPORT_DIR]
        if self.ema is not None:
            averaged, _ = self.task.codec_model(self.ema.averaged(self.model))
            ema_note = {EMA_KEY: f"decay {self.ema.decay:g} from step {self.ema.start_step}"}
            save_weights(averaged, self.out / EMA_EXPORT_DIR, name, {**metadata, **ema_note}, overwrite=True)
            exports.append(EMA_EXPORT_DIR)
        keep = self.config.keep_exports_every
        if keep > 0 and self.step % keep == 0:
            kept = self.out / KEPT_EXPORTS_DIR / f"step-{self.step}"
            for folder in exports:
                shutil.copytree(self.out / folder, kept / folder, dirs_exist_ok=True)
        # Training raises the entropy networks' weight norms; the log shows how the exact arithmetic
        # takes them (issue 19 item 5). A failure here is the codec's to report, not the training's.
        try:
            _say(f"step {self.step}: {format_headroom(exact_headroom(exported.entropy_networks))}")
        except (TypeError, ValueError) as exc:
            _say(f"step {self.step}: exact arithmetic cannot take these weights: {exc}")

    def _metadata(self) -> dict[str, object]:
        """The export's metadata: how far, on what and how the model was trained."""
        config = self.config
        images_seen = self.step * config.batch_size * self.procs.world_size
        totals = TrainingTotals(self._elapsed(), self.step, images_seen)
        if self.earlier_training is not None:
            totals = totals + self.earlier_training
        return {
            STEPS_KEY: self.step,
            IMAGES_SEEN_KEY: images_seen,
            DATA_KEY: config.data,
            HELD_OUT_KEY: len(config.held_out_photos()),
            CROP_KEY: config.crop,
            LAMBDAS_KEY: list(LAMBDAS),
            INIT_WEIGHTS_KEY: config.init_weights,
            DATE_KEY: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            TRAINING_SECONDS_KEY: round(self._elapsed(), 1),
            DEVICE_KEY: f"{self.procs.world_size} x {device_description(self.procs.device)}",
            RECIPE_KEY: (
                f"Adam lr {config.lr:g} (rate parameters x{config.rate_lr_factor:g}), warm-up {config.warmup_steps}, "
                f"cosine to x{config.lr_final_fraction:g}"
                + (f" over {config.time_limit_minutes:g} min" if config.time_limit_minutes > 0 else f" over {config.steps} steps")
                + f", batch {config.batch_size} x {config.crop}px crops, {'bf16' if config.amp else 'float32'}, "
                + anchor_sampling(config.anchor_probabilities())
                + (f", {config.downscale_p:g} of the crops downscaled by [{config.downscale_min:g}, 1]" if config.downscale_p > 0 else "")
                + (f", weight average (EMA {config.ema_decay:g}) exported beside" if config.ema_decay > 0 else "")
            ),
            **totals.metadata(),
            **self.task.metadata(),
        }

    def _validate(self) -> None:
        """Real coding of the first Kodak images at the four anchors: val.csv and a line."""
        if not self.validation_images:
            return
        assert self._runlog is not None
        exported, name = self.task.codec_model(self.model)
        rows = validate(exported, name, self.validation_images, self.procs.device)
        self.model.train()
        self._runlog.validation(self.step, rows)
        summary = ", ".join(f"{r['bpp']:.3f} bpp / {r['psnr']:.2f} dB" for r in rows)
        _say(f"step {self.step}: Kodak[{len(self.validation_images)}] at the 4 anchors: {summary}")

    # -- the clock and the stop on time ----------------------------------------------------------
    def _elapsed(self) -> float:
        """Training seconds so far, earlier sessions of this run included, paused time (kill -STOP) not."""
        return self._clock.elapsed()

    def _out_of_time(self) -> bool:
        """Whether the run's time budget is spent, agreed by all processes (the main one decides)."""
        limit = self.config.time_limit_minutes * 60
        if limit <= 0:
            return False
        return self.procs.main_decides(self._elapsed() > limit)


@dataclass(frozen=True)
class Processes:
    """This process's place in the run (one process, or one of torchrun's); every collective call of
    the loop goes through here, and each is a no-op for a single process."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def replicate(self, module: nn.Module) -> nn.Module:
        """``module`` under DDP (gradients averaged over processes), or itself for one process."""
        if self.world_size == 1:
            return module
        return DistributedDataParallel(module, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over processes, in place."""
        if self.world_size > 1:
            dist.all_reduce(tensor)
        return tensor

    def main_decides(self, value: bool) -> bool:
        """The main process's ``value``, in every process."""
        flag = torch.tensor([float(value)])
        if self.world_size > 1:
            flag = flag.to(self.device)
            dist.broadcast(flag, src=0)
        return bool(flag.item())

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group (at the end of run())."""
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def start_processes(device_name: str) -> Processes:
    """Join the torchrun process group if there is one (NCCL on CUDA, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = arguments.device(device_name or None)
    if world_size == 1:
        return Processes(0, 1, device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size(), device)


def _stop_cleanly_on_signals() -> Callable[[], None]:
    """Make SIGTERM and SIGINT stop the run as Ctrl-C does (checkpoint and export, then exit), in the
    main thread; returns what puts the earlier handlers back.

    A leg started in the background by a script (scripts/train_cpu.sh) inherits SIGINT ignored, and
    SIGTERM kills a process outright: on 2026-12-07 ``kill -INT`` left such a leg running, and a second
    process resumed beside it in the same run folder.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    earlier = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, handler in earlier.items():
            signal.signal(sig, handler)

    return restore


def _step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _say(message: str) -> None:
    require("tqdm", "train").tqdm.write(message, file=sys.stderr)


def anchor_sampling(weights: tuple[float, ...] | None) -> str:
    """How a recipe draws each crop's rate anchor, in words: "anchors drawn uniformly" or "... 1:1:2:2"."""
    if weights is None:
        return "anchors drawn uniformly"
    return "anchors drawn " + ":".join(f"{w:g}" for w in weights)


def describe_export(folder: Path) -> str:
    """One line naming an export folder's model and training steps."""
    meta = read_metadata(folder)
    return f"{meta.get(MODEL_KEY)} after {meta.get(STEPS_KEY)} steps: {folder}"

"""The training loop: one process or many (DDP under torchrun), CPU or CUDA.

Exact resume rests on two choices: every step reseeds the random number generator from (seed, step,
rank), and each step's data is a pure function of (seed, step, rank) (see data.py). A checkpoint then
needs only the model, optimizer, step and the training time so far (which drives a time-budget
schedule).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from evc.errors import EVCError
from evc.extras import require
from evc.models.evc import EVC
from evc.models.registry import create_model, get_spec
from evc.models.scalable import expand_single_encoder_state
from evc.models.variable_rate import LAMBDAS, NUM_ANCHORS
from evc.models.weights import MODEL_KEY, apply_state, load_state, read_metadata, save_weights
from evc.train.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from evc.train.config import ConfigError, TrainConfig
from evc.train.data import RandomCrops, StepBatches, find_images
from evc.train.objective import RateDistortionLoss
from evc.train.runlog import RunLog
from evc.train.speed import cpu_model_name, keep_allocations_mapped, step_settings
from evc.train.validation import kodak_images, validate

EXPORT_DIR = "export"


@dataclass(frozen=True)
class Processes:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def start_processes(device_name: str) -> Processes:
    """Join the torchrun process group if there is one (NCCL on CUDA, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if device_name:
        device = torch.device(device_name)
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if world_size == 1:
        return Processes(0, 1, device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size(), device)


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


def _step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)


def build_model(config: TrainConfig) -> EVC:
    """The model to train: fresh, or from --init-weights. A scalable model also starts from the
    single-encoder model of the same sizes (Scale-SL from EVC-SL): that encoder fills every level."""
    spec = get_spec(config.model)
    model = create_model(spec.name, seed=config.seed)
    if config.init_weights:
        named = read_metadata(config.init_weights).get(MODEL_KEY)
        state, _ = load_state(config.init_weights)
        source = get_spec(named) if named is not None else spec
        single_for_scalable = spec.scalable and not source.scalable and (source.encoder, source.decoder) == (
            spec.encoder, spec.decoder
        )
        if single_for_scalable:
            state = expand_single_encoder_state(state, model.num_levels)  # type: ignore[attr-defined]
        elif source.name != spec.name:
            raise ConfigError(f"--init-weights {config.init_weights} holds {source.name}, not {spec.name}")
        apply_state(model, state, config.init_weights)
    return model


def _say(message: str) -> None:
    require("tqdm", "train").tqdm.write(message, file=sys.stderr)


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
        return build_model(self.config)

    def transforms(self, module: nn.Module) -> list[nn.Module]:
        return [module.g_a, module.g_s]

    def objective(self, module: nn.Module) -> nn.Module:
        """A module whose forward(x, anchor) returns (loss, mse, bpp)."""
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
        return {}

    def log_row(self, module: nn.Module) -> dict[str, float] | None:
        return None


class Trainer:
    """Trains ``config.model`` on ``config.data``; ``run()`` returns the folder of exported weights."""

    def __init__(self, config: TrainConfig, resume: bool = False, task: TrainingTask | None = None) -> None:
        self.config = config
        self.task = task or TrainingTask(config)
        self.out = Path(config.out)
        self.procs = start_processes(config.device)
        checkpoint_path = self.out / CHECKPOINT_NAME
        if not resume and checkpoint_path.exists():
            raise EVCError(f"{self.out} already holds a training run; pass --resume to continue it or choose another --out")
        self.settings = step_settings(self.procs.device, config.amp, config.channels_last)
        # What runs is what the run records (config.toml, checkpoint): e.g. no bf16 on a CPU without it.
        self.config = config = dataclasses.replace(
            config, amp=self.settings.amp, channels_last=self.settings.channels_last
        )
        if self.procs.device.type == "cpu":
            keep_allocations_mapped()
        records = find_images(config.data, config.crop, _say if self.procs.is_main else (lambda _: None))
        self.data = RandomCrops(records, config.crop, config.seed, cache=config.cache_images)

        self.model = self.task.build().to(self.procs.device)
        for module in self.model.modules():
            if isinstance(module, EVC):
                module.entropy_networks_autocast = self.settings.entropy_networks_autocast
        cuda = self.procs.device.type == "cuda"
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if config.compile:
            for transform in self.task.transforms(self.model):
                transform.compile()
        self.objective = self.task.objective(self.model).to(self.procs.device)
        if self.procs.world_size > 1:
            self.objective = DistributedDataParallel(
                self.objective, device_ids=[self.procs.device.index] if cuda else None
            )
        groups = [g for g in self.task.param_groups(self.model) if g["params"]]
        for group in groups:
            group["base_lr"] = group.pop("lr", config.lr) * group.pop("lr_factor", 1.0)
            group["lr"] = group["base_lr"]
        self.optimizer = torch.optim.Adam(groups, lr=config.lr)
        self.step = 0
        self.elapsed_before = 0.0  # training seconds of earlier sessions of this run
        if resume:
            state = load_checkpoint(checkpoint_path)
            if state["model_name"] != self.task.name:
                raise EVCError(f"{checkpoint_path} trains {state['model_name']}, not {self.task.name}")
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.step = state["step"]
            self.elapsed_before = float(state.get("elapsed_s", 0.0))
            # Learning rates follow this run's settings (a resume may change --lr or the time budget).
            for group, fresh in zip(self.optimizer.param_groups, groups):
                group["base_lr"] = fresh["base_lr"]
        self.validation_images = kodak_images(config.kodak, config.val_images)

    # -- pieces ----------------------------------------------------------------------------------
    def _batches(self) -> DataLoader:
        sampler = StepBatches(self.step, self.config.batch_size, self.procs.rank, self.procs.world_size)
        return DataLoader(
            self.data,
            batch_sampler=sampler,
            num_workers=self.config.workers,
            pin_memory=self.procs.device.type == "cuda",
            persistent_workers=self.config.workers > 0,
        )

    def _set_learning_rate(self, elapsed_s: float) -> float:
        factor = learning_rate_factor(self.step, self.config, elapsed_s)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        return self.config.lr * factor

    def _train_step(self, images: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """One optimisation step; returns its statistics (see :class:`_Window`), summed over processes."""
        config, device = self.config, self.procs.device
        self.task.before_step(self.step)
        torch.manual_seed(_step_seed(config.seed, self.step, self.procs.rank))
        x = images.to(device, non_blocking=True).float().div_(255.0)
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        anchors = anchors.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp):
            loss, mse, bpp = self.objective(x, anchors)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.optimizer.step()
        self.task.after_step(self.step)
        stats = _Window.step_stats(loss.detach(), mse, bpp, anchors, self.procs.world_size)
        if self.procs.world_size > 1:
            dist.all_reduce(stats)
        return stats.cpu()

    def _metadata(self) -> dict[str, object]:
        config = self.config
        return {
            "evc.training_steps": self.step,
            "evc.images_seen": self.step * config.batch_size * self.procs.world_size,
            "evc.data": config.data,
            "evc.crop": config.crop,
            "evc.lambdas": list(LAMBDAS),
            "evc.init_weights": config.init_weights,
            "evc.date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "evc.training_seconds": round(self._elapsed(), 1),
            "evc.device": f"{self.procs.world_size} x {device_description(self.procs.device)}",
            "evc.recipe": (
                f"Adam lr {config.lr:g} (rate parameters x{config.rate_lr_factor:g}), warm-up {config.warmup_steps}, "
                f"cosine to x{config.lr_final_fraction:g}"
                + (f" over {config.time_limit_minutes:g} min" if config.time_limit_minutes > 0 else f" over {config.steps} steps")
                + f", batch {config.batch_size} x {config.crop}px crops, {'bf16' if config.amp else 'float32'}"
            ),
            **self.task.metadata(),
        }

    def save(self) -> None:
        """Checkpoint and export (main process only)."""
        if not self.procs.is_main:
            return
        save_checkpoint(
            self.out / CHECKPOINT_NAME,
            {
                "model_name": self.task.name,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "step": self.step,
                "elapsed_s": self._elapsed(),
                "config": dataclasses.asdict(self.config),
            },
        )
        exported, name = self.task.codec_model(self.model)
        save_weights(exported, self.out / EXPORT_DIR, name, self._metadata(), overwrite=True)

    def _validate(self, log: RunLog) -> None:
        if not self.validation_images:
            return
        exported, name = self.task.codec_model(self.model)
        rows = validate(exported, name, self.validation_images, self.procs.device)
        self.model.train()
        log.validation(self.step, rows)
        summary = ", ".join(f"{r['bpp']:.3f} bpp / {r['psnr']:.2f} dB" for r in rows)
        _say(f"step {self.step}: Kodak[{len(self.validation_images)}] at the 4 anchors: {summary}")

    # -- loop ------------------------------------------------------------------------------------
    def _elapsed(self) -> float:
        """Training seconds so far, earlier sessions of this run included."""
        started = getattr(self, "_started", None)
        return self.elapsed_before + (time.perf_counter() - started if started is not None else 0.0)

    def _out_of_time(self) -> bool:
        """Whether the run's time budget is spent, agreed by all processes (rank 0 decides)."""
        limit = self.config.time_limit_minutes * 60
        if limit <= 0:
            return False
        flag = torch.tensor([float(self._elapsed() > limit)])
        if self.procs.world_size > 1:
            flag = flag.to(self.procs.device)
            dist.broadcast(flag, src=0)
        return bool(flag.item())

    def _log(self, log: RunLog | None, window: _Window, lr: float, bar) -> None:
        now = time.perf_counter()
        row = window.row(self.step, lr, now, self._elapsed())
        window.reset(now)
        bar.set_postfix(loss=f"{row['loss']:.3f}", bpp=f"{row['bpp']:.3f}", psnr=f"{row['psnr']:.2f}", img_s=f"{row['images_per_s']:.1f}")
        if bar.disable and self.procs.is_main:  # no terminal: progress as plain lines
            anchors = " ".join(f"{row[f'bpp_a{a}']:.3f}/{row[f'psnr_a{a}']:.2f}" for a in range(NUM_ANCHORS))
            _say(
                f"step {self.step}: loss {row['loss']:.3f}, bpp/dB per anchor {anchors}, lr {lr:.2e}, "
                f"{row['images_per_s']:.2f} crops/s, {row['elapsed_s'] / 60:.1f} min"
            )
        extra = self.task.log_row(self.model)
        if log is not None and extra is not None:
            log.extra(self.task.log_name, {"step": self.step, **extra})
        if log is not None:
            log.train(row)

    def run(self, until_step: int | None = None) -> Path:
        """Train to ``config.steps`` (or stop, with a checkpoint, at ``until_step``, or when the time
        budget is spent); returns the export."""
        tqdm = require("tqdm", "train").tqdm

        config, procs = self.config, self.procs
        if procs.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.toml").write_text(config.to_toml())
        log = RunLog(self.out, self.step) if procs.is_main else None
        self.model.train()
        self._started = time.perf_counter()
        window = _Window(self._started)
        bar = tqdm(total=config.steps, initial=self.step, disable=not procs.is_main or None, unit="step", file=sys.stderr)
        try:
            batches = iter(self._batches())
            last = config.steps if until_step is None else min(until_step, config.steps)
            while self.step < last:
                images, anchors = next(batches)
                lr = self._set_learning_rate(self._elapsed())
                window.add(self._train_step(images, anchors))
                self.step += 1
                bar.update(1)
                out_of_time = self._out_of_time()
                finished = self.step == last or out_of_time
                if self.step % config.log_every == 0 or finished:
                    self._log(log, window, lr, bar)
                if self.step % config.checkpoint_every == 0 or finished:
                    self.save()
                if log is not None and (self.step % config.val_every == 0 or finished):
                    self._validate(log)
                if procs.world_size > 1:
                    dist.barrier()
                if out_of_time:
                    _say(f"time limit reached at step {self.step}; resume with --resume (and a larger --time-limit-minutes)")
                    break
        except KeyboardInterrupt:
            self.save()
            raise
        finally:
            bar.close()
            if log is not None:
                log.close()
            if procs.world_size > 1 and dist.is_initialized():
                dist.destroy_process_group()
        return self.out / EXPORT_DIR


class _Window:
    """Training statistics between two log rows, overall and per rate anchor.

    A step contributes a vector: [loss / processes, count per anchor, MSE sum per anchor, bpp sum per
    anchor], so that summing over processes (all_reduce) and over steps gives window means.
    """

    def __init__(self, start: float) -> None:
        self.reset(start)

    def reset(self, start: float) -> None:
        self.start = start
        self.steps = 0
        self.total = torch.zeros(1 + 3 * NUM_ANCHORS, dtype=torch.float64)

    @staticmethod
    def step_stats(loss: torch.Tensor, mse: torch.Tensor, bpp: torch.Tensor, anchors: torch.Tensor, processes: int) -> torch.Tensor:
        one_hot = torch.nn.functional.one_hot(anchors.long(), NUM_ANCHORS).float()
        return torch.cat([
            (loss.float() / processes).view(1),
            one_hot.sum(0),
            (one_hot * mse.float().view(-1, 1)).sum(0),
            (one_hot * bpp.float().view(-1, 1)).sum(0),
        ])

    def add(self, stats: torch.Tensor) -> None:
        self.total += stats.double()
        self.steps += 1

    def row(self, step: int, lr: float, now: float, elapsed_s: float) -> dict[str, float]:
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


def describe_export(folder: Path) -> str:
    meta = read_metadata(folder)
    return f"{meta.get(MODEL_KEY)} after {meta.get('evc.training_steps')} steps: {folder}"


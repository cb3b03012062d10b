"""The training loop: one process or many (DDP under torchrun), CPU or CUDA.

Exact resume rests on two choices: every step reseeds the random number generator from (seed, step,
rank), and each step's data is a pure function of (seed, step, rank) (see data.py). A checkpoint then
needs only the model, optimizer, scheduler and step.
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
from evc.models.variable_rate import LAMBDAS
from evc.models.weights import MODEL_KEY, apply_state, load_state, read_metadata, save_weights
from evc.train.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from evc.train.config import ConfigError, TrainConfig
from evc.train.data import RandomCrops, StepBatches, find_images
from evc.train.objective import RateDistortionLoss
from evc.train.runlog import RunLog
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


def learning_rate_factor(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay from 1 to lr_final_fraction at the last step."""
    warmup = min(config.warmup_steps, config.steps // 10)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, config.steps - warmup)
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return config.lr_final_fraction + (1 - config.lr_final_fraction) * cosine


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
        return [{"params": list(module.parameters())}]

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
        records = find_images(config.data, config.crop, _say if self.procs.is_main else (lambda _: None))
        self.data = RandomCrops(records, config.crop, config.seed)

        self.model = self.task.build().to(self.procs.device)
        cuda = self.procs.device.type == "cuda"
        if cuda and config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if config.compile:
            for transform in self.task.transforms(self.model):
                transform.compile()
        self.objective = self.task.objective(self.model).to(self.procs.device)
        if self.procs.world_size > 1:
            self.objective = DistributedDataParallel(
                self.objective, device_ids=[self.procs.device.index] if cuda else None
            )
        self.optimizer = torch.optim.Adam(self.task.param_groups(self.model), lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: learning_rate_factor(step, config)
        )
        self.step = 0
        if resume:
            state = load_checkpoint(checkpoint_path)
            if state["model_name"] != self.task.name:
                raise EVCError(f"{checkpoint_path} trains {state['model_name']}, not {self.task.name}")
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.step = state["step"]
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

    def _train_step(self, images: torch.Tensor, anchors: torch.Tensor) -> tuple[float, float, float]:
        config, device = self.config, self.procs.device
        self.task.before_step(self.step)
        torch.manual_seed(_step_seed(config.seed, self.step, self.procs.rank))
        x = images.to(device, non_blocking=True).float().div_(255.0)
        if device.type == "cuda" and config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        anchors = anchors.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp and device.type == "cuda"):
            loss, mse, bpp = self.objective(x, anchors)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.optimizer.step()
        self.task.after_step(self.step)
        self.scheduler.step()
        stats = torch.stack([loss.detach(), mse, bpp]).float()
        if self.procs.world_size > 1:
            dist.all_reduce(stats)
            stats /= self.procs.world_size
        return tuple(stats.tolist())  # type: ignore[return-value]

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
                "scheduler": self.scheduler.state_dict(),
                "step": self.step,
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
    def _out_of_time(self, start: float) -> bool:
        """Whether the time limit has passed, agreed by all processes (rank 0 decides)."""
        limit = self.config.time_limit_minutes * 60
        if limit <= 0:
            return False
        flag = torch.tensor([float(time.perf_counter() - start > limit)])
        if self.procs.world_size > 1:
            flag = flag.to(self.procs.device)
            dist.broadcast(flag, src=0)
        return bool(flag.item())

    def run(self, until_step: int | None = None) -> Path:
        """Train to ``config.steps`` (or stop, with a checkpoint, at ``until_step``); returns the export."""
        tqdm = require("tqdm", "train").tqdm

        config, procs = self.config, self.procs
        if procs.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.toml").write_text(config.to_toml())
        log = RunLog(self.out, self.step) if procs.is_main else None
        self.model.train()
        start = time.perf_counter()
        window_start, window_images = start, 0
        bar = tqdm(total=config.steps, initial=self.step, disable=not procs.is_main or None, unit="step", file=sys.stderr)
        try:
            batches = iter(self._batches())
            last = config.steps if until_step is None else min(until_step, config.steps)
            while self.step < last:
                images, anchors = next(batches)
                loss, mse, bpp = self._train_step(images, anchors)
                self.step += 1
                window_images += images.shape[0] * procs.world_size
                psnr = -10 * math.log10(max(mse, 1e-10))
                bar.update(1)
                if self.step % config.log_every == 0 or self.step == config.steps:
                    now = time.perf_counter()
                    rate = window_images / max(now - window_start, 1e-9)
                    window_start, window_images = now, 0
                    bar.set_postfix(loss=f"{loss:.3f}", bpp=f"{bpp:.3f}", psnr=f"{psnr:.2f}", img_s=f"{rate:.1f}")
                    extra = self.task.log_row(self.model)
                    if log is not None and extra is not None:
                        log.extra(self.task.log_name, {"step": self.step, **extra})
                    if log is not None:
                        log.train(
                            {
                                "step": self.step, "loss": loss, "bpp": bpp, "mse": mse, "psnr": psnr,
                                "lr": self.scheduler.get_last_lr()[0], "images_per_s": rate,
                                "elapsed_s": now - start,
                            }
                        )
                out_of_time = self._out_of_time(start)
                if self.step % config.checkpoint_every == 0 or self.step == last or out_of_time:
                    self.save()
                if log is not None and (self.step % config.val_every == 0 or self.step == config.steps):
                    self._validate(log)
                if procs.world_size > 1:
                    dist.barrier()
                if out_of_time:
                    _say(f"time limit reached at step {self.step}; resume with --resume")
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


def describe_export(folder: Path) -> str:
    meta = read_metadata(folder)
    return f"{meta.get(MODEL_KEY)} after {meta.get('evc.training_steps')} steps: {folder}"


"""`evc distill`: teacher -> student by mask decay, then a short fine-tune. Reuses evc.train's loop.

Phase 1 (``<out>/decay``): masks are inserted into the teacher's transforms; the model trains on the
rate-distortion loss plus a sparsity loss until the removed channels' masks are zero; every export
of this phase is the merged student. Phase 2 (``<out>/finetune``): the merged student trains on the
rate-distortion loss alone. Both phases checkpoint and resume like `evc train`; the result is
``<out>/finetune/export``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from evc.distill import sparsity_loss
from evc.distill.mask_decay import MaskedTeacher, merge, removed_channels, removed_masks, select_channels, top_channels
from evc.errors import EVCError
from evc.models.evc import EVC
from evc.models.registry import get_spec
from evc.models.weights import DISTILLED_FROM_KEY, SPARSITY_KEY, held_model, load_model, read_metadata
from evc.train.checkpoint import CHECKPOINT_NAME, read_checkpoint
from evc.train.config import ConfigError, TrainConfig
from evc.train.objective import RateDistortionLoss
from evc.train.trainer import EXPORT_DIR, Trainer, TrainingTask

# Ours has a unit gradient on each removed mask above the ceiling, far above the rate-distortion
# gradient on a mask. L1 and L2 act on every mask: at 1e-3 their pull (at m = 1) exceeds the
# rate-distortion gradient of 83-88 % of the masks of the issue-22 teacher, more than the 56 % that
# EVC-LL -> EVC-SS removes, where 1e-4 exceeded it for 62-70 %
# (measured in docs/mask-decay.md).
DEFAULT_SPARSITY_WEIGHT = {"ours": 1.0, "l1": 1e-3, "l2": 1e-3}
# The removed masks' ceiling reaches zero at this fraction of the decay phase; the rest lets the
# network settle with the channels gone.
CEILING_END = 0.8


@dataclass
class DistillConfig(TrainConfig):
    """Distil a smaller EVC model from a trained teacher by mask decay, then fine-tune it."""

    teacher: str = ""  # teacher weights (file or folder); its metadata names the teacher model
    student: str = "EVC-SS"
    sparsity: str = "ours"  # ours | l1 | l2
    sparsity_weight: float = 0.0  # 0: the default of the chosen loss
    decay_steps: int = 10_000
    finetune_steps: int = 5_000
    mask_lr: float = 1e-3  # masks must be able to follow the ceiling: about 1 / (0.8 * decay_steps) or more

    def validate(self) -> None:
        super().validate()
        if not self.teacher:
            raise ConfigError("give the teacher's weights with --teacher PATH")
        if self.sparsity not in sparsity_loss.SPARSITY_LOSSES:
            raise ConfigError(f"sparsity must be one of {', '.join(sparsity_loss.SPARSITY_LOSSES)}")
        if self.decay_steps <= 0 or self.finetune_steps < 0 or self.mask_lr <= 0 or self.sparsity_weight < 0:
            raise ConfigError("decay_steps and mask_lr must be positive, finetune_steps and sparsity_weight not negative")


class MaskDecayLoss(nn.Module):
    """Rate-distortion loss of the masked teacher plus the sparsity loss; returns (loss, mse, bpp)."""

    def __init__(self, masked: MaskedTeacher, kept: dict[str, torch.Tensor], config: DistillConfig) -> None:
        super().__init__()
        self.masked = masked
        self.rd = RateDistortionLoss(masked.teacher)
        self.kept = kept
        self.kind = config.sparsity
        self.weight = config.sparsity_weight or DEFAULT_SPARSITY_WEIGHT[config.sparsity]
        self.ceiling_steps = max(1, int(CEILING_END * config.decay_steps))
        self.step = 0

    def penalty(self) -> torch.Tensor:
        if self.kind == "ours":
            return sparsity_loss.ours(removed_masks(self.masked, self.kept).values(), self.step, self.ceiling_steps)
        return getattr(sparsity_loss, self.kind)(self.masked.masks.values())

    def forward(
        self, x: torch.Tensor, anchor: torch.Tensor, entropy_autocast: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        loss, mse, bpp = self.rd(x, anchor, entropy_autocast)
        return loss + self.weight * self.penalty(), mse, bpp


class MaskDecayTask(TrainingTask):
    log_name = "masks"

    def __init__(self, config: DistillConfig) -> None:
        super().__init__(config)
        self.config: DistillConfig = config
        self.student = get_spec(config.student)
        self.teacher_name = held_model(config.teacher, read_metadata(config.teacher), default=config.model).name
        teacher = get_spec(self.teacher_name)
        self.encoder_to = self.student.encoder if self.student.encoder != teacher.encoder else None
        self.decoder_to = self.student.decoder if self.student.decoder != teacher.decoder else None
        if teacher.scalable or self.student.scalable:
            raise ConfigError("mask decay distils single-encoder models; scalable models train with RRL")
        if (self.encoder_to, self.decoder_to) == (None, None):
            raise ConfigError(f"{self.student.name} is not smaller than the teacher {teacher.name}")
        self.loss: MaskDecayLoss | None = None
        self.kept: dict[str, torch.Tensor] = {}

    @property
    def name(self) -> str:
        return f"{self.teacher_name}->{self.student.name} mask decay ({self.config.sparsity})"

    def build(self) -> nn.Module:
        teacher, _, _ = load_model(self.config.teacher, self.teacher_name)
        masked = MaskedTeacher(teacher, self.encoder_to, self.decoder_to)
        # Ours removes the channels chosen up front from the teacher's weights (the same on resume);
        # L1 / L2 keep the largest masks, decided when the student is merged.
        self.kept = select_channels(masked)
        return masked

    def transforms(self, module: nn.Module) -> list[nn.Module]:
        return [module.teacher.g_a, module.teacher.g_s]

    def objective(self, module: nn.Module) -> nn.Module:
        self.loss = MaskDecayLoss(module, self.kept, self.config)  # type: ignore[arg-type]
        return self.loss

    def param_groups(self, module: nn.Module) -> list[dict]:
        masks = list(module.masks.parameters())
        ids = {id(p) for p in masks}
        return [
            {"params": [p for p in module.parameters() if id(p) not in ids]},
            {"params": masks, "lr": self.config.mask_lr},
        ]

    def before_step(self, step: int) -> None:
        if self.loss is not None:
            self.loss.step = step

    def after_step(self, step: int) -> None:
        if self.config.sparsity != "ours" or self.loss is None:
            return
        masked = self.loss.masked
        for group in masked.groups:
            mask = masked.masks[group.key]
            removed = removed_channels(group, self.kept[group.name]).to(mask.device)
            sparsity_loss.project_below_ceiling(mask, removed, step + 1, self.loss.ceiling_steps)

    def current_kept(self, module: MaskedTeacher) -> dict[str, torch.Tensor]:
        if self.config.sparsity == "ours":
            return self.kept
        return {g.name: top_channels(mask.detach().cpu(), g.keep) for g, mask in module.named_groups()}

    def codec_model(self, module: nn.Module) -> tuple[EVC, str]:
        return merge(module, self.current_kept(module), self.student.name), self.student.name  # type: ignore[arg-type]

    def metadata(self) -> dict[str, object]:
        return {DISTILLED_FROM_KEY: self.teacher_name, SPARSITY_KEY: self.config.sparsity}

    def log_row(self, module: nn.Module) -> dict[str, float]:
        """Magnitude of the masks to remove (they must reach exactly zero) and of those kept."""
        kept = self.current_kept(module)  # type: ignore[arg-type]
        removed = torch.cat([m.detach().relu().cpu() for m in removed_masks(module, kept).values()])  # type: ignore[arg-type]
        kept_values = torch.cat(
            [mask.detach().cpu()[kept[g.name]] for g, mask in module.named_groups()]  # type: ignore[union-attr]
        )
        return {
            "removed_mean": float(removed.mean()),
            "removed_max": float(removed.max()),
            "removed_zero_fraction": float((removed == 0).float().mean()),
            "kept_mean": float(kept_values.mean()),
            "kept_min": float(kept_values.min()),  # L1 shrinks every mask: its kept ones fall too
        }


def _phase_done(folder: Path, steps: int) -> bool:
    path = folder / CHECKPOINT_NAME
    if not path.is_file():
        return False
    return read_checkpoint(path)["step"] >= steps


def run_distill(config: DistillConfig, resume: bool = False) -> Path:
    """Both phases; returns the fine-tuned student's export folder."""
    out = Path(config.out)
    decay_dir, finetune_dir = out / "decay", out / "finetune"
    if not resume and decay_dir.exists():
        raise EVCError(f"{out} already holds a distillation; pass --resume to continue it or choose another --out")
    decay = dataclasses.replace(config, out=str(decay_dir), steps=config.decay_steps)
    if not _phase_done(decay_dir, config.decay_steps):
        Trainer(decay, resume=(decay_dir / CHECKPOINT_NAME).is_file(), task=MaskDecayTask(decay)).run()
    merged = decay_dir / EXPORT_DIR
    if config.finetune_steps == 0 or not _phase_done(decay_dir, config.decay_steps):
        return merged  # done, or stopped at the time limit: --resume continues
    finetune = TrainConfig(
        **{
            f.name: getattr(config, f.name)
            for f in dataclasses.fields(TrainConfig)
            if f.name not in ("model", "out", "steps", "init_weights")
        },
        model=get_spec(config.student).name,
        out=str(finetune_dir),
        steps=config.finetune_steps,
        init_weights=str(merged),
    )
    if not _phase_done(finetune_dir, config.finetune_steps):
        Trainer(finetune, resume=(finetune_dir / CHECKPOINT_NAME).is_file()).run()
    return finetune_dir / EXPORT_DIR



"""Every EVC model by name: its structure, its stable id in files, and where its shipped weights live.

Names and ids only: torch is imported when a model is built, so that the commands that only name
models (`evc models`, `evc info`) start without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from evc.errors import ModelError, UntrainedModelError

if TYPE_CHECKING:
    from evc.models.evc import EVC

# The transforms' sizes (evc.nn.transforms.CHANNEL_PLANS) by name.
SIZE_NAMES = {"L": "large", "M": "medium", "S": "small"}
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    model_id: int  # written into every file; never reuse or renumber
    encoder: str
    decoder: str
    scalable: bool = False

    @property
    def description(self) -> str:
        sizes = SIZE_NAMES
        if self.scalable:
            return f"scalable: four {sizes[self.encoder]} encoders (RRL), {sizes[self.decoder]} decoder"
        return f"{sizes[self.encoder]} encoder, {sizes[self.decoder]} decoder"

    def build(self, seed: int | None = None) -> EVC:
        """A freshly initialised (untrained) model of this structure. ``seed``: its weights are
        reproducible, drawn from that seed without touching torch's global random state."""
        import torch

        from evc.models.evc import EVC
        from evc.models.scalable import ScalableEVC

        def build() -> EVC:
            return ScalableEVC(self.encoder, self.decoder) if self.scalable else EVC(self.encoder, self.decoder)

        if seed is None:
            return build()
        state = torch.random.get_rng_state()
        try:
            torch.manual_seed(seed)
            return build()
        finally:
            torch.random.set_rng_state(state)

    @property
    def weights_dir(self) -> Path:
        return WEIGHTS_DIR / self.name

    def has_weights(self) -> bool:
        return any(self.weights_dir.glob("*.safetensors"))


_SPECS = (
    ModelSpec("EVC-LL", 1, "L", "L"),
    ModelSpec("EVC-LM", 2, "L", "M"),
    ModelSpec("EVC-LS", 3, "L", "S"),
    ModelSpec("EVC-ML", 4, "M", "L"),
    ModelSpec("EVC-MM", 5, "M", "M"),
    ModelSpec("EVC-MS", 6, "M", "S"),
    ModelSpec("EVC-SL", 7, "S", "L"),
    ModelSpec("EVC-SS", 8, "S", "S"),
    ModelSpec("Scale-SL", 9, "S", "L", scalable=True),
    ModelSpec("Scale-SS", 10, "S", "S", scalable=True),
)
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}
MODELS_BY_ID: dict[int, ModelSpec] = {spec.model_id: spec for spec in _SPECS}
# Preference order for the default model: best RD first among those that ship trained weights.
DEFAULT_PREFERENCE = ("EVC-LL", "EVC-LM", "EVC-ML", "EVC-MM", "EVC-LS", "EVC-SL", "EVC-MS", "EVC-SS")


def get_spec(name: str) -> ModelSpec:
    """Look a model up by name, case-insensitively; the "EVC-" prefix may be left out.
    Raises ModelError for an unknown name, TypeError for a name that is not a string."""
    if not isinstance(name, str):
        raise TypeError(f"a model name is a string such as 'EVC-LL', got a {type(name).__name__}")
    wanted = name.strip().lower()
    for spec in _SPECS:
        if wanted in (spec.name.lower(), spec.name.lower().removeprefix("evc-")):
            return spec
    raise ModelError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")


def create_model(name: str, seed: int | None = None) -> EVC:
    """A freshly initialised (untrained) model; ``seed`` makes its weights reproducible."""
    return get_spec(name).build(seed)


def shipped_model(name: str | None = None) -> ModelSpec:
    """The model ``name`` (None: :func:`default_model_name`'s), which ships trained weights (in its
    ``weights_dir``). Raises UntrainedModelError when it ships none (or, without a name, none does),
    ModelError for an unknown name."""
    if name is None:
        name = default_model_name()
        if name is None:
            raise UntrainedModelError(None)
    spec = get_spec(name)
    if not spec.has_weights():
        raise UntrainedModelError(spec.name)
    return spec


def default_model_name() -> str | None:
    """The best model that ships trained weights, or None if none does."""
    for name in DEFAULT_PREFERENCE:
        if MODELS[name].has_weights():
            return name
    return None

"""Exception types of the evc package."""

from __future__ import annotations


class EVCError(Exception):
    """Base class of every error evc raises on purpose."""


class FormatError(EVCError):
    """An .evc file (or byte string) is not a valid, complete, supported evc bitstream."""


class ImageError(EVCError):
    """An input image cannot be coded (unsupported mode, shape, dtype or value range)."""


class ModelError(EVCError):
    """A model is unknown, has no trained weights, or its weights file is unusable."""


class UntrainedModelError(ModelError):
    """The model exists but no trained weights ship for it (pass weights explicitly)."""

    # How to get weights, in every message: train them, or use weights someone trained.
    HOW = "train them with `evc train` (README, \"Training\") and pass the run's export/ folder as weights"

    def __init__(self, model: str | None) -> None:
        self.model = model
        if model is None:
            super().__init__(f"no trained weights ship with this version of evc; {self.HOW}")
        else:
            super().__init__(f"{model} is untrained: no trained weights ship for it; {self.HOW}")

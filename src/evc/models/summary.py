"""The table `evc models` prints, without torch: each model's parameters and MACs per pixel.

evc.eval.complexity counts them by building every model, which needs torch (slower to import than
the rest of `evc models` takes); the counts are stored here instead, and tests/test_startup.py checks
that both tables are the same text, so a changed architecture fails there until they are updated.
`evc models` counts a model missing here with evc.eval.complexity, as before.
"""

from __future__ import annotations

from collections.abc import Mapping

from evc.models.registry import ModelSpec

# The image size the MACs are counted at (per pixel in the table).
TABLE_WIDTH, TABLE_HEIGHT = 768, 512
# name: (parameters, encoder MACs, decoder MACs, entropy-model MACs) at 768x512, as
# evc.eval.complexity.model_complexity(name) counts them.
FIGURES: dict[str, tuple[int, int, int, int]] = {
    "EVC-LL": (17381776, 102993887232, 100901486592, 14374250496),
    "EVC-LM": (16337296, 102993887232, 48309633024, 14374250496),
    "EVC-LS": (15147792, 102993887232, 13707804672, 14374250496),
    "EVC-ML": (16271376, 49131159552, 100901486592, 14374250496),
    "EVC-MM": (15226896, 49131159552, 48309633024, 14374250496),
    "EVC-MS": (14037392, 49131159552, 13707804672, 14374250496),
    "EVC-SL": (15012240, 13591904256, 100901486592, 14374250496),
    "EVC-SS": (12778256, 13591904256, 13707804672, 14374250496),
    "Scale-SL": (17466960, 54367617024, 100901486592, 14374250496),
    "Scale-SS": (15232976, 54367617024, 13707804672, 14374250496),
}


def format_model_table(models: Mapping[str, ModelSpec]) -> list[str]:
    """The lines of `evc models`' table (the text of evc.eval.complexity.format_model_table): per model,
    parameters, MACs per pixel of encoder, decoder and entropy model at 768x512, whether trained weights
    ship, and its description. KeyError for a model without stored figures."""
    missing = [name for name in models if name not in FIGURES]
    if missing:
        raise KeyError(f"no stored figures for {', '.join(missing)} (evc.eval.complexity counts them)")
    lines = [f"{'model':<10} {'params':>8} {'enc MAC/px':>11} {'dec MAC/px':>11} {'ent MAC/px':>11}  weights  description"]
    pixels = TABLE_WIDTH * TABLE_HEIGHT
    for name, spec in models.items():
        params, encoder, decoder, entropy = FIGURES[name]
        shipped = "trained" if spec.has_weights() else "untrained"
        lines.append(
            f"{name:<10} {params / 1e6:>7.2f}M {encoder / pixels:>11,.0f} "
            f"{decoder / pixels:>11,.0f} {entropy / pixels:>11,.0f}  {shipped:<8} {spec.description}"
        )
    return lines

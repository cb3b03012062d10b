"""Ship trained weights: measure them on Kodak, refuse them unless they beat what ships, write the card.

    python scripts/ship_weights.py RUN/export --version v0 [--force] [--dry-run] [--curve NAME.json]

1. Codes all 24 Kodak images (../shared/data/kodak) at the 4 trained anchors and one interpolated rate
   between each pair, with real files (exact entropy parameters, as `evc encode` writes them).
2. BD-rate (PSNR) against the live JPEG 4:2:0 results in docs/results/kodak/jpeg420.json and the
   published VTM curve; against the shipped weights of the same model, if any (recorded in the card as
   "NAME VERSION"; the replaced version's results are kept as docs/results/kodak/NAME-VERSION.json);
   a scalable model (Scale-SS) also against the shipped single-encoder model of its sizes (EVC-SS).
   Those comparisons use the other weights' recorded curve if it was made in the same entropy-parameter
   arithmetic (the codec's default, int8), else measure them again.
3. Unless --force, refuses weights that are not better than the shipped ones (BD-rate >= 0 against
   them): every commit of weights stays in the history that users clone.
4. Writes src/evc/weights/NAME/ (fp16 safetensors parts, with the version and the Kodak RD in their
   metadata), MODEL_CARD.md beside them, and docs/results/kodak/NAME.json for the report
   (benchmarks/kodak_report.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import evc
from evc.eval.bdrate import bd_rate
from evc.eval.published import VTM_KODAK
from evc.eval.results import RDCurve, curve_arithmetic, load_curve, save_curve
from evc.eval.runner import EVCUnderTest, evaluate, list_images
from evc.models.card import KODAK_KEY, VERSION_KEY, ModelCard, training_totals
from evc.models.registry import get_spec
from evc.models.weights import (
    ANCHORS_KEY, HELD_OUT_KEY, LAMBDAS_KEY, MODEL_KEY, PARTS_KEY, RECIPE_KEY, held_model, load_model, read_metadata,
    save_weights,
)
from evc.shared_data import KODAK_DIR
from evc.train.config import TrainConfig, read_toml
from evc.train.trainer import anchor_sampling

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results" / "kodak"


def measure(weights: Path, label: str) -> RDCurve:
    codec = evc.load(weights=weights, device="cpu")
    return evaluate(EVCUnderTest.at_anchors(codec, label, between=1), list_images(KODAK_DIR), "ours")


def recorded_or_measured(recorded: Path, weights: Path, label: str, arithmetic: str) -> RDCurve:
    """Shipped weights' recorded Kodak curve if it was made in ``arithmetic``, else measured now: the
    int8 arithmetic costs about 0.4 % rate against float64, as much as the gains being compared."""
    if recorded.is_file():
        curve = load_curve(recorded)
        if curve_arithmetic(curve) == arithmetic:
            return curve
        print(f"{recorded.name} was made in {curve_arithmetic(curve)}, not {arithmetic}: measuring {label} again")
    return measure(weights, label)


def run_record(weights: Path, meta: dict[str, str]) -> dict[str, object]:
    """What a trainer before 2026-12-03 did not record in the export (held-out photos, how the anchors
    were drawn), read from the run's resolved config.toml beside it (RUN/export); nothing if absent."""
    config_path = weights.parent / "config.toml"
    if weights.is_file() or not config_path.is_file():
        return {}
    config = read_toml(config_path)
    extra: dict[str, object] = {}
    if HELD_OUT_KEY not in meta and "holdout" in config:
        extra[HELD_OUT_KEY] = len(TrainConfig(holdout=bool(config["holdout"])).held_out_photos())
    if "anchors drawn" not in meta.get(RECIPE_KEY, ""):
        sampling = TrainConfig(anchor_weights=str(config.get("anchor_weights", ""))).anchor_probabilities()
        extra[RECIPE_KEY] = f"{meta.get(RECIPE_KEY, '?')}, {anchor_sampling(sampling)}"
    return extra


def card_markdown(card: ModelCard, meta: dict[str, str], curve: RDCurve, files: list[Path]) -> str:
    rows = "\n".join(
        f"| {q} | {b:.4f} | {p:.3f} | {m if m is not None else ''} |"
        for q, b, p, m in zip(
            curve.meta["settings"], curve.bpp, curve.psnr or [],
            [f"{v:.4f}" for v in curve.ms_ssim] if curve.ms_ssim else [None] * len(curve.bpp),
        )
    )
    bd = "\n".join(f"- {v:+.1f} % against {k}" for k, v in card.bd_rates.items())
    levels = ""
    if get_spec(card.model).scalable:
        levels = (
            "\nEach image is coded with every encoder level, and the file with the lowest RD cost is kept (the\n"
            "codec's default). `--encoder-level N` codes with level N alone, whose latent needs encoders 0..N\n"
            "(a complexity budget). The RD and encode time of each level are in docs/mask-decay.md.\n"
        )
    hours = f"{card.training_hours:.2f}" if card.training_hours is not None else "?"
    lambdas = ", ".join(f"{v:g}" for v in json.loads(meta.get(LAMBDAS_KEY, "[]"))) or "?"
    lineage = ""
    if card.earlier_runs and card.totals is not None:
        lineage = (
            f"\n- In all, with the runs these weights continued: {card.totals.seconds / 3600:.2f} hours; "
            f"{card.totals.steps} steps; {card.totals.crops:,} crops."
        )
    return f"""# {card.model} {card.version}

Weights of evc's {card.model} ({get_spec(card.model).description}), fp16 safetensors in
{len(files)} part(s): {", ".join(f.name for f in files)}.

## Training

- Device: {card.device}; {hours} hours; {card.steps} steps; {card.crops_seen:,} crops of {card.crop} px.{lineage}
- Data: {card.data}. Kodak is never trained on.
- Recipe: {card.recipe}. Four rate anchors, lambda {lambdas}.
- Date: {card.date}.

This is a low-compute model: the paper's models train for days on GPUs; this one saw a tiny fraction
of that, so it is far from the paper's RD (see below and docs/results.md).

## Kodak ({card.kodak_set()}, RGB PSNR)

Measured by `python scripts/ship_weights.py` (exact entropy parameters in {curve_arithmetic(curve)}, CPU), q index = round(100 * q_scale);
the 4 trained anchors and one interpolated rate between each pair.
{levels}
| q index | bpp | PSNR (dB) | MS-SSIM |
| --- | --- | --- | --- |
{rows}

BD-rate (PSNR; negative = fewer bits at equal quality):

{bd}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, help="trained weights (a run's export/ folder)")
    parser.add_argument("--version", required=True, help="version label, e.g. v0")
    parser.add_argument("--force", action="store_true", help="ship even if not better than the shipped weights")
    parser.add_argument("--dry-run", action="store_true", help="measure and compare, write nothing")
    parser.add_argument("--curve", type=Path, default=None,
                        help="the Kodak curve an earlier run of this script measured of these weights "
                             "(docs/results/kodak/NAME.json): compare and write without measuring again")
    args = parser.parse_args()

    spec = held_model(args.weights, read_metadata(args.weights))
    name = spec.name
    if args.curve is not None:  # measured earlier (an interrupted run): the same weights, it is trusted
        curve = load_curve(args.curve)
        if curve.meta.get("versions", {}).get("weights") != f"{name} {args.version}" or curve.meta["images"] != 24:
            sys.exit(f"--curve {args.curve}: not a 24-image Kodak curve of {name} {args.version}")
    else:
        curve = measure(args.weights, f"{name} {args.version}")
    arithmetic = curve_arithmetic(curve)
    print("new:", ", ".join(f"{b:.3f} bpp / {p:.2f} dB" for b, p in zip(curve.bpp, curve.psnr or [])))

    anchors = {"JPEG 4:2:0 (live)": load_curve(RESULTS / "jpeg420.json"), "VTM (published)": load_curve(VTM_KODAK)}
    bd_rates = {}
    for label, anchor in anchors.items():
        try:
            result = bd_rate(anchor, curve)
            bd_rates[label] = round(result.percent, 2)
            print(f"BD-rate vs {label}: {result.percent:+.2f} % over {result.overlap[0]:.2f}-{result.overlap[1]:.2f} dB")
        except evc.EVCError as exc:
            print(f"BD-rate vs {label}: n/a ({exc})")

    if spec.scalable:  # a scalable model starts from the single-encoder model of its sizes: compare with it
        base = get_spec(f"EVC-{spec.encoder}{spec.decoder}")
        if base.has_weights():
            label = f"{base.name} {ModelCard.read(base.weights_dir).version}"
            base_curve = recorded_or_measured(RESULTS / f"{base.name}.json", base.weights_dir, label, arithmetic)
            against_base = bd_rate(base_curve, curve).percent
            print(f"BD-rate vs {label}: {against_base:+.2f} %")
            bd_rates[label] = round(against_base, 2)

    replaced: Path | None = None  # the shipped version's results, kept under its version once replaced
    if spec.has_weights():
        shipped_json = RESULTS / f"{name}.json"
        shipped = recorded_or_measured(shipped_json, spec.weights_dir, "shipped", arithmetic)
        try:
            against = bd_rate(shipped, curve).percent
        except evc.EVCError as exc:  # no overlap: compare by the mean RD cost at the anchors instead
            sys.exit(f"cannot compare with the shipped {name}: {exc}")
        print(f"BD-rate vs the shipped {name}: {against:+.2f} %")
        shipped_version = ModelCard.read(spec.weights_dir).version
        bd_rates[f"{name} {shipped_version}"] = round(against, 2)
        if shipped_json.is_file():
            replaced = RESULTS / f"{name}-{shipped_version}.json"
        if against >= 0 and not args.force:
            print(f"not shipped: the new weights are not better than the shipped {name}", file=sys.stderr)
            return 1
    if args.dry_run:
        return 0

    model, _, file_meta = load_model(args.weights, name)
    extra: dict[str, object] = {k: v for k, v in file_meta.items() if k not in (MODEL_KEY, PARTS_KEY, ANCHORS_KEY)}
    totals = training_totals(file_meta)  # recorded by the trainer, else followed through its init weights
    if totals is not None:
        extra.update(totals.metadata())
    extra[VERSION_KEY] = args.version
    extra.update(run_record(args.weights, file_meta))
    extra[KODAK_KEY] = json.dumps(
        {"bpp": curve.bpp, "psnr": curve.psnr, "bd_rate": bd_rates, "images": curve.meta["images"]}
    )
    with tempfile.TemporaryDirectory() as tmp:  # write whole, then replace: no half-shipped folder
        files = save_weights(model, Path(tmp) / name, name, extra)
        card = ModelCard.read(Path(tmp) / name)
        (Path(tmp) / name / "MODEL_CARD.md").write_text(card_markdown(card, read_metadata(Path(tmp) / name), curve, files))
        if spec.weights_dir.exists():
            shutil.rmtree(spec.weights_dir)
        shutil.copytree(Path(tmp) / name, spec.weights_dir)
    curve.name = name
    if replaced is not None and not replaced.exists():
        shutil.copyfile(RESULTS / f"{name}.json", replaced)
    save_curve(curve, RESULTS / f"{name}.json")
    print(f"shipped {name} {args.version} to {spec.weights_dir}")
    print("\n".join(card.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

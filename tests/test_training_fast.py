"""The fast training step and the run record: precision settings, time-budget schedule, window logs,
validation at the stop, the image cache and model cards."""

from __future__ import annotations

import csv
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import evc
import evc.train.speed as speed
from evc.models.card import ModelCard
from evc.train.checkpoint import load_checkpoint
from evc.train.config import TrainConfig, read_toml
from evc.train.data import RandomCrops, find_images
from evc.train.trainer import Trainer, learning_rate_factor
from evc.train.runlog import TRAIN_COLUMNS

from conftest import smooth_image
from test_training import tiny_config as training_config


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for i in range(4):
        Image.fromarray(smooth_image(96 + 8 * i, 112, seed=i)).save(folder / f"img{i}.png")
    return folder


def tiny_config(data: Path, out: Path, **changes) -> TrainConfig:
    return training_config(data, out, **{"steps": 4, "warmup_steps": 0, **changes})


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_step_settings_follow_the_device(monkeypatch) -> None:
    cpu = torch.device("cpu")
    settings = speed.step_settings(cpu, amp=True, channels_last=True)
    assert settings.channels_last is False  # never on the CPU (crashed torch 2.13's backward there)
    assert settings.amp == speed.cpu_has_bf16() == settings.entropy_networks_autocast
    monkeypatch.setattr(speed, "cpu_has_bf16", lambda: False)
    assert speed.step_settings(cpu, amp=True, channels_last=True).amp is False
    cuda = speed.step_settings(torch.device("cuda"), amp=True, channels_last=True)
    assert (cuda.amp, cuda.channels_last, cuda.entropy_networks_autocast) == (True, True, True)
    assert speed.step_settings(cpu, amp=False, channels_last=False).amp is False
    # The allocator is tuned on the CPU only, and the plain-step benchmark can switch that off.
    assert settings.keep_allocations_mapped and not cuda.keep_allocations_mapped
    assert not speed.step_settings(cpu, amp=True, channels_last=True, tune_allocator=False).keep_allocations_mapped


def test_config_records_what_actually_ran(image_folder, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(speed, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr("evc.train.trainer.step_settings", speed.step_settings)
    Trainer(tiny_config(image_folder, tmp_path / "run", steps=1, device="cpu")).run()
    recorded = read_toml(tmp_path / "run" / "config.toml")
    assert recorded["amp"] is False and recorded["channels_last"] is False


def test_entropy_networks_under_autocast_keep_float32_arithmetic() -> None:
    torch.manual_seed(0)
    model = evc.create_model("EVC-SS", seed=3).train()
    x = torch.rand(2, 3, 64, 64)
    anchors = torch.tensor([0, 3])
    results = {}
    for reduced in (False, True):
        model.zero_grad()
        torch.manual_seed(1)  # the same z noise
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x, anchors, entropy_autocast=reduced)
        assert out.bpp.dtype == torch.float32 and out.x_hat.dtype == torch.float32
        out.bpp.sum().backward()
        grads = [p.grad for p in model.dual_prior.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        results[reduced] = out.bpp.detach()
    # Reduced precision moves the rate estimate by bf16 rounding of the networks' outputs, not more.
    assert not torch.equal(results[False], results[True])
    assert torch.allclose(results[False], results[True], rtol=0.05)


def test_time_budget_drives_the_learning_rate() -> None:
    config = TrainConfig(steps=100_000, warmup_steps=10, lr_final_fraction=0.1, data=["x"], time_limit_minutes=10)
    assert learning_rate_factor(5, config, 1.0) == pytest.approx(0.6)  # warm-up counts steps
    assert learning_rate_factor(50, config, 300.0) == pytest.approx(0.55, abs=1e-3)  # half the time: mid-cosine
    assert learning_rate_factor(60, config, 600.0) == pytest.approx(0.1)
    assert learning_rate_factor(60, config, 9_000.0) == pytest.approx(0.1)  # past the budget: stays at the floor
    untimed = dataclasses.replace(config, time_limit_minutes=0)
    assert learning_rate_factor(50, untimed, 1e9) > 0.99  # without a limit, time plays no part


def test_rate_parameters_get_their_own_learning_rate(image_folder, tmp_path) -> None:
    trainer = Trainer(tiny_config(image_folder, tmp_path / "run", lr=2e-4, rate_lr_factor=10))
    rate_ids = {id(p) for p in trainer.model.rate.parameters()}
    by_kind = {any(id(p) in rate_ids for p in g["params"]): g["base_lr"] for g in trainer.optimizer.param_groups}
    assert by_kind == {False: pytest.approx(2e-4), True: pytest.approx(2e-3)}


def test_log_rows_are_window_means_per_anchor(image_folder, tmp_path, capsys) -> None:
    trainer = Trainer(tiny_config(image_folder, tmp_path / "every", log_every=1))
    trainer.run()
    Trainer(tiny_config(image_folder, tmp_path / "pairs", log_every=2)).run()
    every = read_csv(tmp_path / "every" / "train.csv")
    pairs = read_csv(tmp_path / "pairs" / "train.csv")
    assert list(every[0]) == TRAIN_COLUMNS and [r["step"] for r in pairs] == ["2", "4"]
    for k, row in enumerate(pairs):
        singles = every[2 * k : 2 * k + 2]
        assert float(row["loss"]) == pytest.approx(sum(float(r["loss"]) for r in singles) / 2, rel=1e-9)
    # Per anchor: a row's per-anchor bpp values average back to its overall bpp (weighted by crops).
    # Step k (one process) trains on samples k*B .. k*B+B-1; the anchors they drew are the weights.
    batch = trainer.config.batch_size
    for k, row in enumerate(every):
        counts = np.bincount([trainer.data[k * batch + i][1] for i in range(batch)], minlength=4)
        assert [row[f"bpp_a{a}"] == "nan" for a in range(4)] == [n == 0 for n in counts], (k, counts)
        weighted = sum(n * float(row[f"bpp_a{a}"]) for a, n in enumerate(counts) if n) / batch
        assert float(row["bpp"]) == pytest.approx(weighted, rel=1e-6), (k, counts)
        assert all(float(row[f"psnr_a{a}"]) > 0 for a in range(4) if counts[a])
    assert any((np.bincount([trainer.data[k * batch + i][1] for i in range(batch)]) > 0).sum() > 1
               for k in range(len(every)))  # some row mixes anchors: the weighting is tested
    # No terminal under pytest: progress comes as plain lines.
    assert "step 4: loss" in capsys.readouterr().err


def test_time_limit_stops_with_validation_export_and_training_time(image_folder, tmp_path) -> None:
    kodak = tmp_path / "kodak"
    kodak.mkdir()
    Image.fromarray(smooth_image(64, 64, seed=5)).save(kodak / "kodim01.png")
    config = tiny_config(image_folder, tmp_path / "run", steps=1000, time_limit_minutes=1e-4, val_images=1, kodak=str(kodak))
    trainer = Trainer(config)
    trainer.run()
    assert 1 <= trainer.step < 1000
    rows = read_csv(tmp_path / "run" / "val.csv")
    assert len(rows) == 4 and {r["step"] for r in rows} == {str(trainer.step)}
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["step"] == trainer.step and state["elapsed_s"] > 0
    card = ModelCard.read(tmp_path / "run" / "export")
    assert card.model == "EVC-SS" and card.steps == trainer.step and card.crops_seen == 2 * trainer.step
    assert card.training_hours is not None and card.training_hours > 0 and "CPU" in card.device
    text = "\n".join(card.lines())
    assert "EVC-SS unversioned" in text and "Adam lr 0.0001" in text and "64 px" in text


def test_image_cache_gives_the_same_crops(image_folder) -> None:
    records = find_images([str(image_folder)], 64, print)
    plain, cached = RandomCrops(records, 64, seed=7), RandomCrops(records, 64, seed=7, cache=True)
    for i in range(6):
        a, b = plain[i], cached[i]
        assert torch.equal(a[0], b[0]) and a[1] == b[1]
    assert len(cached._decoded) >= 1 and not plain._decoded


def test_allocator_setting_is_harmless() -> None:
    applied = speed.keep_allocations_mapped()
    assert isinstance(applied, bool)
    assert torch.ones(1 << 20).sum().item() == 1 << 20  # memory still works afterwards


def test_continued_training_records_the_lineage_totals(image_folder, tmp_path) -> None:
    """A run from --init-weights adds its training to the earlier runs' in the export (the model card
    shows both); the totals do not depend on the earlier files still being there later."""
    first = Trainer(tiny_config(image_folder, tmp_path / "first", steps=2))
    first.run()
    second = Trainer(tiny_config(image_folder, tmp_path / "second", steps=3, init_weights=str(tmp_path / "first" / "export")))
    second.run()
    card = ModelCard.read(tmp_path / "second" / "export")
    first_card = ModelCard.read(tmp_path / "first" / "export")
    assert card.steps == 3 and card.totals is not None and card.earlier_runs
    assert (card.totals.steps, card.totals.crops) == (5, 2 * 5)
    seconds = (card.training_hours + first_card.training_hours) * 3600
    assert card.totals.seconds == pytest.approx(seconds, abs=0.2)  # each rounded to 0.1 s
    assert any(line.startswith("  in all, with the runs it continued: ") for line in card.lines())
    assert first_card.totals is not None and not first_card.earlier_runs
    assert not any("in all" in line for line in first_card.lines())
    # Recorded totals stand on their own: the first run's files may go.
    shutil.rmtree(tmp_path / "first")
    assert ModelCard.read(tmp_path / "second" / "export").totals == card.totals


def test_totals_of_older_exports_follow_their_init_weights(tmp_path) -> None:
    """Exports written before totals were recorded: their lineage is followed through evc.init_weights
    as far as the files exist (what scripts/ship_weights.py records when it ships them)."""
    from evc.models.card import TrainingTotals, training_totals
    from evc.models.weights import read_metadata, save_weights

    model = evc.create_model("EVC-SS", seed=0)
    own = {"evc.training_seconds": 10.0, "evc.training_steps": 2, "evc.images_seen": 8}
    save_weights(model, tmp_path / "a", "EVC-SS", {**own, "evc.init_weights": None})
    save_weights(model, tmp_path / "b", "EVC-SS", {**own, "evc.init_weights": str(tmp_path / "a")})
    save_weights(model, tmp_path / "c", "EVC-SS", {**own, "evc.init_weights": str(tmp_path / "gone")})
    assert training_totals(read_metadata(tmp_path / "b")) == TrainingTotals(20.0, 4, 16)
    assert training_totals(read_metadata(tmp_path / "c")) == TrainingTotals(10.0, 2, 8)

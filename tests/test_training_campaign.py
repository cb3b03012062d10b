"""What campaign II added to training: the weight average (EMA), kept exports, a clock that leaves
paused time out, random downscaling, and the training sample for the train-vs-split gap."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import evc
from evc.cli.main import main as evc_main
from evc.models.weights import load_state, read_metadata, save_weights
from evc.shared_data import TRAIN_SAMPLE_PHOTOS, VALIDATION_PHOTOS, train_sample_photo_paths
from evc.train.checkpoint import load_checkpoint
from evc.train.clock import TrainingClock
from evc.train.config import ConfigError
from evc.train.data import RandomCrops, find_images
from evc.train.ema import WeightAverage
from evc.train.trainer import Trainer

from conftest import smooth_image
from test_training import SHARED_TRAIN
from test_training import tiny_config as training_config
from test_training_fast import image_folder  # noqa: F401  (the fixture: four small smooth images)


def tiny_config(data: Path, out: Path, **changes):
    return training_config(data, out, **{"steps": 4, "warmup_steps": 0, **changes})


def test_weight_average_follows_the_parameters_by_its_decay() -> None:
    layer = torch.nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    average = WeightAverage(layer, decay=0.75)
    with torch.no_grad():
        layer.weight.fill_(3.0)
    average.update(layer)  # 0.75 * 1 + 0.25 * 3
    assert torch.allclose(average.shadow["weight"], torch.full((1, 2), 1.5))
    averaged = average.averaged(layer)
    assert torch.allclose(averaged.weight, torch.full((1, 2), 1.5)) and torch.allclose(layer.weight, torch.full((1, 2), 3.0))
    with pytest.raises(ValueError):
        WeightAverage(layer, decay=1.0)


def test_ema_is_exported_beside_the_raw_weights_and_resumes_exactly(image_folder, tmp_path) -> None:
    config = tiny_config(image_folder, tmp_path / "a", ema_decay=0.5, checkpoint_every=2, keep_exports_every=2)
    straight = Trainer(config)
    straight.run()
    run = tmp_path / "a"
    raw, _ = load_state(run / "export")
    ema, _ = load_state(run / "export-ema")
    assert read_metadata(run / "export-ema")["evc.ema"] == "decay 0.5 from step 0"
    assert "evc.ema" not in read_metadata(run / "export")
    assert "weight average (EMA 0.5)" in read_metadata(run / "export")["evc.recipe"]
    assert any(not torch.equal(raw[k], ema[k]) for k in raw)  # the average is not the last weights
    for step in (2, 4):  # kept along the run
        for folder in ("export", "export-ema"):
            assert read_metadata(run / "exports" / f"step-{step}" / folder)["evc.training_steps"] == str(step)
    codec = evc.load(weights=run / "export-ema", device="cpu")
    assert codec.decompress(codec.compress(smooth_image(40, 56), 0.5)).size == (56, 40)

    # Cut after step 2 and resumed: the same average as the straight run's.
    Trainer(tiny_config(image_folder, tmp_path / "b", ema_decay=0.5, checkpoint_every=2)).run(until_step=2)
    resumed = Trainer(tiny_config(image_folder, tmp_path / "b", ema_decay=0.5, checkpoint_every=2), resume=True)
    resumed.run()
    assert straight.ema is not None and resumed.ema is not None
    for name, value in straight.ema.shadow.items():
        assert torch.equal(value, resumed.ema.shadow[name]), name


def test_an_average_turned_on_by_a_resume_starts_there(image_folder, tmp_path) -> None:
    Trainer(tiny_config(image_folder, tmp_path / "run")).run(until_step=2)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["ema"] is None
    resumed = Trainer(tiny_config(image_folder, tmp_path / "run", ema_decay=0.9), resume=True)
    assert resumed.ema is not None and resumed.ema.start_step == 2
    resumed.run()
    assert read_metadata(tmp_path / "run" / "export-ema")["evc.ema"] == "decay 0.9 from step 2"


def test_bad_ema_and_kept_export_settings_are_refused(image_folder, tmp_path) -> None:
    with pytest.raises(ConfigError, match="ema_decay"):
        tiny_config(image_folder, tmp_path, ema_decay=1.0)
    with pytest.raises(ConfigError, match="multiple of checkpoint_every"):
        tiny_config(image_folder, tmp_path, checkpoint_every=200, keep_exports_every=300)
    with pytest.raises(ConfigError, match="downscale"):
        tiny_config(image_folder, tmp_path, downscale_p=0.5, downscale_min=0.0)


CLOCK_CHILD = """
import sys, time
from evc.train.clock import TrainingClock
clock = TrainingClock(earlier_s=100.0, tick_s=0.05, pause_after_s=0.5)
clock.start()
start = time.perf_counter()
print("ready", flush=True)
time.sleep(3.0)
print(clock.elapsed() - 100.0, time.perf_counter() - start, flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP")
def test_the_clock_leaves_out_the_time_the_process_was_stopped() -> None:
    child = subprocess.Popen([sys.executable, "-c", CLOCK_CHILD], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    child.send_signal(signal.SIGSTOP)
    time.sleep(2.0)
    child.send_signal(signal.SIGCONT)
    counted, wall = map(float, child.stdout.readline().split())
    child.wait(timeout=30)
    assert wall >= 3.0
    assert wall - counted == pytest.approx(2.0, abs=0.5), (counted, wall)  # the stop, give or take a tick


def test_a_busy_clock_counts_all_its_time() -> None:
    clock = TrainingClock(tick_s=0.01, pause_after_s=0.5)
    clock.start()
    deadline = time.perf_counter() + 0.3
    while time.perf_counter() < deadline:  # busy, as a step is: the ticks still come
        sum(range(1000))
    clock.stop()
    assert clock.elapsed() == pytest.approx(0.3, abs=0.1) and clock.paused_s == 0.0


def test_random_downscaling_is_deterministic_and_off_by_default(image_folder) -> None:
    records = find_images([str(image_folder)], 64, print)
    plain = RandomCrops(records, 64, seed=1)
    off = RandomCrops(records, 64, seed=1, downscale=(0.0, 0.5))
    scaled = RandomCrops(records, 64, seed=1, downscale=(1.0, 0.5))
    again = RandomCrops(records, 64, seed=1, downscale=(1.0, 0.5))
    differ = 0
    for i in range(8):
        a, b, c, d = plain[i], off[i], scaled[i], again[i]
        assert torch.equal(a[0], b[0]) and a[1] == b[1]  # off: the samples of a run without it
        assert c[0].shape == (3, 64, 64) and c[0].dtype == torch.uint8
        assert torch.equal(c[0], d[0]) and c[1] == d[1]
        differ += not torch.equal(a[0], c[0])
    assert differ >= 6


def test_a_downscaled_crop_shows_more_of_the_photo(tmp_path) -> None:
    # Columns 0..255 hold their own index: a crop of 64 spans 64 values, a crop scaled from up to
    # 128 pixels spans up to twice that.
    ramp = np.repeat(np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 256, 0), 3, 2)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    records = find_images([str(tmp_path)], 64, print)
    spans = [
        int(patch[0].max()) - int(patch[0].min())
        for patch, _ in (RandomCrops(records, 64, seed=5, downscale=(1.0, 0.5))[i] for i in range(16))
    ]
    plain = [int(p[0].max()) - int(p[0].min()) for p, _ in (RandomCrops(records, 64, seed=5)[i] for i in range(16))]
    assert set(plain) == {63} and max(spans) > 90 and min(spans) >= 60


@pytest.mark.skipif(not SHARED_TRAIN.is_dir(), reason="shared training data not present")
def test_the_training_sample_is_trained_on_and_mirrors_the_split() -> None:
    kept = {r.path.name for r in find_images([str(SHARED_TRAIN)], 128, print, exclude=VALIDATION_PHOTOS)}
    names = {Path(n).name for n in TRAIN_SAMPLE_PHOTOS}
    assert len(names) == 16 and names <= kept  # trained on, so not in the split
    assert all(p.is_file() for p in train_sample_photo_paths())

    def sources(photos) -> list[str]:
        return sorted(Path(n).name.split("-")[0] + ("-plasma" if "plasma" in n else "") for n in photos)

    assert sources(TRAIN_SAMPLE_PHOTOS) == sources(VALIDATION_PHOTOS)


def test_eval_on_the_training_sample(tmp_path, capsys, monkeypatch) -> None:
    import evc.shared_data

    save_weights(evc.create_model("EVC-SS", seed=0), tmp_path / "w", "EVC-SS")
    photo = tmp_path / "photo.png"
    Image.fromarray(smooth_image(64, 64, seed=3)).save(photo)
    monkeypatch.setattr(evc.shared_data, "train_sample_photo_paths", lambda: [photo])
    out = tmp_path / "res"
    assert evc_main(["eval", "--train-sample", "--weights", str(tmp_path / "w"), "--anchors", "--out", str(out), "--quiet"]) == 0
    data = json.loads((out / "EVC-SS.json").read_text())
    assert data["meta"]["dataset"] == "training sample" and set(data["per_image"]) == {"photo.png"}
    capsys.readouterr()
    assert evc_main(["eval", "--train-sample", "--validation-split", "--weights", str(tmp_path / "w")]) == 2
    assert "not both" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_background_leg_stops_cleanly_on_a_signal(image_folder, tmp_path, sig) -> None:
    # Started as scripts/train_cpu.sh starts a leg: in the background, so with SIGINT ignored.
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "evc", "train", "--model", "EVC-SS", "--data", str(image_folder), "--out", str(run),
        "--steps", "100000", "--batch-size", "2", "--crop", "64", "--workers", "0", "--val-images", "0",
        "--log-every", "1", "--checkpoint-every", "100000", "--threads", "1",
    ]
    child = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)
    )
    assert child.stderr is not None
    for line in child.stderr:
        if line.startswith("step 2: loss"):
            break
    child.send_signal(sig)
    rest = child.stderr.read()
    assert child.wait(timeout=120) != 0, rest
    step = load_checkpoint(run / "checkpoint.pt")["step"]
    assert step >= 2 and read_metadata(run / "export")["evc.training_steps"] == str(step)

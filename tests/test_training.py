"""The training pipeline: data, loss going down, exact resume, DDP (gloo, 2 processes), export, config."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import evc
from evc.models.card import ModelCard
from evc.cli.main import main as evc_main
from evc.train.config import ConfigError, TrainConfig, make_config, read_toml
from evc.shared_data import VALIDATION_PHOTOS
from evc.train.data import Prefetcher, RandomCrops, StepBatches, find_images, step_batches
from evc.train.objective import RateDistortionLoss
from evc.train.trainer import Trainer, TrainingTask, learning_rate_factor

from conftest import smooth_image

SHARED_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "train"


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for i in range(6):
        Image.fromarray(smooth_image(96 + 8 * i, 112, seed=i)).save(folder / f"img{i}.png")
    Image.fromarray(smooth_image(80, 80, seed=9)).convert("L").save(folder / "gray.jpg", quality=95)
    return folder


def tiny_config(data: Path, out: Path, **changes) -> TrainConfig:
    base = TrainConfig(
        model="EVC-SS", data=[str(data)], out=str(out), steps=6, batch_size=2, crop=64, workers=0,
        warmup_steps=2, log_every=1, val_every=1000, val_images=0, checkpoint_every=1000, lr=1e-4,
    )
    config = dataclasses.replace(base, **changes)
    config.validate()
    return config


def test_loss_goes_down_on_a_tiny_crop(image_folder, tmp_path) -> None:
    config = tiny_config(image_folder, tmp_path / "run", steps=40, batch_size=4, lr=5e-4, warmup_steps=0)
    trainer = Trainer(config)
    images, anchors = zip(*(trainer.data[10**9 + i] for i in range(8)))  # held-out sample numbers
    x = torch.stack(images).float() / 255
    anchors = torch.tensor(anchors)

    def eval_loss() -> float:
        trainer.model.eval()
        with torch.no_grad():
            loss = RateDistortionLoss(trainer.model)(x, anchors)[0].item()
        trainer.model.train()
        return loss

    before = eval_loss()
    trainer.run()
    after = eval_loss()
    assert after < 0.7 * before, (before, after)


def test_resume_continues_bit_for_bit(image_folder, tmp_path) -> None:
    straight = Trainer(tiny_config(image_folder, tmp_path / "a"))
    straight.run()
    first = Trainer(tiny_config(image_folder, tmp_path / "b"))
    first.run(until_step=3)
    assert first.step == 3 and (tmp_path / "b" / "checkpoint.pt").is_file()
    resumed = Trainer(tiny_config(image_folder, tmp_path / "b"), resume=True)
    assert resumed.step == 3
    resumed.run()
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    rows_a = (tmp_path / "a" / "train.csv").read_text().splitlines()
    rows_b = (tmp_path / "b" / "train.csv").read_text().splitlines()
    assert [r.split(",")[:5] for r in rows_a] == [r.split(",")[:5] for r in rows_b]  # step, loss, bpp, mse, psnr


def test_ctrl_c_checkpoints_the_steps_done_and_resumes(image_folder, tmp_path) -> None:
    class Interrupted(TrainingTask):
        def before_step(self, step: int) -> None:
            if step == 2:
                raise KeyboardInterrupt

    config = tiny_config(image_folder, tmp_path / "run", steps=3)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, task=Interrupted(config)).run()
    assert evc.models.weights.read_metadata(tmp_path / "run" / "export")["evc.training_steps"] == "2"
    resumed = Trainer(config, resume=True)
    assert resumed.step == 2
    resumed.run()
    assert resumed.step == 3 and len((tmp_path / "run" / "train.csv").read_text().splitlines()) == 4


def test_export_loads_with_evc_load(image_folder, tmp_path) -> None:
    export = Trainer(tiny_config(image_folder, tmp_path / "run", steps=2)).run()
    meta = evc.models.weights.read_metadata(export)
    assert meta["evc.model"] == "EVC-SS" and meta["evc.training_steps"] == "2"
    assert meta["evc.images_seen"] == "4" and "evc.date" in meta
    # The card can say what the weights were trained on and how: the held-out split, the anchor draw.
    assert meta["evc.held_out"] == "16" and meta["evc.recipe"].endswith(", anchors drawn uniformly")
    assert "(16 validation photos held out)" in ModelCard.read(export).data
    codec = evc.load(weights=export, device="cpu")
    image = smooth_image(40, 56)
    result = codec.encode(image, 0.5)
    assert np.array_equal(np.asarray(codec.decompress(result.data)), np.asarray(result.reconstruction))
    config_text = (tmp_path / "run" / "config.toml").read_text()
    assert read_toml(tmp_path / "run" / "config.toml")["steps"] == 2 and 'model = "EVC-SS"' in config_text


def test_validation_codes_kodak_at_the_four_anchors(image_folder, tmp_path) -> None:
    kodak = tmp_path / "kodak"
    kodak.mkdir()
    Image.fromarray(smooth_image(64, 128, seed=3)).save(kodak / "kodim01.png")
    Trainer(tiny_config(image_folder, tmp_path / "run", steps=2, val_every=2, val_images=1, kodak=str(kodak))).run()
    rows = (tmp_path / "run" / "val.csv").read_text().splitlines()
    assert rows[0] == "step,anchor,q_index,bpp,psnr" and len(rows) == 5
    assert [r.split(",")[1] for r in rows[1:]] == ["0", "1", "2", "3"]
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_two_process_ddp_on_cpu(image_folder, tmp_path) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "evc", "train", "--model", "EVC-SS", "--data", str(image_folder), "--out", str(out),
        "--steps", "3", "--batch-size", "1", "--crop", "64", "--workers", "0", "--device", "cpu",
        "--val-images", "0", "--log-every", "1",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    meta = evc.models.weights.read_metadata(out / "export")
    assert meta["evc.training_steps"] == "3" and meta["evc.images_seen"] == "6"  # 2 processes x 1 x 3
    assert len((out / "train.csv").read_text().splitlines()) == 4  # one writer: header + 3 steps


def test_bad_files_are_skipped_with_a_warning_naming_them(tmp_path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    Image.fromarray(smooth_image(96, 96)).save(folder / "good.png")
    (folder / "garbage.jpg").write_bytes(b"this is not a jpeg")
    Image.fromarray(smooth_image(32, 40)).save(folder / "tiny.png")
    buffer = folder / "truncated.jpg"
    Image.fromarray(smooth_image(128, 128, seed=2)).save(buffer, quality=95)
    whole = buffer.read_bytes()
    buffer.write_bytes(whole[: len(whole) // 2])  # header intact, data cut
    messages: list[str] = []
    records = find_images([str(folder)], 64, messages.append)
    assert any("garbage.jpg" in m and "not a readable image" in m for m in messages)
    assert any("tiny.png" in m and "smaller than the 64-pixel crop" in m for m in messages)
    assert {r.path.name for r in records} == {"good.png", "truncated.jpg"}
    data = RandomCrops(records, 64, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(12):
            patch, anchor = data[i]
            assert patch.shape == (3, 64, 64) and 0 <= anchor < 4
    assert any("truncated.jpg" in str(w.message) for w in caught)


def test_kodak_is_never_used_for_training(tmp_path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    Image.fromarray(smooth_image(96, 96)).save(folder / "kodim07.png")
    with pytest.raises(ConfigError, match="Kodak"):
        find_images([str(folder)], 64, print)


@pytest.mark.skipif(not SHARED_TRAIN.is_dir(), reason="shared training data not present")
def test_shard_manifest_is_read_without_opening_every_file() -> None:
    records = find_images([str(SHARED_TRAIN)], 256, print)
    assert len(records) > 300 and all(r.path.is_file() for r in records[:5])


@pytest.mark.skipif(not SHARED_TRAIN.is_dir(), reason="shared training data not present")
def test_the_validation_split_is_held_out_of_training() -> None:
    every = find_images([str(SHARED_TRAIN)], 128, print)
    kept = find_images([str(SHARED_TRAIN)], 128, print, exclude=VALIDATION_PHOTOS)
    held = {Path(name).name for name in VALIDATION_PHOTOS}
    assert len(held) == len(VALIDATION_PHOTOS) == 16
    assert held <= {r.path.name for r in every}  # every photo of the split is in the shards
    assert len(kept) == len(every) - 16 and not held & {r.path.name for r in kept}
    assert TrainConfig(data=["x"]).holdout  # held out unless asked otherwise


def test_anchor_weights_change_how_often_each_anchor_is_drawn(image_folder) -> None:
    records = find_images([str(image_folder)], 64, print)
    uniform = RandomCrops(records, 64, seed=3)
    # No weights: the anchors runs drew before weights existed (the sample's last rng.integers(4)).
    for i in range(20):
        rng = np.random.default_rng([3, i])
        record = records[int(rng.integers(len(records)))]
        rng.integers(record.height - 64 + 1), rng.integers(record.width - 64 + 1), rng.random(), rng.random()
        assert uniform[i][1] == int(rng.integers(4))
    counts = np.bincount([uniform[i][1] for i in range(400)], minlength=4)
    assert counts.min() > 60
    config = TrainConfig(data=["x"], anchor_weights="1, 1, 1, 7")
    top = RandomCrops(records, 64, seed=3, anchor_weights=config.anchor_probabilities())
    counts = np.bincount([top[i][1] for i in range(400)], minlength=4)
    assert counts[3] > 250 and counts[:3].max() < 60
    assert TrainConfig(data=["x"]).anchor_probabilities() is None
    for bad in ("1,1,1", "1,1,1,0", "1,1,x,1", "1,1,1,nan"):
        with pytest.raises(ConfigError, match="anchor_weights"):
            make_config({}, {"data": ["x"], "anchor_weights": bad})


def test_prefetched_batches_equal_the_data_loaders(image_folder) -> None:
    records = find_images([str(image_folder)], 64, print)
    data = RandomCrops(records, 64, seed=1, cache=True)
    loader = iter(torch.utils.data.DataLoader(data, batch_sampler=StepBatches(4, 3), num_workers=0))
    prefetched = Prefetcher(step_batches(data, StepBatches(4, 3)))
    try:
        for _ in range(4):
            (a, anchors_a), (b, anchors_b) = next(loader), next(prefetched)
            assert a.dtype == b.dtype == torch.uint8 and a.shape == b.shape == (3, 3, 64, 64)
            assert torch.equal(a, b) and torch.equal(anchors_a, anchors_b) and b.is_contiguous()
    finally:
        prefetched.close()
    assert next(prefetched, "stopped") == "stopped"


def test_a_filled_cache_serves_every_crop_without_the_files(image_folder, tmp_path) -> None:
    """RandomCrops.fill_cache (the benchmarks' steady state): every image decoded once, up front."""
    folder = tmp_path / "images"
    shutil.copytree(image_folder, folder)
    records = find_images([str(folder)], 64, print)
    expected = [RandomCrops(records, 64, seed=2)[i] for i in range(12)]
    cached = RandomCrops(records, 64, seed=2, cache=True)
    cached.fill_cache()
    shutil.rmtree(folder)  # from here only the cache can serve them
    for i, (image, anchor) in enumerate(expected):
        got_image, got_anchor = cached[i]
        assert torch.equal(got_image, image) and got_anchor == anchor


def test_prefetcher_raises_what_the_loading_raised() -> None:
    def items():
        yield 1
        raise RuntimeError("unreadable training images")

    prefetched = Prefetcher(items())
    assert next(prefetched) == 1
    with pytest.raises(RuntimeError, match="unreadable training images"):
        next(prefetched)
    prefetched.close()
    assert list(Prefetcher(iter([1, 2, 3]))) == [1, 2, 3]


def test_samples_are_deterministic_and_steps_partition_over_processes(image_folder) -> None:
    records = find_images([str(image_folder)], 64, print)
    a, b = RandomCrops(records, 64, seed=1), RandomCrops(records, 64, seed=1)
    assert all(torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1] for i in range(5))
    assert not torch.equal(a[0][0], RandomCrops(records, 64, seed=2)[0][0])
    ranks = [iter(StepBatches(5, 3, rank, 2)) for rank in range(2)]
    first = [next(r) for r in ranks]
    assert first == [[30, 31, 32], [33, 34, 35]]
    assert next(iter(StepBatches(0, 3))) == [0, 1, 2]


def test_learning_rate_schedule() -> None:
    config = TrainConfig(steps=1000, warmup_steps=100, lr_final_fraction=0.1, data=["x"])
    factors = [learning_rate_factor(s, config) for s in range(1000)]
    assert factors[0] == pytest.approx(0.01) and factors[99] == pytest.approx(1.0)
    assert factors[999] == pytest.approx(0.1, abs=1e-3)
    assert all(x >= y for x, y in zip(factors[100:], factors[101:]))


def test_config_file_overrides_and_errors(tmp_path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('model = "EVC-MM"\nsteps = 50\ndata = ["a", "b"]\nlr = 1\n')
    config = make_config(read_toml(path), {"steps": 7, "crop": None})
    assert (config.model, config.steps, config.data, config.lr, config.crop) == ("EVC-MM", 7, ["a", "b"], 1.0, 256)
    path.write_text("stepz = 3\n")
    with pytest.raises(ConfigError, match="unknown settings stepz"):
        read_toml(path)
    with pytest.raises(ConfigError, match="multiple of 64"):
        make_config({}, {"data": ["x"], "crop": 100})
    with pytest.raises(ConfigError, match="must be int"):
        make_config({"steps": "ten", "data": ["x"]}, {})


def test_cli_refuses_to_overwrite_a_run_and_reports_bad_options(image_folder, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    args = ["train", "--model", "EVC-SS", "--data", str(image_folder), "--out", str(out), "--steps", "1",
            "--batch-size", "1", "--crop", "64", "--workers", "0", "--val-images", "0"]
    assert evc_main(args) == 0
    assert evc_main(args) == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert evc_main(["train", "--out", str(tmp_path / "x"), "--resume"]) == 2
    assert evc_main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert "--resume needs" in err and "training data not found" in err and "Traceback" not in err
    assert evc_main(args[:-8] + ["--steps", "2", "--batch-size", "1", "--crop", "64", "--workers", "0", "--val-images", "0", "--resume"]) == 0


def test_scalable_model_starts_from_a_single_encoder_model(image_folder, tmp_path) -> None:
    """RRL: Scale-SS initialised from an EVC-SS export has that encoder at every level, then trains."""
    from evc.models.weights import save_weights

    single = evc.create_model("EVC-SS", seed=4)
    save_weights(single, tmp_path / "ss", "EVC-SS")
    config = tiny_config(image_folder, tmp_path / "scalable", model="Scale-SS", steps=2, init_weights=str(tmp_path / "ss"))
    trainer = Trainer(config)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = evc.load(weights=tmp_path / "ss", device="cpu").model.g_a(x)
        latents = trainer.model.level_latents(x)
    for latent in latents[:3]:
        assert torch.allclose(latent, expected, atol=1e-6)
    trainer.run()
    meta = evc.models.weights.read_metadata(tmp_path / "scalable" / "export")
    assert meta["evc.model"] == "Scale-SS"
    with pytest.raises(ConfigError, match="holds EVC-SS, not Scale-SL"):
        Trainer(dataclasses.replace(config, model="Scale-SL", out=str(tmp_path / "bad")))


def test_the_thread_count_follows_the_free_cores_by_time_not_by_log_step(image_folder, tmp_path, monkeypatch) -> None:
    """Next to an equal-weight busy process, 2 spinning threads trained at 4 % of their alone speed
    (docs/training.md), so a choice made only at each 50-step log window came 17 minutes late. The
    trainer chooses again whenever FOLLOW_FREE_CORES_EVERY_S has passed, whatever log_every says."""
    import evc.train.trainer as trainer_module

    class CountingPolicy:
        def __init__(self, counts: list[int]) -> None:
            self.counts = counts  # what each choice returns, in order (then the last again)
            self.calls = 0

        def choose(self) -> int:
            self.calls += 1
            return self.counts[min(self.calls, len(self.counts)) - 1]

    threads = torch.get_num_threads()
    try:
        monkeypatch.setattr(trainer_module, "FOLLOW_FREE_CORES_EVERY_S", 0.0)  # every step
        trainer = Trainer(tiny_config(image_folder, tmp_path / "every", steps=4, log_every=1000))
        policy = trainer.thread_policy = CountingPolicy([1, 2])
        trainer.run()
        assert policy.calls == 5  # before the first step, and after each of the 4
        assert torch.get_num_threads() == 2  # the latest choice is applied

        monkeypatch.setattr(trainer_module, "FOLLOW_FREE_CORES_EVERY_S", 3600.0)
        trainer = Trainer(tiny_config(image_folder, tmp_path / "hourly", steps=4, log_every=1))
        policy = trainer.thread_policy = CountingPolicy([1])
        trainer.run()
        assert policy.calls == 1  # log steps no longer choose
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)

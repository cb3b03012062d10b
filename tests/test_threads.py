"""The CPU thread policy (evc.threads): settings, the free-core measurement, and who follows it."""

from __future__ import annotations

import dataclasses
import os
from contextlib import contextmanager

import pytest
import torch

import evc
import evc.threads as threads
from evc.cli.main import main
from evc.train.config import ConfigError, TrainConfig

from conftest import smooth_image


def test_settings_parse_and_bad_ones_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert threads.parse("auto") == threads.parse(" AUTO ") == "auto"
    assert threads.parse(3) == threads.parse("3") == 3
    for bad in (0, -1, "0", "many", 1.5, True, "", "2.0"):
        with pytest.raises(ValueError, match="threads must be"):
            threads.parse(bad)  # type: ignore[arg-type]
    # No setting: EVC_THREADS, then OMP_NUM_THREADS, then auto.
    monkeypatch.setenv("EVC_THREADS", "5")
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert threads.parse(None) == 5
    monkeypatch.delenv("EVC_THREADS")
    assert threads.parse(None) == 7
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.parse(None) == "auto"


class _FakeMachine:
    """A clock, the machine's idle seconds and our own CPU seconds, advanced by hand."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, cpus: int = 4, readable: bool = True) -> None:
        self.wall = self.idle = self.own = 0.0
        self.readable = readable
        monkeypatch.setattr(threads.time, "monotonic", lambda: self.wall)
        monkeypatch.setattr(threads.time, "sleep", self.pass_time)
        monkeypatch.setattr(threads, "_machine_idle_s", lambda: self.idle if self.readable else None)
        monkeypatch.setattr(threads, "_own_cpu_s", lambda: self.own)
        monkeypatch.setattr(threads, "usable_cpus", lambda: cpus)
        self.idle_rate = 0.0  # idle cores of the machine
        self.own_rate = 0.0  # cores this process computes on

    def pass_time(self, seconds: float) -> None:
        self.wall += seconds
        self.idle += self.idle_rate * seconds
        self.own += self.own_rate * seconds


def test_auto_follows_the_free_cores_own_time_included(monkeypatch: pytest.MonkeyPatch) -> None:
    machine = _FakeMachine(monkeypatch, cpus=4)
    policy = threads.ThreadPolicy("auto")
    machine.idle_rate = 4.0
    assert policy.choose() == 4  # nothing measured yet: a short window now; the machine is idle
    machine.idle_rate, machine.own_rate = 0.0, 4.0
    machine.pass_time(1.0)
    assert policy.choose() == 4  # we computed on every core: still ours
    machine.idle_rate, machine.own_rate = 0.0, 2.0  # two busy processes took two cores
    machine.pass_time(1.0)
    assert policy.choose() == 2
    machine.idle_rate, machine.own_rate = 0.0, 0.0  # everything taken by others
    machine.pass_time(1.0)
    assert policy.choose() == 1  # never fewer than one
    machine.pass_time(0.001)
    assert policy.choose() == 1  # a window too short to tell: the last decision
    machine.idle_rate = 1.6
    machine.pass_time(1.0)
    assert policy.choose() == 2  # 1.6 free cores round to 2
    assert threads.ThreadPolicy("auto", limit=1).choose() == 1


def test_auto_without_a_load_reading_uses_every_usable_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    _FakeMachine(monkeypatch, cpus=3, readable=False)
    assert threads.ThreadPolicy("auto").choose() == 3
    assert threads.ThreadPolicy(2).choose() == 2  # a fixed count is not measured


def test_the_real_measurement_is_plausible() -> None:
    sample = threads.LoadSample()
    threads.time.sleep(0.1)
    free = sample.free_cores()
    if os.path.exists("/proc/stat"):  # Linux: the reading must work (None would silently mean every CPU)
        assert free is not None
    assert free is None or 0.0 <= free <= threads.usable_cpus() + 0.5


@contextmanager
def _torch_threads(count: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("setting", [1, 2])
def test_the_codec_codes_with_its_policy_and_restores_the_process_setting(setting: int) -> None:
    codec = evc.Codec(evc.create_model("EVC-SS", seed=0), "EVC-SS", device="cpu", threads=setting)
    seen: list[int] = []

    @contextmanager
    def timing(part: str):
        seen.append(torch.get_num_threads())
        yield

    codec.execution = dataclasses.replace(codec.execution, timing=timing)
    image = smooth_image(64, 64)
    with _torch_threads(3):
        data = codec.compress(image, 0.5)
        codec.decompress(data)
        assert torch.get_num_threads() == 3
    assert seen and set(seen) == {setting}


def test_bad_thread_settings_are_clear_errors(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    with pytest.raises(ValueError, match="threads must be"):
        evc.Codec(evc.create_model("EVC-SS", seed=0), "EVC-SS", device="cpu", threads=0)
    assert main(["encode", "in.png", str(tmp_path / "out.evc"), "--threads", "none"]) == 2
    assert "threads must be 'auto' or a count" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="threads must be"):
        TrainConfig(data=["x"], threads="0").validate()

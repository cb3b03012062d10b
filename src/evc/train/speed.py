"""What makes a training step fast on the device at hand, decided in one place.

Measured on the 2-core CPU machines of this project (``benchmarks/train_speed.py``, docs/training.md):
- bf16 autocast of every network, with the entropy model's arithmetic and rate terms in float32, is
  the largest gain on CPUs with native bf16 (AVX512-BF16 or AMX);
- glibc's allocator returns the step's large activation buffers to the kernel after each use and
  maps them anew (page faults on every step); keeping them mapped is the next largest gain;
- channels_last is left to CUDA: on the CPU (torch 2.13, AMD EPYC with AVX-512) the backward pass of
  g_a in channels_last crashed the process with heap corruption ("double free or corruption").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_TOP_PAD_BYTES = 512 << 20


@dataclass(frozen=True)
class StepSettings:
    """How the training step runs on its device: what the run's config.toml records (amp, channels_last),
    and how the process is set up for it."""

    amp: bool
    channels_last: bool
    entropy_networks_autocast: bool
    keep_allocations_mapped: bool = False  # tune glibc's allocator for the process (CPU only)


def cpu_model_name() -> str:
    """The CPU's model name ("AMD EPYC", "Intel(R) Xeon(R) ..."), for run records and reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo ("flags" on x86, "Features" on Arm), or None if unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.split(":", 1)[0].strip()
            if key in ("flags", "Features"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 natively (AVX512-BF16 or AMX on x86, BF16 on Arm); else bf16 is emulated.

    oneDNN's own check is not enough: it also answers yes on plain AVX-512, where bf16 is emulated and
    the bf16 step is slower than float32 (measured in docs/training.md with benchmarks/train_speed.py).
    """
    try:
        if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
            return False
    except (AttributeError, RuntimeError):
        return False
    flags = _cpu_flags()
    if flags is None:  # no /proc/cpuinfo: trust oneDNN
        return True
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def step_settings(device: torch.device, amp: bool, channels_last: bool, tune_allocator: bool = True) -> StepSettings:
    """The settings a run asked for, as this device can honour them.

    ``tune_allocator=False`` leaves glibc's allocator as it is, for measuring the plain step
    (benchmarks/train_speed.py); training always tunes it on the CPU.
    """
    if device.type == "cuda":
        return StepSettings(amp=amp, channels_last=channels_last, entropy_networks_autocast=amp)
    if device.type == "cpu":
        use_amp = amp and cpu_has_bf16()
        return StepSettings(
            amp=use_amp, channels_last=False, entropy_networks_autocast=use_amp, keep_allocations_mapped=tune_allocator
        )
    return StepSettings(amp=False, channels_last=False, entropy_networks_autocast=False)


def keep_allocations_mapped() -> bool:
    """Ask glibc to keep freed memory for reuse instead of unmapping it (Linux with glibc only).

    Same effect as MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=-1 MALLOC_TOP_PAD_=512M, but set from
    inside the process. Memory then stays at the step's peak, which training reaches anyway.
    Returns whether the settings were applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return all(
        mallopt(param, value) == 1
        for param, value in ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, _TOP_PAD_BYTES))
    )

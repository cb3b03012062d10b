"""How many CPU threads evc computes with: the cores free right now, so that a busy machine slows it down
gracefully instead of collapsing.

torch's OpenMP threads meet at a barrier after every parallel operator. When another process holds one
of the cores, the thread that runs there is descheduled for whole time slices while the others wait for
it: measured on 2 cores, `evc encode` of a Kodak image took 1.7x its quiet time next to one busy process
and 4.3-10x next to two, while one thread stayed within 1.2x in every case (issue 20). So the threads
follow the load: as many as there are free cores, at least one.

"Free" is measured, not guessed: the idle CPU time of the machine plus the CPU time this process itself
used, both over a recent window (Linux ``/proc/stat`` and ``os.times``; elsewhere every usable CPU
counts as free). Counting our own time keeps a process that already computes on every core at that
count.

The policy is one setting, the same for the codec, the training and the tests: ``"auto"`` (the free
cores, at most the CPUs this process may use) or a fixed count. It is read from, in order: the caller's
argument (``Codec(threads=...)``, ``evc ... --threads``, ``evc train --threads``), the ``EVC_THREADS``
environment variable, a set ``OMP_NUM_THREADS`` (a fixed count, as every OpenMP program reads it), and
otherwise "auto".
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

ENV_VAR = "EVC_THREADS"
AUTO = "auto"
# The window over which the load is measured when there is no earlier sample to measure from.
_WINDOW_S = 0.05
# Windows shorter than this say little (a few clock ticks of 10 ms): keep the last decision.
_MIN_WINDOW_S = 0.02


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _machine_idle_s() -> float | None:
    """Idle CPU seconds of the whole machine since boot (idle + iowait of /proc/stat), or None."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if len(fields) < 6 or fields[0] != "cpu":
        return None
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


class LoadSample:
    """A snapshot of the machine's idle time and this process's CPU time, to measure free cores from."""

    def __init__(self) -> None:
        self.wall = time.monotonic()
        self.idle = _machine_idle_s()
        self.own = _own_cpu_s()

    def free_cores(self) -> float | None:
        """Cores free to this process since the snapshot (machine idle + own CPU time per wall second);
        None where the machine's idle time cannot be read or the window is too short to tell."""
        now = LoadSample()
        elapsed = now.wall - self.wall
        if self.idle is None or now.idle is None or elapsed < _MIN_WINDOW_S:
            return None
        return ((now.idle - self.idle) + (now.own - self.own)) / elapsed


def parse(setting: str | int | None) -> str | int:
    """A thread setting: "auto" or a count >= 1. None reads EVC_THREADS, then OMP_NUM_THREADS, else
    "auto". Raises ValueError for anything else (a bool, 0, "many")."""
    if setting is None:
        setting = os.environ.get(ENV_VAR) or os.environ.get("OMP_NUM_THREADS") or AUTO
    if isinstance(setting, bool):
        raise ValueError(f"threads must be 'auto' or a count >= 1, got {setting!r}")
    if isinstance(setting, str):
        text = setting.strip().lower()
        if text == AUTO:
            return AUTO
        if not text.isdigit():
            raise ValueError(f"threads must be 'auto' or a count >= 1, got {setting!r}")
        setting = int(text)
    if not isinstance(setting, int) or setting < 1:
        raise ValueError(f"threads must be 'auto' or a count >= 1, got {setting!r}")
    return setting


class ThreadPolicy:
    """Chooses the thread count for each piece of work (an image, a training window) under a setting.

    ``setting``: "auto", a count, or None (see :func:`parse`). With "auto" each :meth:`choose` measures
    the free cores since the previous one (the first: since ``since``, default when the policy was
    made, or over a short window if that is too recent), at most ``usable_cpus()`` and at most
    ``limit`` (default: no other limit). Raises ValueError for a bad setting.
    """

    def __init__(self, setting: str | int | None = None, limit: int | None = None, since: LoadSample | None = None) -> None:
        self.setting = parse(setting)
        self.limit = limit
        self._sample = since or LoadSample()
        self._last: int | None = None

    def choose(self) -> int:
        """The thread count for the next piece of work."""
        if self.setting != AUTO:
            return int(self.setting)
        cap = min(usable_cpus(), self.limit or usable_cpus())
        free = self._sample.free_cores()
        if free is None and self._last is None:  # nothing measured yet: measure a short window now
            time.sleep(_WINDOW_S)
            free = self._sample.free_cores()
        if free is None:
            return self._last if self._last is not None else cap
        self._sample = LoadSample()
        self._last = max(1, min(cap, int(free + 0.5)))
        return self._last

    @contextmanager
    def applied(self) -> Iterator[int]:
        """Run the block with :meth:`choose`'s count of torch threads, then restore the previous count."""
        import torch  # here: a command measures its start-up, torch's import included (process_threads)

        previous = torch.get_num_threads()
        count = self.choose()
        if count != previous:
            torch.set_num_threads(count)
        try:
            yield count
        finally:
            if torch.get_num_threads() != previous:
                torch.set_num_threads(previous)


_Method = TypeVar("_Method", bound=Callable[..., Any])


def per_call(method: _Method) -> _Method:
    """Decorate a method of an object that has a ``thread_policy`` (a :class:`ThreadPolicy`): each call
    runs with the count of torch threads the policy chooses when it starts (the codec: per image)."""

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.thread_policy.applied():
            return method(self, *args, **kwargs)

    return run  # type: ignore[return-value]


@contextmanager
def process_threads(setting: str | int | None = None, since: LoadSample | None = None) -> Iterator[int]:
    """Run the block with the policy's torch thread count for the whole process, measured since
    ``since`` (default: now, over a short window), then restore the previous count. A command runs in
    this, from a sample taken when it starts, so that the first choice measures the load over its
    start-up (torch loads here, before the choice) and loading the model follows the policy too. Raises
    ValueError for a bad setting."""
    with ThreadPolicy(setting, since=since).applied() as count:
        yield count

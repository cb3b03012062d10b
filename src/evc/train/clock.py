"""The training clock: seconds a run has trained, time it was paused left out.

A CPU leg is paused with ``kill -STOP`` while someone times something on the same cores; until
2026-12-07 the paused minutes counted against its time budget, so its cosine ran on through the pause
and the leg lost that many minutes of its schedule (leg 4 of issue 19: 46 of 148). A stopped process
runs none of its threads, so a thread that ticks every second sees a pause as one long gap between
two ticks; a slowed process (sharing the cores) still ticks on time, and its time counts.
"""

from __future__ import annotations

import threading
import time

# A gap between ticks this long is a pause, not a busy machine: a sleeping thread wakes within
# milliseconds even on two saturated cores, and nothing in a step holds the GIL for this long.
PAUSE_AFTER_S = 20.0
TICK_S = 1.0


class TrainingClock:
    """``elapsed()``: ``earlier_s`` plus the seconds since ``start()``, less the gaps of over
    ``pause_after_s`` between the ticks of a background thread (the process was stopped)."""

    def __init__(self, earlier_s: float = 0.0, tick_s: float = TICK_S, pause_after_s: float = PAUSE_AFTER_S) -> None:
        self.earlier_s = earlier_s
        self.tick_s = tick_s
        self.pause_after_s = pause_after_s
        self.paused_s = 0.0  # this session's paused seconds
        self._started: float | None = None
        self._last_tick = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start counting (once per session of a run) and the ticking thread."""
        self._started = self._last_tick = time.perf_counter()
        self._thread = threading.Thread(target=self._tick, name="evc-clock", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the ticking thread; ``elapsed()`` stays readable."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def elapsed(self) -> float:
        """Training seconds so far (earlier sessions included, pauses excluded)."""
        if self._started is None:
            return self.earlier_s
        now = time.perf_counter()
        with self._lock:
            self._account(now)  # a pause that just ended counts before the ticking thread has woken
            return self.earlier_s + (now - self._started) - self.paused_s

    def _account(self, now: float) -> None:
        gap = now - self._last_tick
        if gap > self.pause_after_s:
            self.paused_s += gap - self.tick_s
        self._last_tick = now

    def _tick(self) -> None:
        while not self._stop.wait(self.tick_s):
            with self._lock:
                self._account(time.perf_counter())

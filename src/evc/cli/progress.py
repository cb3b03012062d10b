"""A progress line on the terminal while `evc encode` / `evc decode` work on one image.

Shown only where stderr is a terminal, not with ``--quiet``, and only once the image has taken
``DELAY`` seconds: a photo that codes in a second prints nothing. The line names the image and the step
running now (the codec's progress hook: "analysis", "entropy coding", a target search's "searching q
for X bpp: q index N → B bpp", ...) and the elapsed time, which ticks during a long step.
tqdm draws it (``disable=None``: silent when its stream is no terminal); nothing here changes a file.
"""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import Any, TextIO

from evc.eval.progress import PROGRESS_DELAY_S

# Seconds an image is worked on before its progress line appears (tqdm's ``delay``): the same as the
# evaluation commands' bars.
DELAY = PROGRESS_DELAY_S
# How often the elapsed time is redrawn while one step runs, in seconds.
TICK = 0.5
# Steps that follow one another faster than this are not each drawn (tqdm's ``mininterval``).
MIN_INTERVAL = 0.1


class ImageProgress:
    """A context manager whose instance is the codec's ``progress`` hook for one image.

    ``description``: what is done to which image ("encoding photo.png 4212x2808"). ``quiet``: show
    nothing. ``stream``: where to draw (default: stderr at the time of the call); nothing is drawn
    unless it is a terminal (``isatty()``), nor where tqdm is not installed.
    """

    def __init__(self, description: str, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.description = description
        self._bar: Any = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        stream = sys.stderr if stream is None else stream
        isatty = getattr(stream, "isatty", None)
        if quiet or stream is None or not (callable(isatty) and isatty()):
            return  # no terminal: not even tqdm is imported
        try:
            from tqdm import tqdm
        except ImportError:  # progress is a courtesy: coding goes on without it
            return
        self._bar = tqdm(total=None, desc=description, bar_format="{desc} [{elapsed}]", delay=DELAY,
                         mininterval=MIN_INTERVAL, disable=None, file=stream, leave=False, dynamic_ncols=True)
        self._ticker = threading.Thread(target=self._tick, name="evc-progress", daemon=True)
        self._ticker.start()

    def __call__(self, step: str) -> None:
        """The codec's progress hook: ``step`` has started."""
        if self._bar is not None:
            self._bar.set_description_str(f"{self.description}: {step}", refresh=False)
            self._bar.update()  # draws only once DELAY has passed (tqdm's delay)

    def _tick(self) -> None:
        # tqdm draws on update(); a long step (g_a of a 12-megapixel photo) has none, so redraw the
        # elapsed time from here, once the delay has passed.
        bar = self._bar
        while not self._stop.wait(TICK):
            if bar.format_dict["elapsed"] >= DELAY:
                bar.refresh()

    def close(self) -> None:
        """Stop the ticker and clear the line."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> ImageProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

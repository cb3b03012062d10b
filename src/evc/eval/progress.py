"""Progress bars for the evaluation commands (`evc eval`, `evc compare`): tqdm on stderr, shown only
when stderr is a terminal, only when asked for, and only once the work has taken PROGRESS_DELAY_S,
so that short runs, pipes, logs and tests print nothing progress-like."""

from __future__ import annotations

import sys
from typing import Any

from evc.extras import require

__all__ = ["PROGRESS_DELAY_S", "progress_bar"]

# Seconds before a bar appears: a run shorter than this prints nothing.
PROGRESS_DELAY_S = 2.0


def progress_bar(total: int, desc: str, unit: str, enabled: bool = True) -> Any:
    """A tqdm bar of ``total`` steps (a context manager; ``update(n)`` advances it). ``enabled`` False
    (e.g. --quiet) silences it; so does a stderr that is not a terminal (tqdm's ``disable=None``). It is
    removed when done (``leave=False``): the command's own output follows it. Needs tqdm."""
    tqdm = require("tqdm", "eval").tqdm
    return tqdm(
        total=total, desc=desc, unit=unit, file=sys.stderr, disable=None if enabled else True,
        delay=PROGRESS_DELAY_S, leave=False, dynamic_ncols=True,
    )

"""File-system helpers shared by the CLI and the weights writer."""

from __future__ import annotations

import os


def default_file_mode() -> int:
    """The mode a newly created file gets from open(): 0o666 less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask

"""Safe file output: write to a temporary file beside the target, then move it into place.

A failed or interrupted command leaves no partial output, and an existing file is replaced only when
the user asked for it (``force``); without it the final step refuses atomically if the file appeared.
A write that fails (a full disk, no permission, a folder gone) is reported with the output's name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from evc.errors import EVCError
from evc.fileutil import default_file_mode


class OutputExistsError(EVCError):
    pass


def write_error(what: object, exc: OSError) -> EVCError:
    """The error for a failed write of ``what`` (a path, or "standard output"): the name the user gave,
    then the system's reason ("cannot write photo.evc: No space left on device"); the temporary file's
    name, which the system's message would give, means nothing to the user."""
    return EVCError(f"cannot write {what}: {exc.strerror or exc}")


def check_output(path: Path, force: bool) -> None:
    """Fail early (before any work) when ``path`` cannot or must not be written."""
    if path.is_dir():
        raise EVCError(f"output {path} is a directory")
    if path.exists() and not force:
        raise OutputExistsError(f"output {path} exists; pass --force to overwrite it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise EVCError(f"cannot write {path}: output folder {parent} does not exist")


def write_output(path: Path, write: Callable[[Path], None], force: bool) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then move it to ``path``. Raises
    OutputExistsError (``path`` appeared meanwhile, without ``force``) or EVCError naming ``path`` for a
    write that fails (:func:`write_error`); nothing is left behind either way."""
    check_output(path, force)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:  # no permission to write in the folder, or it is gone
        raise write_error(path, exc) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _write_and_move(tmp, path, write, force)
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_and_move(tmp: Path, path: Path, write: Callable[[Path], None], force: bool) -> None:
    """``write(tmp)``, then ``tmp`` moved to ``path`` (OutputExistsError if it appeared without ``force``)."""
    write(tmp)
    os.chmod(tmp, default_file_mode())  # mkstemp makes private files; outputs get the usual mode
    if force:
        os.replace(tmp, path)
    else:
        try:
            os.link(tmp, path)  # fails if path exists: no window for a silent overwrite
        except FileExistsError:
            raise OutputExistsError(f"output {path} exists; pass --force to overwrite it") from None
        except OSError:  # file systems without hard links
            if path.exists():
                raise OutputExistsError(f"output {path} exists; pass --force to overwrite it") from None
            os.replace(tmp, path)

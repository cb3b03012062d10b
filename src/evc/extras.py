"""Optional dependencies: the codec needs none of them; training and evaluation do."""

from __future__ import annotations

import importlib
from types import ModuleType

from evc.errors import EVCError


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or explain which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise EVCError(f"this needs the Python package {module.split('.')[0]!r}: pip install 'evc[{extra}]'") from None

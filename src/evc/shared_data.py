"""Where the shared data lives in a development checkout: ``../shared`` next to the repository.

Paths only, no other evc import, so every layer may use it (training validation, evaluation, scripts).
"""

from __future__ import annotations

from pathlib import Path

SHARED_DIR = Path(__file__).resolve().parents[3] / "shared"
KODAK_DIR = SHARED_DIR / "data" / "kodak"

"""The one folder where rlem-gym keeps what it rebuilds on demand: assembled models, dequantised
weights and WebShop search indexes.

``$RLEM_GYM_CACHE_DIR`` moves all of it; else ``$XDG_CACHE_HOME/rlem-gym``; else ``~/.cache/rlem-gym``.
Deleting the folder only costs the time to rebuild what is in it.
"""

from __future__ import annotations

import os
from pathlib import Path

#: environment variable that moves every rlem-gym cache
CACHE_ENV = "RLEM_GYM_CACHE_DIR"


def cache_root() -> Path:
    """``$RLEM_GYM_CACHE_DIR``, else ``$XDG_CACHE_HOME/rlem-gym``, else ``~/.cache/rlem-gym``."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "rlem-gym"

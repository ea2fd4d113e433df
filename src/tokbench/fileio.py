"""Atomic file writes: a crash or kill mid-write leaves the old file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

CACHE_ENV_VAR = "TOKBENCH_CACHE_DIR"


def cache_root() -> Path:
    """Where tokbench keeps machine-local caches: ``$TOKBENCH_CACHE_DIR``, else ``~/.cache/tokbench``."""
    root = os.environ.get(CACHE_ENV_VAR)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "tokbench"


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a synced temp file in the same folder and ``os.replace``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target

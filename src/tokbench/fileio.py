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


def _umask() -> int:
    """The process umask: read from /proc on Linux; elsewhere os.umask can only be read by setting it back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a synced temp file in the same folder and ``os.replace``.

    The file gets the permissions a plain ``open(path, "w")`` would give (0666 minus the umask), not
    the owner-only 0600 of ``mkstemp``: results are meant to be shared.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target

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


def atomic_write_text(path: str | Path, text: str, *, replace: bool = True) -> Path:
    """Write ``text`` to ``path`` via a synced temp file in the same folder and ``os.replace``.

    The file gets the permissions a plain ``open(path, "w")`` would give (0666 minus the umask), not
    the owner-only 0600 of ``mkstemp``: results are meant to be shared. With ``replace=False`` an existing
    ``path`` is never replaced: the finished file is hard-linked into place, which fails with
    ``FileExistsError`` when something is there, even one written a moment ago by another process.
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
        if replace:
            os.replace(temp_name, target)
        else:
            os.link(temp_name, target)  # atomic and exclusive: never replaces a result already there
            os.unlink(temp_name)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target


def write_new_text(folder: str | Path, stem: str, suffix: str, text: str) -> Path:
    """Write ``text`` to ``folder/stem{suffix}``, or ``stem-2{suffix}``, ``-3``... : the first name that is free.

    Two runs finishing in the same second (parallel jobs) both keep their file; nothing is replaced.
    """
    directory = Path(folder)
    for attempt in range(1, 10_000):
        candidate = directory / (f"{stem}{suffix}" if attempt == 1 else f"{stem}-{attempt}{suffix}")
        if candidate.exists():
            continue
        try:
            return atomic_write_text(candidate, text, replace=False)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free file name for {stem}{suffix} in {directory}")


def check_writable_folder(folder: str | Path) -> None:
    """Raise ``OSError`` now if a file cannot be created in ``folder`` (read-only, not a folder, no permission).

    Creates the folder if needed and writes and removes a small probe file: a benchmark must not run for
    minutes and then find it cannot keep its result.
    """
    directory = Path(folder)
    directory.mkdir(parents=True, exist_ok=True)
    handle, probe = tempfile.mkstemp(prefix=".tokbench-write-check-", dir=directory)
    try:
        os.write(handle, b"0" * 4096)  # a full disk fails here, not after the run
        os.fsync(handle)
    finally:
        os.close(handle)
        Path(probe).unlink(missing_ok=True)

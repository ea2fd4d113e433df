"""Files, safely: atomic writes (a crash or kill mid-write leaves the old file or the new one, never half of one),
bounded reads of regular files only (a FIFO never hangs a reader, ``/dev/zero`` never fills memory), and
structured text (JSON / YAML) whose nesting and expanded size are bounded before anything walks it."""

from __future__ import annotations

import os
import pwd
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CACHE_ENV_VAR = "TOKBENCH_CACHE_DIR"
MAX_NESTING = 64  # no config, sweep or result needs more levels; deeper is a mistake or an attack
MAX_TEXT_BYTES = 512 * 2**20  # a result of 1,000 calls × 64 requests × 1,000 tokens is about 0.5 GiB


class UnsafeFileError(ValueError):
    """A file that is not read as asked: not a regular file, too large, too deeply nested, or too big expanded.

    The message names the file and what to do; callers turn it into their own error type.
    """


def home_folder() -> Path:
    """The user's home folder: ``$HOME`` when it is an absolute path, else the password database's entry
    (``HOME=`` empty must not put caches under ``/``), else the temporary folder."""
    home = os.environ.get("HOME", "")
    if home and os.path.isabs(home):
        return Path(home)
    try:
        entry = pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        entry = ""
    return Path(entry) if entry and os.path.isabs(entry) and entry != "/" else Path(tempfile.gettempdir())


def cache_root() -> Path:
    """Where tokbench keeps machine-local caches: ``$TOKBENCH_CACHE_DIR``, else ``~/.cache/tokbench``."""
    root = os.environ.get(CACHE_ENV_VAR)
    return Path(root).expanduser() if root else home_folder() / ".cache" / "tokbench"


def file_kind(path: str | Path) -> str:
    """What ``path`` is, in words: "a file", "a folder", "a FIFO", "a device", "a socket", "missing"."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "missing"
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "a special file"


def read_regular_text(path: str | Path, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes``; ``UnsafeFileError`` for anything else.

    Opened non-blocking, then checked on the open descriptor: a FIFO is refused without waiting for a writer,
    a link to a device without reading it, and a file that grows while read stops at the bound.
    ``OSError`` (missing, no permission) and ``UnicodeDecodeError`` pass through.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError(f"{path} is {file_kind(path)}, not a regular file; tokbench reads files only")
        if info.st_size > max_bytes:
            raise UnsafeFileError(f"{path} is {info.st_size:,} bytes, more than the {max_bytes:,} tokbench reads")
        chunks, size = [], 0
        while chunk := os.read(descriptor, 1 << 20):
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise UnsafeFileError(f"{path} grew past the {max_bytes:,} bytes tokbench reads while being read")
    finally:
        os.close(descriptor)
    return b"".join(chunks).decode("utf-8")


def check_nesting(data: Any, where: str, *, max_depth: int = MAX_NESTING, max_values: int | None = None) -> None:
    """Refuse data nested deeper than ``max_depth`` or, with ``max_values``, holding more values once YAML
    aliases are expanded: both are measured without expanding anything (shared nodes are visited once)."""
    depth_of: dict[int, int] = {}
    size_of: dict[int, int] = {}
    for node in _post_order(data, where, max_depth):
        children = _children(node)
        depth_of[id(node)] = 1 + max((depth_of.get(id(child), 0) for child in children), default=0)
        size_of[id(node)] = 1 + sum(size_of.get(id(child), 1) for child in children)
    if max_values is not None and size_of.get(id(data), 1) > max_values:
        raise UnsafeFileError(
            f"{where} expands to {size_of[id(data)]:,} values (YAML aliases repeat what they name), more than "
            f"the {max_values:,} a config or sweep may hold; write the values out or split the file"
        )


def _children(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [*node.keys(), *node.values()]
    return list(node) if isinstance(node, (list, tuple)) else []


def _post_order(data: Any, where: str, max_depth: int) -> Iterator[Any]:
    """Containers of ``data`` children first, each shared container once; iterative (no recursion limit)."""
    seen: set[int] = set()
    stack: list[tuple[Any, int, bool]] = [(data, 1, False)]
    while stack:
        node, depth, expanded = stack.pop()
        if not isinstance(node, (dict, list, tuple)):
            continue
        if expanded:
            yield node
            continue
        if id(node) in seen:
            continue
        if depth > max_depth:
            raise _too_deep(where, max_depth)
        seen.add(id(node))
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in _children(node))


def _too_deep(where: str, max_depth: int) -> UnsafeFileError:
    return UnsafeFileError(f"{where} is nested more than {max_depth} levels deep; no tokbench file needs that")


def parse_json_text(text: str, where: str, *, max_depth: int = MAX_NESTING) -> Any:
    """``json.loads`` with a bound on nesting: deep nesting is ``UnsafeFileError``, never a RecursionError.

    ``json.JSONDecodeError`` passes through for text that is not JSON.
    """
    import json

    try:
        data = json.loads(text)
    except RecursionError:
        raise _too_deep(where, max_depth) from None
    except json.JSONDecodeError:
        raise
    except ValueError as error:  # e.g. an integer of more than 4,300 digits (Python's int-from-text limit)
        raise UnsafeFileError(f"{where} holds a value Python refuses to read: {error}") from None
    check_nesting(data, where, max_depth=max_depth)
    return data


def parse_yaml_text(text: str, where: str, *, max_depth: int = MAX_NESTING, max_values: int = 100_000) -> Any:
    """``yaml.safe_load`` with bounds on nesting and on the size aliases expand to (``UnsafeFileError``).

    ``yaml.YAMLError`` passes through for text that is not YAML.
    """
    import yaml

    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise _too_deep(where, max_depth) from None
    except ValueError as error:  # e.g. an integer of more than 4,300 digits
        raise UnsafeFileError(f"{where} holds a value Python refuses to read: {error}") from None
    check_nesting(data, where, max_depth=max_depth, max_values=max_values)
    return data


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


def keep_text_somewhere(subfolder: str, stem: str, suffix: str, text: str) -> tuple[Path | None, list[str]]:
    """Write ``text`` into ``<cache>/<subfolder>/`` or, failing that, ``<tmp>/tokbench-<subfolder>/`` under a free
    name; returns the path written (None if neither took it) and the errors met on the way."""
    errors: list[str] = []
    for folder in (cache_root() / subfolder, Path(tempfile.gettempdir()) / f"tokbench-{subfolder}"):
        try:
            return write_new_text(folder, stem, suffix, text), errors
        except OSError as error:
            errors.append(f"{folder}: {error.strerror or error}")
    return None, errors


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

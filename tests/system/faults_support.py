"""What the fault-injection suites (tests/system/test_faults*.py) share: real mounts and the CLI in a child process
for faults that could hang or kill the caller. Their fixtures (real results measured once, the mounts) are in
tests/system/conftest.py."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FAST = ["--model", "tiny-llama", "--sequence-length", "8", "--new-tokens", "3", "--warmup-iterations", "1",
        "--measurement-iterations", "3", "--no-monitor", "--no-progress", "--device", "cpu"]  # fmt: skip
EVIL = '\x1b]0;pwned\x07\x1b[2J=HYPERLINK("http://x")\u202e'
TINY_FIELDS = {"model": "tiny-llama", "device": "cpu", "sequence_length": 8, "new_tokens": 3,
               "warmup_iterations": 1, "measurement_iterations": 3, "monitor": False}  # fmt: skip


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(text: str) -> str:
    """The text of a one-line ``tokbench: ...`` error (and a check that it is exactly that, no traceback)."""
    assert text.startswith("tokbench") and text.count("\n") == 1 and "Traceback" not in text, text
    return text


def tokbench(*args: str, cwd: Path | None = None, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """``python -m tokbench ARGS`` in a child process (a fault that hangs is ended by ``timeout``)."""
    environment = {**os.environ, "PYTHONWARNINGS": "ignore", **env}
    return subprocess.run(
        [sys.executable, "-m", "tokbench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        check=False,
    )


def stderr_line(completed: subprocess.CompletedProcess) -> str:
    """The child's last stderr line (libraries may log before it), checked to be tokbench's one line."""
    lines = [line for line in completed.stderr.splitlines() if line.startswith("tokbench")]
    assert lines and "Traceback" not in completed.stderr, completed.stderr
    return lines[-1]


def _mount(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, check=False)
    return done.returncode == 0


def tmpfs(path: Path, options: str, why: str) -> Iterator[Path]:
    """A real tmpfs mounted at ``path`` (root only, as the tests run here; else the test skips saying why)."""
    if not _mount(path, options):
        pytest.skip(f"mounting a tmpfs needs root ({why})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def result_data(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def store_of(db: Path, *results: Path) -> Path:
    """A real store holding the given result files, one run each, in order."""
    from tokbench.results.store import ResultStore
    from tokbench.schema.results import load_result

    with ResultStore(db) as store:
        for path in results:
            store.add(load_result(path))
    return db

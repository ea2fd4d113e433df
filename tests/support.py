"""Helpers shared by test modules (pytest puts tests/ on the path): one fast tiny-llama config, a finder for the
real child processes a sweep or run starts, and the serving mock in its own process."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

# Config fields of a fast real run: the tiny preset, 8 prompt tokens, 4 new tokens, 1 + 2 iterations, no monitor.
TINY: dict[str, Any] = {
    "model": "tiny-llama",
    "sequence_length": 8,
    "new_tokens": 4,
    "warmup_iterations": 1,
    "measurement_iterations": 2,
    "device": "cpu",
    "monitor": False,
}


def descendants_with(parent_pid: int, text: str) -> list[psutil.Process]:
    """Running descendants of ``parent_pid`` whose command line contains ``text`` (spawned children, or
    grandchildren forked by the fork server)."""
    try:
        descendants = psutil.Process(parent_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for process in descendants:
        try:
            if text in " ".join(process.cmdline()):
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found


@contextlib.contextmanager
def mock_server_process(script_json: str) -> Iterator[str]:
    """``python -m tokbench.serving.mock`` with this script on a free loopback port, for the block; its URL."""
    from tokbench.serving.launch import free_loopback_port

    port = free_loopback_port()
    command = [sys.executable, "-m", "tokbench.serving.mock", "--port", str(port), "--script", script_json]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert process.stdout is not None and b"listening" in process.stdout.readline()
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def stored_rows(db: Path, columns: str) -> list[tuple[Any, ...]]:
    """``columns`` of every stored result in run order, read with plain sqlite3 (not tokbench's store code). Polled
    while a sweep starts: a store file not there yet, or there without its tables yet, holds no rows."""
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=30) as connection:
        try:
            return connection.execute(f"SELECT {columns} FROM results ORDER BY run_id").fetchall()
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return []
            raise

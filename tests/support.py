"""Helpers shared by test modules (pytest puts tests/ on the path): one fast tiny-llama config, and a
finder for the real child processes a sweep or run starts."""

from __future__ import annotations

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

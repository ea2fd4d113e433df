"""A known slowdown for honesty checks: every forward of a model waits ``delay_ns`` before it runs.

``tokbench compare`` must call such a model "slower" with a ratio CI covering the injected change; the
test suite and ``benchmarks/compare_honesty.py`` use this. Each wait is timed, so the amount injected is
known even when it overshoots. ``sleep`` (default) gives the CPU away while waiting: on a machine shared with
other work a ``spin`` wait burns the process's CPU share and the scheduler then slows its real compute too, so
the slowdown would grow beyond the wait. ``spin`` is exact on an idle machine (no wake-up latency).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tokbench.clock import monotonic_ns


@dataclass
class ForwardDelay:
    """Counts the delayed forwards and the wall time actually waited (the injected amount, measured)."""

    delay_ns: int
    mode: str = "sleep"
    forwards: int = 0
    waited_ns: list[int] = field(default_factory=list)

    def __call__(self, module: Any, args: Any) -> None:
        start = monotonic_ns()
        deadline = start + self.delay_ns
        if self.mode == "sleep":
            time.sleep(self.delay_ns / 1e9)
        now = monotonic_ns()
        while now < deadline:  # spin mode, or a sleep cut short
            now = monotonic_ns()
        self.forwards += 1
        self.waited_ns.append(now - start)


@contextmanager
def delayed_forwards(model: Any, delay_ns: int, mode: str = "sleep") -> Iterator[ForwardDelay]:
    """Within the block, each call of ``model`` (one per generation step) first waits ``delay_ns``."""
    if delay_ns < 0:
        raise ValueError("delay_ns must be >= 0")
    if mode not in ("sleep", "spin"):
        raise ValueError(f"mode must be sleep or spin, got {mode!r}")
    delay = ForwardDelay(delay_ns, mode)
    handle = model.register_forward_pre_hook(delay)
    try:
        yield delay
    finally:
        handle.remove()

"""A known slowdown for honesty checks: every forward of a model waits ``delay_ns`` before it runs.

``tokbench compare`` must call such a model "slower" with a ratio CI covering the injected change; the
test suite and ``benchmarks/compare_honesty.py`` use this. The wait spins on the clock instead of sleeping:
``time.sleep`` overshoots by a scheduler tick, a spin adds exactly ``delay_ns`` of wall time (more only if the
thread is preempted at its very end).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tokbench.clock import monotonic_ns


@dataclass
class ForwardDelay:
    """Counts the delayed forwards and the wall time actually waited (the injected amount, measured)."""

    delay_ns: int
    forwards: int = 0
    waited_ns: list[int] = field(default_factory=list)

    def __call__(self, module: Any, args: Any) -> None:
        start = monotonic_ns()
        deadline = start + self.delay_ns
        now = start
        while now < deadline:
            now = monotonic_ns()
        self.forwards += 1
        self.waited_ns.append(now - start)


@contextmanager
def delayed_forwards(model: Any, delay_ns: int) -> Iterator[ForwardDelay]:
    """Within the block, each call of ``model`` (one per generation step) first waits ``delay_ns``."""
    if delay_ns < 0:
        raise ValueError("delay_ns must be >= 0")
    delay = ForwardDelay(delay_ns)
    handle = model.register_forward_pre_hook(delay)
    try:
        yield delay
    finally:
        handle.remove()

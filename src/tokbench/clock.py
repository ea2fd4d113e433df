"""Clocks. Every timestamp in tokbench is an integer nanosecond count from one injectable clock."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

# A clock is any zero-argument callable returning monotonic integer nanoseconds.
Clock = Callable[[], int]

perf_counter_ns: Clock = time.perf_counter_ns
"""The real clock: ``time.perf_counter_ns`` (integer ns; no float rounding however long the uptime)."""

# The name this clock had before it said what it is; the same object, so code written against it (and
# identity checks such as continuous batching's) keeps working. Use ``perf_counter_ns`` in new code.
monotonic_ns: Clock = perf_counter_ns


class FakeClock:
    """A deterministic clock for tests: returns the given instants in order, or advances by a fixed step."""

    def __init__(self, start_ns: int = 0, step_ns: int = 0, ticks: Iterable[int] | None = None) -> None:
        self._now_ns = start_ns
        self._step_ns = step_ns
        self._ticks: Iterator[int] | None = iter(ticks) if ticks is not None else None

    def __call__(self) -> int:
        if self._ticks is not None:
            self._now_ns = next(self._ticks)
            return self._now_ns
        now = self._now_ns
        self._now_ns += self._step_ns
        return now

    def advance(self, delta_ns: int) -> None:
        """Move the clock forward by ``delta_ns`` (only meaningful in step mode)."""
        self._now_ns += delta_ns

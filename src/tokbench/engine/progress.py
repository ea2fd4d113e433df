"""Progress of the warmup / measurement loops (and a sweep), reported through a hook the engine never draws.

The engine calls a ``ProgressHook``; the terminal layer (``report.progress``) draws it. Progress is for the
person watching: it never reaches a result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

STAGE_WARMUP = "warmup"
STAGE_MEASUREMENT = "measurement"
STAGE_SWEEP = "sweep"


class ProgressHook(Protocol):
    """Told when a stage starts (with its expected count: the fixed count or the auto maximum), after each
    iteration (``done`` so far, an optional ``detail`` such as the config now running), and when it ends."""

    def stage_started(self, stage: str, expected: int | None) -> None: ...

    def advanced(self, stage: str, done: int, detail: str = "") -> None: ...

    def stage_finished(self, stage: str) -> None: ...


def as_hook(progress: ProgressHook | bool | None) -> ProgressHook | None:
    """A hook, or None for no progress; ``True`` / ``False`` (the older flag) mean none here: the engine
    draws nothing itself, callers that want a display pass one (``report.progress.RichProgress``)."""
    if progress is None or isinstance(progress, bool):
        return None
    return progress


@contextmanager
def stage(hook: ProgressHook | None, name: str, expected: int | None) -> Iterator[Callable[[], None]]:
    """Report one stage to ``hook``; yields ``advance()``, to be called after each iteration."""
    done = [0]

    def advance() -> None:
        done[0] += 1
        if hook is not None:
            hook.advanced(name, done[0])

    if hook is not None:
        hook.stage_started(name, expected)
    try:
        yield advance
    finally:
        if hook is not None:
            hook.stage_finished(name)

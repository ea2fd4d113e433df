"""Progress of a run's stages (load, cold call, warmup, measurement) and of a sweep, through a hook the engine
never draws.

The engine calls a ``ProgressHook``; the terminal layer (``report.progress``) draws it. Progress is for the
person watching: it never reaches a result. Besides the count of iterations, a stage may report an honest
estimate (``Progress``): the share of the stage done and the time left, computed by the policy that decides when
the stage ends (an auto policy gives an upper bound: the budget or the iteration cap, or sooner once the measured
precision is expected to meet its target), and while measuring the precision reached against the target. A hook
that has ``update`` gets those; an older hook gets ``advanced`` with the same in words. A hook with ``note``
is told what a person should know before waiting (a budget the run cannot keep).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

STAGE_LOAD = "load"
STAGE_COLD_CALL = "cold call"
STAGE_WARMUP = "warmup"
STAGE_MEASUREMENT = "measurement"
STAGE_SWEEP = "sweep"


@dataclass(frozen=True)
class Progress:
    """Where a stage is: ``done`` iterations after ``elapsed_s``; ``fraction`` (0..1) and ``eta_s`` when the policy
    can tell (``eta_is_bound``: at most that long); ``precision`` reached and its ``target`` while measuring."""

    done: int
    elapsed_s: float
    fraction: float | None = None
    eta_s: float | None = None
    eta_is_bound: bool = False
    precision: float | None = None
    target: float | None = None
    detail: str = ""

    def words(self) -> str:
        """The progress in words (``12 done, 3.4 s, ETA ≤ 11 s, ±2.10% (target ±1.00%)``)."""
        parts = (f"{self.done} done", f"{self.elapsed_s:,.1f} s", self.estimate_words())
        return ", ".join(part for part in parts if part)

    def estimate_words(self) -> str:
        """The estimates alone (``ETA ≤ 11 s, ±2.10% (target ±1.00%)``; ``""`` when there are none)."""
        parts = []
        if self.eta_s is not None:
            parts.append(f"ETA {'≤ ' if self.eta_is_bound else '~'}{self.eta_s:,.0f} s")
        if self.precision is not None:
            target = f" (target ±{self.target:.2%})" if self.target is not None else ""
            parts.append(f"±{self.precision:.2%}{target}")
        if self.detail:
            parts.append(self.detail)
        return ", ".join(parts)


class ProgressHook(Protocol):
    """Told when a stage starts (with its expected count: the fixed count, the auto maximum, or None when only time
    tells), after each iteration (``done`` so far, an optional ``detail`` such as the config now running), and when
    it ends. Optional methods: ``update(stage, Progress)`` (the estimates) and ``note(text)``."""

    def stage_started(self, stage: str, expected: int | None) -> None: ...

    def advanced(self, stage: str, done: int, detail: str = "") -> None: ...

    def stage_finished(self, stage: str) -> None: ...


def as_hook(progress: ProgressHook | bool | None) -> ProgressHook | None:
    """A hook, or None for no progress; ``True`` / ``False`` (the older flag) mean none here: the engine
    draws nothing itself, callers that want a display pass one (``report.progress.RichProgress``)."""
    if progress is None or isinstance(progress, bool):
        return None
    return progress


def say(hook: ProgressHook | bool | None, text: str) -> None:
    """Tell the person watching ``text`` now (a hook without ``note`` ignores it)."""
    hook = as_hook(hook)
    note = getattr(hook, "note", None)
    if note is not None:
        note(text)


Advance = Callable[..., None]


@contextmanager
def stage(hook: ProgressHook | None, name: str, expected: int | None) -> Iterator[Advance]:
    """Report one stage to ``hook``; yields ``advance(**estimates)``, to be called after each iteration with any of
    ``fraction``, ``eta_s``, ``eta_is_bound``, ``precision``, ``target``, ``detail`` (``Progress``'s fields)."""
    done = [0]
    start = time.monotonic()

    def advance(**estimates: object) -> None:
        done[0] += 1
        if hook is None:
            return
        progress = Progress(done[0], time.monotonic() - start, **estimates)  # type: ignore[arg-type]
        update = getattr(hook, "update", None)
        if update is not None:
            update(name, progress)
        else:
            hook.advanced(name, done[0], progress.words())

    if hook is not None:
        hook.stage_started(name, expected)
    try:
        yield advance
    finally:
        if hook is not None:
            hook.stage_finished(name)

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


# Read by ``delay_from_environment`` (a sitecustomize of an A/B side: benchmarks/compare_honesty.py, the ab tests).
DELAY_VARIABLE = "TOKBENCH_FORWARD_DELAY_NS"
LOG_VARIABLE = "TOKBENCH_FORWARD_DELAY_LOG"


def delay_from_environment(environ: dict[str, str] | None = None) -> ForwardDelay | None:
    """A known slowdown injected from outside tokbench, into every process of one side of a ``tokbench ab``:
    with ``TOKBENCH_FORWARD_DELAY_NS`` set, every forward of a ``*ForCausalLM`` module (one per generation step)
    first spins that long (``spin``: on a loaded machine a sleep wakes milliseconds late), and each wait is
    appended to ``$TOKBENCH_FORWARD_DELAY_LOG/<pid>.txt`` (the injected amount, measured). 0 ns waits nothing but
    logs alike, so both sides of an A/B carry the same hook. Called from a sitecustomize on the side's
    PYTHONPATH; the hook is global (torch's module forward pre-hook), so it reaches models loaded later."""
    import os

    import torch

    variables = os.environ if environ is None else environ
    if variables.get(DELAY_VARIABLE) is None:
        return None
    delay = ForwardDelay(int(variables[DELAY_VARIABLE]), "spin")
    log = variables.get(LOG_VARIABLE)

    def hook(module: Any, args: Any) -> None:
        if not type(module).__name__.endswith("ForCausalLM"):
            return
        if delay.delay_ns:
            delay(module, args)
        if log:
            with open(os.path.join(log, f"{os.getpid()}.txt"), "a", encoding="ascii") as stream:
                stream.write(f"{delay.waited_ns[-1] if delay.delay_ns else 0}\n")

    torch.nn.modules.module.register_module_forward_pre_hook(hook)
    return delay


def mean_logged_wait_ms(folder: str) -> float | None:
    """The mean wait per forward over every log in ``folder`` (``delay_from_environment``), None if none."""
    from pathlib import Path

    waits = [int(line) for path in Path(folder).glob("*.txt") for line in path.read_text().split()]
    return sum(waits) / len(waits) / 1e6 if waits else None

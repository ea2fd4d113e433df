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
FRACTION_VARIABLE = "TOKBENCH_FORWARD_DELAY_FRACTION"
LOG_VARIABLE = "TOKBENCH_FORWARD_DELAY_LOG"


@dataclass
class CpuFractionDelay:
    """Before each forward, spin for ``fraction`` × the thread CPU time of the previous forward.

    On a machine shared with other work a wall-clock wait is not a known slowdown: a sleep wakes late and a
    timed spin is stretched by the time the process is not scheduled. Extra CPU work in proportion to the
    forward's own CPU work is: the process needs ``fraction`` more CPU, whatever its share of the machine.
    ``spun_ns`` / ``forward_ns`` record the injected amount, measured (thread CPU time)."""

    fraction: float
    spun_ns: list[int] = field(default_factory=list)
    forward_ns: list[int] = field(default_factory=list)
    _started: int | None = None

    def before(self) -> None:
        if self.forward_ns:
            start = time.thread_time_ns()
            deadline = start + int(self.fraction * self.forward_ns[-1])
            now = start
            while now < deadline:
                now = time.thread_time_ns()
            self.spun_ns.append(now - start)
        self._started = time.thread_time_ns()

    def after(self) -> None:
        if self._started is not None:
            self.forward_ns.append(time.thread_time_ns() - self._started)
            self._started = None


def delay_from_environment(environ: dict[str, str] | None = None) -> ForwardDelay | CpuFractionDelay | None:
    """A known slowdown injected from outside tokbench into every process of one side of a ``tokbench ab``,
    called from a sitecustomize on the side's PYTHONPATH. The hooks are global (torch's module forward hooks),
    so they reach models loaded later, and act on ``*ForCausalLM`` modules only (one forward per step).

    ``TOKBENCH_FORWARD_DELAY_FRACTION=0.05``: each forward first spins 5% of the previous forward's thread CPU
    time (``CpuFractionDelay``: a 5% slowdown whatever the machine's load); each line of
    ``$TOKBENCH_FORWARD_DELAY_LOG/<pid>.txt`` is "spun_ns forward_ns". ``TOKBENCH_FORWARD_DELAY_NS``: each forward
    first spins that long in wall time (``ForwardDelay``, exact on an idle machine); each line is the wait. 0 waits
    nothing but logs alike, so both sides of an A/B carry the same hooks."""
    import os

    import torch

    variables = os.environ if environ is None else environ
    log = variables.get(LOG_VARIABLE)

    def write(line: str) -> None:
        if log:
            with open(os.path.join(log, f"{os.getpid()}.txt"), "a", encoding="ascii") as stream:
                stream.write(line + "\n")

    def is_model(module: Any) -> bool:
        return type(module).__name__.endswith("ForCausalLM")

    if variables.get(FRACTION_VARIABLE) is not None:
        relative = CpuFractionDelay(float(variables[FRACTION_VARIABLE]))

        def before(module: Any, args: Any) -> None:
            if is_model(module):
                relative.before()

        def after(module: Any, args: Any, output: Any) -> None:
            if is_model(module):
                relative.after()
                write(f"{relative.spun_ns[-1] if relative.spun_ns else 0} {relative.forward_ns[-1]}")

        torch.nn.modules.module.register_module_forward_pre_hook(before)
        torch.nn.modules.module.register_module_forward_hook(after)
        return relative
    if variables.get(DELAY_VARIABLE) is None:
        return None
    delay = ForwardDelay(int(variables[DELAY_VARIABLE]), "spin")

    def hook(module: Any, args: Any) -> None:
        if is_model(module):
            if delay.delay_ns:
                delay(module, args)
            write(str(delay.waited_ns[-1] if delay.delay_ns else 0))

    torch.nn.modules.module.register_module_forward_pre_hook(hook)
    return delay


def logged_waits(folder: str) -> list[list[int]]:
    """Every line of every log in ``folder`` (``delay_from_environment``), as integers."""
    from pathlib import Path

    return [[int(part) for part in line.split()] for path in Path(folder).glob("*.txt")
            for line in path.read_text().splitlines() if line.strip()]  # fmt: skip


def mean_logged_wait_ms(folder: str) -> float | None:
    """The mean wait per forward over every log in ``folder``, None if none."""
    waits = [line[0] for line in logged_waits(folder)]
    return sum(waits) / len(waits) / 1e6 if waits else None


def logged_fraction(folder: str) -> float | None:
    """The injected CPU work ÷ the forwards' own CPU work over every "spun forward" log line in ``folder``."""
    lines = [line for line in logged_waits(folder) if len(line) == 2]
    forward = sum(line[1] for line in lines)
    return sum(line[0] for line in lines) / forward if forward else None

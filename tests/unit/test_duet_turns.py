"""The duet conductor (``sweep.duet``) and the measuring loop's gate, with real Unix sockets and the real
``policy.measure`` loop in two threads standing in for the two child processes (the processes themselves are
tests/system/test_duet_e2e.py): turns, the pair's stopping rule, a crashed side, a side past its timeout."""

from __future__ import annotations

import itertools
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tokbench.engine.policy import STOP_FIXED, MeasurementPlan, measure
from tokbench.schema.policy import MeasurementRecord
from tokbench.schema.records import GenerationTrace
from tokbench.sweep.duet import DuetLog, conduct
from tokbench.sweep.launchers import RunningConfig
from tokbench.sweep.turns import STOP_PAIR, STOP_PARTNER_ENDED, TurnGate


@dataclass
class AliveChild:
    """A stand-in for a child process that runs until the test ends (``RunningConfig`` asks it without waiting)."""

    pid: int = 0

    def wait(self, timeout_s: float | None) -> int | None:
        return None


def running(timeout_s: float | None) -> RunningConfig:
    return RunningConfig(None, timeout_s, Path("."), "", {}, AliveChild(), time.perf_counter_ns())  # type: ignore[arg-type]


def generate(latency_s: float, calls: list[GenerationTrace]) -> Callable[[], GenerationTrace]:
    def once() -> GenerationTrace:
        start = time.perf_counter_ns()
        time.sleep(latency_s)
        end = time.perf_counter_ns()
        trace = GenerationTrace(start, end, ((start + 1, end),), (4,), (2,), (1, 6))
        calls.append(trace)
        return trace

    return once


class Side:
    """One side's child stand-in: connects a real ``TurnGate`` and runs the real ``measure`` loop."""

    def __init__(self, path: str, plan: MeasurementPlan, latency_s: float = 0.002, crash_after: int | None = None):
        self.plan, self.latency_s, self.crash_after = plan, latency_s, crash_after
        self.path = path
        self.calls: list[GenerationTrace] = []
        self.record: MeasurementRecord | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        gate = TurnGate(self.path)
        once = generate(self.latency_s, self.calls)

        def maybe_crash() -> GenerationTrace:
            if self.crash_after is not None and len(self.calls) == self.crash_after:
                gate.close()  # the kernel closes a dead process's socket the same way
                raise RuntimeError("crashed")
            return once()

        try:
            self.record = measure(maybe_crash, self.plan, gate=gate)
        except RuntimeError:
            pass
        finally:
            gate.close()


def pair(
    tmp_path: Path, a: dict, b: dict, timeouts: tuple[float | None, float | None] = (30.0, 30.0)
) -> tuple[DuetLog, dict[str, Side]]:
    listeners, sides = {}, {}
    for name, options in (("a", a), ("b", b)):
        path = str(tmp_path / f"{name}.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        listeners[name] = listener
        sides[name] = Side(path, **options)
    for side in sides.values():
        if side.plan is not None:
            side.thread.start()
    children = {"a": running(timeouts[0]), "b": running(timeouts[1])}
    log, channels = conduct(children, listeners, random.Random(5))
    for side in sides.values():
        if side.thread.is_alive() or side.plan is not None:
            side.thread.join(10)
    for channel in channels:
        channel.close()
    return log, sides


def turns_taken(sides: dict[str, Side]) -> bool:
    """Round by round, one call of each side, never overlapping."""
    timeline = sorted((call.t0_ns, call.end_ns, name) for name, side in sides.items() for call in side.calls)
    rounds = [{name for _, _, name in timeline[i : i + 2]} for i in range(0, len(timeline), 2)]
    causal = all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(timeline))
    return causal and all(names == {"a", "b"} for names in rounds)


def test_fixed_counts_stop_at_the_first_bound_and_take_turns(tmp_path: Path) -> None:
    log, sides = pair(tmp_path, {"plan": MeasurementPlan(6)}, {"plan": MeasurementPlan(9)})
    assert len(sides["a"].calls) == len(sides["b"].calls) == log.rounds == 6
    assert turns_taken(sides)
    assert log.ended == f"{STOP_PAIR}: {STOP_FIXED}"
    assert sides["b"].record is not None and sides["b"].record.stop_reason == log.ended
    assert set(log.first) == {"a", "b"} and len(log.first) == 6  # the order drawn per round


def test_a_met_target_waits_for_the_other_side(tmp_path: Path) -> None:
    """Auto (its precision target met after its minimum on steady calls) with a fixed count of 7: the pair
    measures 7 rounds, the auto side does not stop short of the other's count."""
    auto = MeasurementPlan(None, min_iterations=3, max_iterations=50, budget_s=30.0, target_relative_precision=0.9)
    _, sides = pair(tmp_path, {"plan": auto}, {"plan": MeasurementPlan(7)})
    assert len(sides["a"].calls) == len(sides["b"].calls) == 7
    assert turns_taken(sides)


def test_a_crashed_side_ends_the_pair_without_a_hang(tmp_path: Path) -> None:
    started = time.monotonic()
    log, sides = pair(tmp_path, {"plan": MeasurementPlan(20)}, {"plan": MeasurementPlan(20), "crash_after": 3})
    assert time.monotonic() - started < 10
    assert log.ended == f"{STOP_PARTNER_ENDED} (side b ended)"
    assert sides["a"].record is not None and sides["a"].record.stop_reason == log.ended
    assert len(sides["a"].calls) in (3, 4)  # its call of the round where b crashed may have run first


def test_a_side_past_its_timeout_ends_the_pair(tmp_path: Path) -> None:
    """Side B never connects (hung in its warmup): the wait for it ends at its timeout, side A is told to stop."""
    started = time.monotonic()
    log, sides = pair(tmp_path, {"plan": MeasurementPlan(5)}, {"plan": None}, timeouts=(30.0, 1.0))
    assert time.monotonic() - started < 10
    assert log.timed_out == {"b"} and log.rounds == 0
    assert log.ended == f"{STOP_PARTNER_ENDED} (side b ran past its timeout)"
    assert sides["a"].record is not None and sides["a"].record.iterations == 0


def test_the_partners_cpu_is_no_interference() -> None:
    """A duet process's partner works between its calls by design: its CPU counts with the process's own in the
    busy-machine accounting (``hardware.interference``), and an ended partner keeps its last reading."""
    import os
    import subprocess
    import sys

    from tokbench.hardware.interference import CompanionCpu, read_host

    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.process_time() + 0.3\n"
                             "while time.process_time() < end: pass\ntime.sleep(30)"])  # fmt: skip
    try:
        partner = CompanionCpu((busy.pid,))
        deadline = time.monotonic() + 20
        while partner.seconds() < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert partner.seconds() >= 0.25
        own = read_host().own_s
        assert read_host(partner).own_s >= own + 0.25  # the partner's CPU is counted as ours
        busy.kill()
        busy.wait(10)
        assert partner.seconds() >= 0.25  # the last reading stays once it is gone
        assert CompanionCpu((os.getpid(),)).seconds() > 0
    finally:
        busy.kill()

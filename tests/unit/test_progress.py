"""Progress a person can trust: bars filled by the policy's expected share (not by an iteration cap), an honest
ETA, the precision against its target, a budget the run cannot keep said up front, stages without a count shown.
Policies run on a fake generate and a FakeClock; the display draws into a recording console."""

from __future__ import annotations

import io
import itertools

from rich.console import Console
from test_policy import MS, FakeGenerate

from tokbench.clock import FakeClock
from tokbench.engine.policy import MeasurementPlan, WarmupPlan, measure, measurement_estimate, overrun_note, warm_up
from tokbench.engine.progress import STAGE_LOAD, Progress, stage
from tokbench.report.progress import RichProgress


class Recorder:
    def __init__(self) -> None:
        self.updates: list[tuple[str, Progress]] = []
        self.notes: list[str] = []
        self.events: list[tuple[str, str]] = []

    def stage_started(self, stage: str, expected: int | None) -> None:
        self.events.append(("start", stage))

    def advanced(self, stage: str, done: int, detail: str = "") -> None:
        raise AssertionError("a hook with update() gets the estimates")

    def update(self, stage: str, progress: Progress) -> None:
        self.updates.append((stage, progress))

    def stage_finished(self, stage: str) -> None:
        self.events.append(("end", stage))

    def note(self, text: str) -> None:
        self.notes.append(text)


def test_an_auto_measurement_bar_fills_by_time_and_precision_not_by_500_iterations() -> None:
    clock, hook = FakeClock(), Recorder()
    plan = MeasurementPlan(None, min_iterations=10, max_iterations=500, budget_s=2.0, target_relative_precision=0.01)
    series = [100.0 + (7.0 if i % 2 else -7.0) for i in range(500)]  # 100 ms calls, too noisy for ±1% in 2 s
    record = measure(FakeGenerate(series, clock), plan, clock=clock, progress=hook, expected_call_ns=100 * MS)
    fractions = [progress.fraction for _, progress in hook.updates]
    assert record.iterations == 20  # the 2 s budget ended it
    assert fractions[-1] is not None and fractions[-1] > 0.95  # the bar ends (nearly) full, never at 20 of 500
    assert all(a is not None and b is not None and a <= b + 1e-9 for a, b in itertools.pairwise(fractions))
    last = hook.updates[-1][1]
    assert last.eta_s is not None and last.eta_s < 0.2 and last.target == 0.01
    assert any(progress.precision is not None for _, progress in hook.updates)  # precision reached, shown


def test_the_eta_expects_the_iterations_the_target_needs() -> None:
    plan = MeasurementPlan(None, min_iterations=10, max_iterations=500, budget_s=60.0, target_relative_precision=0.01)
    # 20 calls of 0.1 s reached ±2%: ±1% needs 4x the calls, so ~60 more (6 s), well inside the 60 s budget
    estimate = measurement_estimate(plan, 20, 2_000_000_000, 0.02)
    assert estimate["eta_is_bound"] is False and abs(float(estimate["eta_s"]) - 6.0) < 0.01  # type: ignore[arg-type]
    fixed = measurement_estimate(MeasurementPlan(40), 10, 1_000_000_000, None)
    assert fixed["eta_s"] == 3.0 and fixed["fraction"] == 0.25


def test_a_budget_the_minimum_iterations_cannot_keep_is_said_up_front() -> None:
    clock, hook = FakeClock(), Recorder()
    plan = WarmupPlan(None, min_iterations=5, max_iterations=50, budget_s=3.0)
    warm_up(FakeGenerate([2000.0] * 50, clock), plan, clock=clock, progress=hook)
    assert hook.notes and "at least 5 iterations" in hook.notes[0] and "3 s budget" in hook.notes[0]
    assert overrun_note("warmup", 3.0, 10 * 10**9, 5) is not None  # and the result says it ran past
    assert overrun_note("warmup", 3.0, 3 * 10**9, 5) is None
    quiet = Recorder()
    measure(FakeGenerate([10.0] * 50, clock), MeasurementPlan(None, min_iterations=10, budget_s=15.0), clock=clock,
            progress=quiet, expected_call_ns=10 * MS)  # fmt: skip
    assert quiet.notes == []  # 10 x 10 ms fit 15 s: nothing to say


def test_the_terminal_shows_stages_without_a_count_and_estimates() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=160)
    display = RichProgress(console)
    with stage(display, STAGE_LOAD, None):
        assert display._progress is not None  # a spinner while loading: something is shown
    clock = FakeClock()
    measure(FakeGenerate([10.0] * 30, clock), MeasurementPlan(12), clock=clock, progress=display)
    assert display._progress is None  # transient: gone once the stages end


def test_without_a_terminal_lines_carry_estimates_elapsed_and_a_sweeps_config_names() -> None:
    stream = io.StringIO()
    display = RichProgress(Console(file=stream, force_terminal=False, width=80))
    with stage(display, STAGE_LOAD, None):
        pass
    clock = FakeClock()
    measure(FakeGenerate([10.0] * 30, clock), MeasurementPlan(12), clock=clock, progress=display)
    display.stage_started("sweep", 3)
    names = ("a-config", "b-config", "c-config-" + "x" * 90)
    for done, name in enumerate(names, start=1):
        display.advanced("sweep", done, f"last: {name}")
    display.stage_finished("sweep")
    text = stream.getvalue()
    assert "load: started (weights, then quantization and tuning if asked)" in text
    assert "load: done in" in text
    assert "measurement: 4 so far (" in text and "ETA ~" in text
    assert "measurement: 12 done in" in text
    for name in names:  # every config of a sweep, not only the 1st, 2nd, 4th..., each on one unwrapped line
        assert f"(last: {name})" in text

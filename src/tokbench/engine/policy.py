"""Warmup and measurement policies: the loops that decide when to stop generating.

Both take a ``generate_once`` callable (one timed generate call) and an injectable clock, so they run
the same against the real model and against a fake series in tests; the runner only calls them.

- ``warm_up``: a fixed count, or ``auto``: until ``stationarity.steady_state_test`` passes on the
  warmup latencies since the last iteration that compiled dynamo graphs, bounded by a minimum, a
  maximum and a time budget. When a bound stops it first, the record says no steady state was reached.
- ``measure``: a fixed count, or ``auto``: until the bootstrap CI of the median E2E latency is
  within the target relative precision, bounded the same way; the record gives the precision reached.
  The precision is ``analysis.summarize.median_precision``: the very interval the summary stores.
  A ``MeasurementGate`` paces the measured calls and ends the measurement: ``SoloGate`` (the default) follows the
  plan's own rule; a duet child's gate (``sweep.turns``) waits for its turn before each call and lets the pair's
  conductor decide the stop from both sides' wishes (``OwnStop``: a target met, or a bound).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from tokbench.analysis.stationarity import STEADY_TOLERANCE, STEADY_WINDOW, SteadyStateTest, steady_state_test
from tokbench.analysis.summarize import median_precision
from tokbench.clock import Clock, perf_counter_ns
from tokbench.config import AUTO, field_default
from tokbench.engine.progress import STAGE_MEASUREMENT, STAGE_WARMUP, ProgressHook, as_hook, say, stage
from tokbench.schema.policy import MeasurementRecord, WarmupRecord
from tokbench.schema.records import GenerationTrace

if TYPE_CHECKING:
    from tokbench.config import BenchmarkConfig

POLICY_FIXED = "fixed"
POLICY_AUTO = "auto"

STOP_FIXED = "fixed count"
STOP_STEADY = "steady state"
STOP_PRECISION = "target precision reached"
STOP_MAX = "max iterations"
STOP_BUDGET = "time budget"

# The bootstrap is re-run only when the sample has grown by this fraction: O(n) checks cost O(n^2).
_CHECK_GROWTH = 1.1

GenerateOnce = Callable[[], GenerationTrace]
GraphCount = Callable[[], int]


@dataclass(frozen=True)
class WarmupPlan:
    """``iterations`` None means auto: steady-state test between ``min_iterations`` and the bounds."""

    iterations: int | None = None
    # Defaults are the config fields' own (declared once, in config.py).
    min_iterations: int = field_default("warmup_min_iterations")
    max_iterations: int = field_default("warmup_max_iterations")
    budget_s: float = field_default("warmup_budget_s")
    window: int = STEADY_WINDOW
    tolerance: float = STEADY_TOLERANCE

    @classmethod
    def from_config(cls, config: BenchmarkConfig) -> WarmupPlan:
        fixed = config.warmup_iterations
        return cls(
            iterations=None if fixed == AUTO else int(fixed),
            min_iterations=config.warmup_min_iterations,
            max_iterations=config.warmup_max_iterations,
            budget_s=config.warmup_budget_s,
        )


@dataclass(frozen=True)
class MeasurementPlan:
    """``iterations`` None means auto: measure until the median E2E CI is within the target."""

    iterations: int | None = None
    min_iterations: int = field_default("measurement_min_iterations")
    max_iterations: int = field_default("measurement_max_iterations")
    budget_s: float = field_default("measurement_budget_s")
    target_relative_precision: float = field_default("target_relative_precision")

    @classmethod
    def from_config(cls, config: BenchmarkConfig) -> MeasurementPlan:
        fixed = config.measurement_iterations
        return cls(
            iterations=None if fixed == AUTO else int(fixed),
            min_iterations=config.measurement_min_iterations,
            max_iterations=config.measurement_max_iterations,
            budget_s=config.measurement_budget_s,
            target_relative_precision=config.target_relative_precision,
        )


def warm_up(
    generate_once: GenerateOnce,
    plan: WarmupPlan,
    *,
    clock: Clock = perf_counter_ns,
    graph_count: GraphCount | None = None,
    curve_into: list[int] | None = None,
    progress: ProgressHook | bool | None = None,
) -> WarmupRecord:
    """Run warmup generations as ``plan`` says; each one's E2E (ns) is appended to ``curve_into``
    as it happens, so a caller keeps the curve even if a generation raises."""
    curve = curve_into if curve_into is not None else []
    compiled_in: list[int] = []
    budget_ns = int(plan.budget_s * 1e9)
    fixed = plan.iterations is not None
    test: SteadyStateTest | None = None
    stop_reason = STOP_FIXED
    start_ns = clock()
    with stage(as_hook(progress), STAGE_WARMUP, plan.iterations if fixed else plan.max_iterations) as advance:
        while not fixed or len(curve) < plan.iterations:  # type: ignore[operator]
            graphs_before = graph_count() if graph_count else 0
            curve.append(generate_once().e2e_ns)
            if len(curve) == 1 and not fixed:
                _forecast(progress, "warmup", plan.min_iterations, "--warmup-min-iterations", curve[0], plan.budget_s,
                          "--warmup-budget-s")  # fmt: skip
            advance(**warmup_estimate(plan, len(curve), clock() - start_ns))
            if graph_count and graph_count() > graphs_before:
                compiled_in.append(len(curve) - 1)
            if fixed:
                continue
            done = len(curve)
            if done >= plan.min_iterations:
                test = _test_since_compile(curve, compiled_in, plan)
                if test is not None and test.steady:
                    stop_reason = STOP_STEADY
                    break
                if done >= plan.max_iterations:
                    stop_reason = STOP_MAX
                    break
                if clock() - start_ns >= budget_ns:
                    stop_reason = STOP_BUDGET
                    break
    elapsed_ns = clock() - start_ns
    if fixed:
        test = _test_since_compile(curve, compiled_in, plan)
    return WarmupRecord(
        policy=POLICY_FIXED if fixed else POLICY_AUTO,
        iterations=len(curve),
        stop_reason=stop_reason,
        steady_state=None if test is None else test.steady,
        window=0 if test is None else test.window,
        shift=None if test is None else test.shift,
        allowed_shift=None if test is None else test.allowed_shift,
        trend_p_value=None if test is None else test.trend_p_value,
        compiled_in=tuple(compiled_in),
        elapsed_ns=elapsed_ns,
    )


def _test_since_compile(curve: list[int], compiled_in: list[int], plan: WarmupPlan) -> SteadyStateTest | None:
    """The steady-state test on the iterations after the last one that compiled; None if fewer than 2."""
    series = curve[compiled_in[-1] + 1 :] if compiled_in else curve
    if len(series) < 2:
        return None
    return steady_state_test([float(v) for v in series], window=plan.window, tolerance=plan.tolerance)


@dataclass(frozen=True)
class OwnStop:
    """The measurement policy's own wish to stop after a call: ``reason`` (a STOP_ constant) and whether it is a
    bound (fixed count, max iterations, budget: no call beyond it) or a target met (precision: more calls would
    do no harm)."""

    reason: str
    bound: bool


class MeasurementGate(Protocol):
    """Who lets each measured call start and ends the measurement: the seam between the measuring loop and what
    paces it (as ``torch.utils.benchmark`` takes its measuring callback). ``SoloGate`` follows the policy's own
    rule; ``sweep.duet``'s gate takes turns with another process (duet benchmarking)."""

    @property
    def companion_pids(self) -> tuple[int, ...]:
        """Processes that work between this process's calls by design (their CPU is no interference)."""
        ...

    def before_call(self, index: int) -> str | None:
        """Wait (blocked, not spinning) until measured call ``index`` may start; a reason to stop instead."""
        ...

    def after_call(self, trace: GenerationTrace, own: OwnStop | None) -> str | None:
        """Report the call that just ended and the policy's own wish to stop; the reason to stop now, or None."""
        ...


class SoloGate:
    """The policy alone: every call may start, and measurement stops when the policy's own rule says so."""

    companion_pids: tuple[int, ...] = ()

    def before_call(self, index: int) -> str | None:
        return None

    def after_call(self, trace: GenerationTrace, own: OwnStop | None) -> str | None:
        return None if own is None else own.reason


@dataclass
class _AutoState:
    """What the auto rule carries from call to call: when to look again, and the last precision computed."""

    next_check: int
    precision: float | None = None
    last_precision: float | None = None


def _own_stop(
    plan: MeasurementPlan, traces: list[GenerationTrace], elapsed_ns: int, state: _AutoState
) -> OwnStop | None:
    """The policy's own stopping rule after a call: the fixed count, or auto's precision / max / budget."""
    done = len(traces)
    state.precision = None
    if plan.iterations is not None:
        return OwnStop(STOP_FIXED, bound=True) if done >= plan.iterations else None
    if done < plan.min_iterations:
        return None
    at_bound = done >= plan.max_iterations or elapsed_ns >= int(plan.budget_s * 1e9)
    if done >= state.next_check or at_bound:
        state.precision = state.last_precision = median_precision(traces)
        state.next_check = max(done + 1, math.ceil(done * _CHECK_GROWTH))
        if state.precision <= plan.target_relative_precision:
            return OwnStop(STOP_PRECISION, bound=at_bound)
    if at_bound:
        return OwnStop(STOP_MAX if done >= plan.max_iterations else STOP_BUDGET, bound=True)
    return None


def measure(
    generate_once: GenerateOnce,
    plan: MeasurementPlan,
    *,
    clock: Clock = perf_counter_ns,
    into: list[GenerationTrace] | None = None,
    progress: ProgressHook | bool | None = None,
    expected_call_ns: int | None = None,
    gate: MeasurementGate | None = None,
) -> MeasurementRecord:
    """Run measured generations as ``plan`` says; each trace is appended to ``into`` as it happens.

    ``expected_call_ns`` (the last warmup call's E2E): with it, an auto plan whose minimum iterations cannot fit
    its budget is said up front (``progress``'s ``note``). ``gate`` paces the calls and may end the measurement
    (default ``SoloGate``: the plan's own rule)."""
    traces = into if into is not None else []
    gate = gate if gate is not None else SoloGate()
    fixed = plan.iterations is not None
    stop_reason = STOP_FIXED
    state = _AutoState(next_check=plan.min_iterations)
    if not fixed and expected_call_ns:
        _forecast(progress, "measurement", plan.min_iterations, "--measurement-min-iterations", expected_call_ns,
                  plan.budget_s, "--measurement-budget-s")  # fmt: skip
    start_ns = clock()
    with stage(as_hook(progress), STAGE_MEASUREMENT, plan.iterations if fixed else plan.max_iterations) as advance:
        while True:
            halt = gate.before_call(len(traces))
            if halt is not None:
                stop_reason = halt
                break
            traces.append(generate_once())
            advance(**measurement_estimate(plan, len(traces), clock() - start_ns, state.last_precision))
            halt = gate.after_call(traces[-1], _own_stop(plan, traces, clock() - start_ns, state))
            if halt is not None:
                stop_reason = halt
                break
    elapsed_ns = clock() - start_ns
    precision = state.precision
    if precision is None and traces:
        precision = median_precision(traces)
    return MeasurementRecord(
        policy=POLICY_FIXED if fixed else POLICY_AUTO,
        iterations=len(traces),
        stop_reason=stop_reason,
        relative_precision=precision,
        target_relative_precision=None if fixed else plan.target_relative_precision,
        elapsed_ns=elapsed_ns,
    )


# --- estimates for the person watching (never part of a result) ------------------------------------------------


def _estimate(elapsed_ns: int, eta_ns: float, bound: bool, **extra: object) -> dict[str, object]:
    eta_ns = max(0.0, eta_ns)
    fraction = elapsed_ns / (elapsed_ns + eta_ns) if elapsed_ns + eta_ns > 0 else 1.0
    return {"fraction": fraction, "eta_s": eta_ns / 1e9, "eta_is_bound": bound, **extra}


def warmup_estimate(plan: WarmupPlan, done: int, elapsed_ns: int) -> dict[str, object]:
    """Share done and time left: a fixed count's rest, or for auto at most the budget or the iteration cap
    (never less than the minimum's rest), since the steady-state test can end it sooner."""
    per_call = elapsed_ns / max(done, 1)
    if plan.iterations is not None:
        return _estimate(elapsed_ns, (plan.iterations - done) * per_call, bound=False)
    at_least = (plan.min_iterations - done) * per_call
    at_most = min((plan.max_iterations - done) * per_call, plan.budget_s * 1e9 - elapsed_ns)
    return _estimate(elapsed_ns, max(at_least, at_most), bound=True)


def measurement_estimate(
    plan: MeasurementPlan, done: int, elapsed_ns: int, precision: float | None
) -> dict[str, object]:
    """As ``warmup_estimate``; with a precision reached, auto also expects the iterations its target needs (the
    interval narrows as 1/sqrt(n)), and the estimate carries the precision and target."""
    per_call = elapsed_ns / max(done, 1)
    if plan.iterations is not None:
        return _estimate(elapsed_ns, (plan.iterations - done) * per_call, bound=False, precision=precision)
    at_least = (plan.min_iterations - done) * per_call
    at_most = min((plan.max_iterations - done) * per_call, plan.budget_s * 1e9 - elapsed_ns)
    target = plan.target_relative_precision
    if precision is not None and precision > 0:
        needed = math.ceil(done * (precision / target) ** 2)
        expected = (needed - done) * per_call
        if expected < at_most:
            return _estimate(elapsed_ns, max(at_least, expected), bound=False, precision=precision, target=target)
    return _estimate(elapsed_ns, max(at_least, at_most), bound=True, precision=precision, target=target)


def _forecast(
    progress: ProgressHook | bool | None,
    what: str,
    minimum: int,
    minimum_flag: str,
    call_ns: int,
    budget_s: float,
    budget_flag: str,
) -> None:
    """Say up front when an auto stage's minimum iterations cannot fit its budget at the calls' current speed."""
    needed_s = minimum * call_ns / 1e9
    if needed_s > budget_s:
        say(progress, f"{what}: at least {minimum} iterations ({minimum_flag}) at ~{call_ns / 1e9:,.1f} s each take "
                      f"~{needed_s:,.0f} s, beyond the {budget_s:g} s budget ({budget_flag}): the run will take "
                      "longer than it says")  # fmt: skip


def overrun_note(name: str, budget_s: float, elapsed_ns: int, iterations: int) -> str | None:
    """A note for the result when an auto stage ran well past its budget (its minimum iterations were slow)."""
    if elapsed_ns <= 1.25 * budget_s * 1e9:
        return None
    return (
        f"{name}: took {elapsed_ns / 1e9:,.1f} s, beyond its {budget_s:g} s budget: its minimum iterations "
        f"({iterations} at ~{elapsed_ns / max(iterations, 1) / 1e9:,.2f} s each) had to run"
    )

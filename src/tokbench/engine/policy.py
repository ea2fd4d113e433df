"""Warmup and measurement policies: the loops that decide when to stop generating.

Both take a ``generate_once`` callable (one timed generate call) and an injectable clock, so they run
the same against the real model and against a fake series in tests; the runner only calls them.

- ``warm_up``: a fixed count, or ``auto``: until ``stationarity.steady_state_test`` passes on the
  warmup latencies since the last iteration that compiled dynamo graphs, bounded by a minimum, a
  maximum and a time budget. When a bound stops it first, the record says no steady state was reached.
- ``measure``: a fixed count, or ``auto``: until the bootstrap CI of the median E2E latency is
  within the target relative precision, bounded the same way; the record gives the precision reached.
  The precision is ``analysis.summarize.median_precision``: the very interval the summary stores.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from tokbench.analysis.stationarity import STEADY_TOLERANCE, STEADY_WINDOW, SteadyStateTest, steady_state_test
from tokbench.analysis.stats import CONFIDENCE
from tokbench.analysis.summarize import PRECISION_METRIC, median_precision
from tokbench.clock import Clock, monotonic_ns
from tokbench.config import AUTO
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
    min_iterations: int = 5
    max_iterations: int = 50
    budget_s: float = 30.0
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
class WarmupRecord:
    """What the warmup did and whether it ended in steady state.

    ``steady_state`` is the test's verdict on the last warmup iterations (also for a fixed count,
    where it is informative only); None when there were too few iterations to test.
    ``compiled_in`` are the warmup iterations (0-based) during which dynamo compiled graphs: the test
    only looks at the iterations after the last of them.
    """

    policy: str
    iterations: int
    stop_reason: str
    steady_state: bool | None
    test: str = SteadyStateTest.NAME
    window: int = 0
    shift: float | None = None
    allowed_shift: float | None = None
    trend_p_value: float | None = None
    compiled_in: tuple[int, ...] = ()
    elapsed_ns: int = 0

    @property
    def detected_length(self) -> int | None:
        """Warmup iterations it took to reach steady state; None when it was not reached."""
        return self.iterations if self.steady_state else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "iterations": self.iterations,
            "stop_reason": self.stop_reason,
            "steady_state": self.steady_state,
            "detected_length": self.detected_length,
            "test": self.test,
            "window": self.window,
            "shift": _finite_or_none(self.shift),
            "allowed_shift": self.allowed_shift,
            "trend_p_value": self.trend_p_value,
            "compiled_in": list(self.compiled_in),
            "elapsed_ns": self.elapsed_ns,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WarmupRecord:
        return cls(
            policy=str(data["policy"]),
            iterations=int(data["iterations"]),
            stop_reason=str(data["stop_reason"]),
            steady_state=data.get("steady_state"),
            test=str(data.get("test", SteadyStateTest.NAME)),
            window=int(data.get("window", 0)),
            shift=data.get("shift"),
            allowed_shift=data.get("allowed_shift"),
            trend_p_value=data.get("trend_p_value"),
            compiled_in=tuple(int(i) for i in data.get("compiled_in", ())),
            elapsed_ns=int(data.get("elapsed_ns", 0)),
        )


@dataclass(frozen=True)
class MeasurementPlan:
    """``iterations`` None means auto: measure until the median E2E CI is within the target."""

    iterations: int | None = None
    min_iterations: int = 10
    max_iterations: int = 500
    budget_s: float = 15.0
    target_relative_precision: float = 0.01

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


@dataclass(frozen=True)
class MeasurementRecord:
    """How many iterations were measured, why it stopped, and the precision of the median E2E reached.

    ``relative_precision`` is the half-width of the bootstrap CI of the median E2E latency over its
    median (0.01 = ±1%) at ``confidence``; the same interval as the summary's ``median_ci``.
    """

    policy: str
    iterations: int
    stop_reason: str
    relative_precision: float | None
    target_relative_precision: float | None = None
    metric: str = PRECISION_METRIC
    confidence: float = CONFIDENCE
    elapsed_ns: int = 0

    @property
    def target_met(self) -> bool | None:
        if self.target_relative_precision is None or self.relative_precision is None:
            return None
        return self.relative_precision <= self.target_relative_precision

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "iterations": self.iterations,
            "stop_reason": self.stop_reason,
            "relative_precision": _finite_or_none(self.relative_precision),
            "target_relative_precision": self.target_relative_precision,
            "target_met": self.target_met,
            "metric": self.metric,
            "confidence": self.confidence,
            "elapsed_ns": self.elapsed_ns,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeasurementRecord:
        return cls(
            policy=str(data["policy"]),
            iterations=int(data["iterations"]),
            stop_reason=str(data["stop_reason"]),
            relative_precision=data.get("relative_precision"),
            target_relative_precision=data.get("target_relative_precision"),
            metric=str(data.get("metric", PRECISION_METRIC)),
            confidence=float(data.get("confidence", CONFIDENCE)),
            elapsed_ns=int(data.get("elapsed_ns", 0)),
        )


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _bar(total: int, label: str, enabled: bool) -> tqdm:  # type: ignore[type-arg]
    return tqdm(total=total, desc=label, disable=not enabled, leave=False, file=sys.stderr, unit="it")


def warm_up(
    generate_once: GenerateOnce,
    plan: WarmupPlan,
    *,
    clock: Clock = monotonic_ns,
    graph_count: GraphCount | None = None,
    curve_into: list[int] | None = None,
    progress: bool = False,
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
    with _bar(plan.iterations if fixed else plan.max_iterations, "Warmup", progress) as bar:  # type: ignore[arg-type]
        while not fixed or len(curve) < plan.iterations:  # type: ignore[operator]
            graphs_before = graph_count() if graph_count else 0
            curve.append(generate_once().e2e_ns)
            bar.update(1)
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


def measure(
    generate_once: GenerateOnce,
    plan: MeasurementPlan,
    *,
    clock: Clock = monotonic_ns,
    into: list[GenerationTrace] | None = None,
    progress: bool = False,
) -> MeasurementRecord:
    """Run measured generations as ``plan`` says; each trace is appended to ``into`` as it happens."""
    traces = into if into is not None else []
    budget_ns = int(plan.budget_s * 1e9)
    fixed = plan.iterations is not None
    stop_reason = STOP_FIXED
    precision: float | None = None
    next_check = plan.min_iterations
    start_ns = clock()
    with _bar(plan.iterations if fixed else plan.max_iterations, "Measure", progress) as bar:  # type: ignore[arg-type]
        while not fixed or len(traces) < plan.iterations:  # type: ignore[operator]
            traces.append(generate_once())
            bar.update(1)
            precision = None
            if fixed:
                continue
            done = len(traces)
            if done < plan.min_iterations:
                continue
            at_bound = done >= plan.max_iterations or clock() - start_ns >= budget_ns
            if done >= next_check or at_bound:
                precision = median_precision(traces)
                next_check = max(done + 1, math.ceil(done * _CHECK_GROWTH))
                if precision <= plan.target_relative_precision:
                    stop_reason = STOP_PRECISION
                    break
            if at_bound:
                stop_reason = STOP_MAX if done >= plan.max_iterations else STOP_BUDGET
                break
    elapsed_ns = clock() - start_ns
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

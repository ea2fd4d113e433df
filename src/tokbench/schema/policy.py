"""The warmup and measurement policies' records (the policies themselves: ``tokbench.engine.policy``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tokbench.schema.serde import Record
from tokbench.schema.summary import CONFIDENCE

PRECISION_METRIC = "e2e_latency_ms"
STEADY_STATE_TEST_NAME = "two-window median shift + Mann-Kendall"


@dataclass(frozen=True)
class WarmupRecord(Record):
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
    test: str = STEADY_STATE_TEST_NAME
    window: int = 0
    shift: float | None = None
    allowed_shift: float | None = None
    trend_p_value: float | None = None
    compiled_in: tuple[int, ...] = ()
    elapsed_ns: int = 0

    SERIALIZED_PROPERTIES: ClassVar[tuple[str, ...]] = ("detected_length",)

    @property
    def detected_length(self) -> int | None:
        """Warmup iterations it took to reach steady state; None when it was not reached."""
        return self.iterations if self.steady_state else None


@dataclass(frozen=True)
class MeasurementRecord(Record):
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

    SERIALIZED_PROPERTIES: ClassVar[tuple[str, ...]] = ("target_met",)

    @property
    def target_met(self) -> bool | None:
        if self.target_relative_precision is None or self.relative_precision is None:
            return None
        return self.relative_precision <= self.target_relative_precision

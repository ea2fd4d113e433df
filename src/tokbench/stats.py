"""Pure descriptive statistics. No numpy: exact, dependency-free, and easy to hand-check."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

SUMMARY_PERCENTILES = (90.0, 95.0, 99.0)


def mean(values: Sequence[float]) -> float:
    _require_values(values)
    return math.fsum(values) / len(values)


def sample_std(values: Sequence[float]) -> float:
    """Sample standard deviation (n - 1 in the denominator); 0.0 for a single value."""
    _require_values(values)
    if len(values) == 1:
        return 0.0
    centre = mean(values)
    return math.sqrt(math.fsum((v - centre) ** 2 for v in values) / (len(values) - 1))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile by linear interpolation between closest ranks (numpy's default).

    Position ``(n - 1) * q / 100`` in the sorted values; fractional positions interpolate.
    """
    _require_values(values)
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    fraction = position - lower
    return ordered[lower] + (ordered[upper] - ordered[lower]) * fraction


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def _require_values(values: Sequence[float]) -> None:
    if len(values) == 0:
        raise ValueError("statistics of an empty sample are undefined")


@dataclass(frozen=True)
class Summary:
    """Descriptive statistics of one metric's samples, in the metric's unit."""

    unit: str
    count: int
    mean: float
    median: float
    std: float
    min: float
    max: float
    p90: float
    p95: float
    p99: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Summary:
        return cls(**data)


def summarize(values: Sequence[float], unit: str) -> Summary:
    p90, p95, p99 = (percentile(values, q) for q in SUMMARY_PERCENTILES)
    return Summary(
        unit=unit,
        count=len(values),
        mean=mean(values),
        median=median(values),
        std=sample_std(values),
        min=min(values),
        max=max(values),
        p90=p90,
        p95=p95,
        p99=p99,
    )

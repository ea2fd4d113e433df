"""Pure descriptive statistics. No numpy: exact, dependency-free, and easy to hand-check.

Confidence intervals are percentile-bootstrap intervals from a seeded ``random.Random``: the same
samples always give the same interval, so a stored summary can be recomputed exactly.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

SUMMARY_PERCENTILES = (90.0, 95.0, 99.0)
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
TREND_ALPHA = 0.05  # a Mann-Kendall p-value below this flags a trend
HIGH_DISPERSION = 0.10  # IQR / median above this flags a metric as too spread to trust its median alone
FLAG_HIGH_DISPERSION = "high_dispersion"
FLAG_TREND = "trend"
FLAG_OUTLIERS = "outliers"


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


def interquartile_range(values: Sequence[float]) -> float:
    return percentile(values, 75.0) - percentile(values, 25.0)


def coefficient_of_variation(values: Sequence[float]) -> float:
    """Sample standard deviation / mean; 0.0 for a single value."""
    centre = mean(values)
    if centre == 0:
        raise ValueError("the coefficient of variation of a zero-mean sample is undefined")
    return sample_std(values) / abs(centre)


def bootstrap_intervals(
    values: Sequence[float],
    quantiles: Sequence[float],
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> list[tuple[float, float]]:
    """Percentile-bootstrap confidence intervals of the ``quantiles`` (0-100) of ``values``.

    Each resample draws ``len(values)`` values with replacement from ``random.Random(seed)``; the
    interval is the (1 - confidence) / 2 and (1 + confidence) / 2 percentiles of the resampled
    statistic. One sort per resample serves every quantile. A single value gives a zero-width interval.
    """
    _require_values(values)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    rng = random.Random(seed)
    n = len(values)
    estimates: list[list[float]] = [[] for _ in quantiles]
    for _ in range(resamples):
        resample = sorted(rng.choices(values, k=n))
        for estimate, q in zip(estimates, quantiles, strict=True):
            estimate.append(_sorted_percentile(resample, q))
    tail = (1.0 - confidence) / 2 * 100.0
    return [(percentile(estimate, tail), percentile(estimate, 100.0 - tail)) for estimate in estimates]


def relative_half_width(interval: tuple[float, float], centre: float) -> float:
    """Half the interval's width relative to ``centre`` (0.01 means ±1%)."""
    if centre == 0:
        return math.inf
    return (interval[1] - interval[0]) / 2 / abs(centre)


def _sorted_percentile(ordered: Sequence[float], q: float) -> float:
    position = (len(ordered) - 1) * q / 100.0
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


Interval = tuple[float, float]


@dataclass(frozen=True)
class Summary:
    """Statistics of one metric's samples, in the metric's unit.

    The fields after ``p99`` are optional so summaries written before they existed still load:
    95% bootstrap CIs of the median and percentiles, CV, IQR, the count of far-out outliers (Tukey,
    3 IQR) and the Mann-Kendall trend p-value of the samples in measurement order.
    """

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
    median_ci: Interval | None = None
    p90_ci: Interval | None = None
    p95_ci: Interval | None = None
    p99_ci: Interval | None = None
    cv: float | None = None
    iqr: float | None = None
    outliers: int | None = None
    trend_p_value: float | None = None
    confidence: float | None = None

    @property
    def median_relative_precision(self) -> float | None:
        """Half-width of the median's CI relative to the median (0.01 means ±1%)."""
        return None if self.median_ci is None else relative_half_width(self.median_ci, self.median)

    @property
    def flags(self) -> tuple[str, ...]:
        """What makes this metric's figures less trustworthy than they look."""
        flags = []
        if self.iqr is not None and self.median != 0 and self.iqr / abs(self.median) > HIGH_DISPERSION:
            flags.append(FLAG_HIGH_DISPERSION)
        if self.trend_p_value is not None and self.trend_p_value < TREND_ALPHA:
            flags.append(FLAG_TREND)
        if self.outliers:
            flags.append(FLAG_OUTLIERS)
        return tuple(flags)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            data[f.name] = list(value) if isinstance(value, tuple) else value
        data["flags"] = list(self.flags)  # derived; written for readers of the JSON, ignored on load
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Summary:
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        for name in ("median_ci", "p90_ci", "p95_ci", "p99_ci"):
            if values.get(name) is not None:
                low, high = values[name]
                values[name] = (float(low), float(high))
        return cls(**values)


def summarize(
    values: Sequence[float],
    unit: str,
    order: Sequence[float] | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Summary:
    """Every statistic of ``values``. The trend test runs on ``order`` if given (a shorter series in
    measurement order, e.g. one value per iteration for a pooled metric), else on ``values``."""
    from tokbench.analysis.stationarity import mann_kendall, tukey_outliers  # it builds on this module's percentiles

    p90, p95, p99 = (percentile(values, q) for q in SUMMARY_PERCENTILES)
    intervals = bootstrap_intervals(values, (50.0, *SUMMARY_PERCENTILES), resamples=resamples, seed=seed)
    centre = mean(values)
    return Summary(
        unit=unit,
        count=len(values),
        mean=centre,
        median=median(values),
        std=sample_std(values),
        min=min(values),
        max=max(values),
        p90=p90,
        p95=p95,
        p99=p99,
        median_ci=intervals[0],
        p90_ci=intervals[1],
        p95_ci=intervals[2],
        p99_ci=intervals[3],
        cv=coefficient_of_variation(values) if centre != 0 else None,
        iqr=interquartile_range(values),
        outliers=len(tukey_outliers(values)),
        trend_p_value=mann_kendall(values if order is None else order).p_value,
        confidence=CONFIDENCE,
    )

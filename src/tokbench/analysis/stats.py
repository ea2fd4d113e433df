"""Pure descriptive statistics. No numpy: exact, dependency-free, and easy to hand-check.

Confidence intervals are percentile-bootstrap intervals from a seeded ``random.Random``: the same
samples always give the same interval, so a stored summary can be recomputed exactly.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

# The stored record and its flag thresholds live in schema (torch-free, read without analysis); re-exported here.
from tokbench.schema.summary import (
    CONFIDENCE as CONFIDENCE,
)
from tokbench.schema.summary import (
    FLAG_HIGH_DISPERSION as FLAG_HIGH_DISPERSION,
)
from tokbench.schema.summary import (
    FLAG_OUTLIERS as FLAG_OUTLIERS,
)
from tokbench.schema.summary import (
    FLAG_TREND as FLAG_TREND,
)
from tokbench.schema.summary import (
    HIGH_DISPERSION as HIGH_DISPERSION,
)
from tokbench.schema.summary import (
    TREND_ALPHA as TREND_ALPHA,
)
from tokbench.schema.summary import (
    Interval as Interval,
)
from tokbench.schema.summary import (
    Summary as Summary,
)
from tokbench.schema.summary import (
    relative_half_width as relative_half_width,
)

SUMMARY_PERCENTILES = (90.0, 95.0, 99.0)
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


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


def _sorted_percentile(ordered: Sequence[float], q: float) -> float:
    position = (len(ordered) - 1) * q / 100.0
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


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

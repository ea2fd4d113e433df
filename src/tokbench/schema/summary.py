"""The statistics of one metric as stored in a result (computed by ``tokbench.analysis.stats``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tokbench.schema.serde import Record

CONFIDENCE = 0.95
TREND_ALPHA = 0.05  # a Mann-Kendall p-value below this flags a trend
HIGH_DISPERSION = 0.10  # IQR / median above this flags a metric as too spread to trust its median alone
FLAG_HIGH_DISPERSION = "high_dispersion"
FLAG_TREND = "trend"
FLAG_OUTLIERS = "outliers"

Interval = tuple[float, float]


def relative_half_width(interval: tuple[float, float], centre: float) -> float:
    """Half the interval's width relative to ``centre`` (0.01 means ±1%)."""
    if centre == 0:
        return float("inf")
    return (interval[1] - interval[0]) / 2 / abs(centre)


@dataclass(frozen=True)
class Summary(Record):
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

    SERIALIZED_PROPERTIES: ClassVar[tuple[str, ...]] = ("flags",)  # derived; for readers of the JSON

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

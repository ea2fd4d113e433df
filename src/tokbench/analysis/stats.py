"""Pure descriptive statistics on numpy arrays: percentiles, spread, and seeded cluster-bootstrap intervals.

Confidence intervals are percentile-bootstrap intervals from ``numpy.random.default_rng(seed)``: the same
samples (and clusters) always give the same interval, so a stored summary can be recomputed exactly with
the same numpy version (numpy does not promise identical random streams across its releases).

Samples that come in groups measured together (the ITL gaps of one generate call, the requests of one
continuous-batching call) are correlated, so the bootstrap resamples whole groups ("clusters"), not
single values: resampling correlated values as if independent makes the interval too narrow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

SUMMARY_PERCENTILES = (90.0, 95.0, 99.0)
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
TREND_ALPHA = 0.05  # a Mann-Kendall p-value below this flags a trend
HIGH_DISPERSION = 0.10  # IQR / median above this flags a metric as too spread to trust its median alone
FLAG_HIGH_DISPERSION = "high_dispersion"
FLAG_TREND = "trend"
FLAG_OUTLIERS = "outliers"

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def as_values(values: ArrayLike) -> FloatArray:
    """``values`` as a 1-D float64 array; raises ValueError for an empty or non-1-D sample."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"statistics need a 1-D sample, got shape {array.shape}")
    if array.size == 0:
        raise ValueError("statistics of an empty sample are undefined")
    return array


def mean(values: ArrayLike) -> float:
    # fsum: exact, so a hand-computed mean matches to the last digit whatever the order of the values
    return math.fsum(as_values(values).tolist()) / np.size(values)


def sample_std(values: ArrayLike) -> float:
    """Sample standard deviation (n - 1 in the denominator); 0.0 for a single value."""
    array = as_values(values)
    if array.size == 1:
        return 0.0
    deviations = array - mean(array)
    return math.sqrt(float(np.dot(deviations, deviations)) / (array.size - 1))


def _check_quantile(q: float) -> None:
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {q}")


def _sorted_percentiles(ordered: FloatArray, quantiles: Sequence[float]) -> list[float]:
    """Linear interpolation between closest ranks (numpy's default) on already sorted values.

    Position ``(n - 1) * q / 100``; written out (not ``np.percentile``) so a figure is ``a + (b - a) * f``
    exactly as tokbench always computed it, and stored summaries recompute to the same float.
    """
    last = ordered.size - 1
    result = []
    for q in quantiles:
        _check_quantile(q)
        position = last * q / 100.0
        lower = math.floor(position)
        upper = min(lower + 1, last)
        low, high = float(ordered[lower]), float(ordered[upper])
        result.append(low + (high - low) * (position - lower))
    return result


def percentiles(values: ArrayLike, quantiles: Sequence[float]) -> list[float]:
    """Several percentiles (0-100) of ``values`` with one sort."""
    return _sorted_percentiles(np.sort(as_values(values)), quantiles)


def percentile(values: ArrayLike, q: float) -> float:
    """The q-th percentile by linear interpolation between closest ranks (numpy's default)."""
    _check_quantile(q)
    return percentiles(values, (q,))[0]


def median(values: ArrayLike) -> float:
    return percentile(values, 50.0)


def interquartile_range(values: ArrayLike) -> float:
    q1, q3 = percentiles(values, (25.0, 75.0))
    return q3 - q1


def coefficient_of_variation(values: ArrayLike) -> float:
    """Sample standard deviation / mean; 0.0 for a single value."""
    centre = mean(values)
    if centre == 0:
        raise ValueError("the coefficient of variation of a zero-mean sample is undefined")
    return sample_std(values) / abs(centre)


def tukey_outliers(values: ArrayLike, fence: float = 3.0) -> list[int]:
    """Indices of the values outside [Q1 - fence * IQR, Q3 + fence * IQR] (3 = Tukey's "far out")."""
    array = np.asarray(values, dtype=np.float64)
    if array.size < 4:
        return []
    q1, q3 = percentiles(array, (25.0, 75.0))
    spread = q3 - q1
    outside = (array < q1 - fence * spread) | (array > q3 + fence * spread)
    return [int(i) for i in np.flatnonzero(outside)]


def bootstrap_intervals(
    values: ArrayLike,
    quantiles: Sequence[float],
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    *,
    clusters: ArrayLike | None = None,
) -> list[tuple[float, float]]:
    """Percentile-bootstrap confidence intervals of the ``quantiles`` (0-100) of ``values``.

    ``clusters`` labels each value with its group (e.g. the generate call it came from); a resample
    draws as many groups as there are, with replacement, and pools their values (a cluster bootstrap).
    Without ``clusters`` every value is its own group (the ordinary bootstrap). The interval is the
    (1 - confidence) / 2 and (1 + confidence) / 2 percentiles of the resampled statistic. A single
    value gives a zero-width interval.
    """
    data = as_values(values)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    for q in quantiles:
        _check_quantile(q)
    labels = _cluster_labels(data.size, clusters)
    estimates = bootstrap_quantiles(data, labels, quantiles, resamples, seed)
    tail = (1.0 - confidence) / 2 * 100.0
    intervals = []
    for estimate in estimates:
        low, high = _sorted_percentiles(np.sort(estimate), (tail, 100.0 - tail))
        intervals.append((low, high))
    return intervals


def _cluster_labels(size: int, clusters: ArrayLike | None) -> IntArray:
    """Dense labels 0..K-1, one per value."""
    if clusters is None:
        return np.arange(size, dtype=np.int64)
    raw = np.asarray(clusters)
    if raw.shape != (size,):
        raise ValueError(f"clusters needs one label per value ({size}), got shape {raw.shape}")
    return np.unique(raw, return_inverse=True)[1].astype(np.int64).reshape(size)


# Elements of the temporary arrays one step of the bootstrap may use: bounds memory for very large samples.
_WORK_ELEMENTS = 1 << 22


def resample_counts(cluster_count: int, resamples: int, seed: int) -> IntArray:
    """``counts[r, k]``: how often resample r drew cluster k (K draws with replacement from K clusters)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, cluster_count, size=(resamples, cluster_count))
    offsets = (np.arange(resamples, dtype=np.int64) * cluster_count)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=resamples * cluster_count)
    return counts.reshape(resamples, cluster_count)


def bootstrap_quantiles(
    data: FloatArray, labels: IntArray, quantiles: Sequence[float], resamples: int, seed: int
) -> list[FloatArray]:
    """The ``quantiles`` of ``resamples`` cluster-bootstrap resamples of ``data``: one array per quantile."""
    cluster_count = int(labels.max()) + 1
    return weighted_quantiles(data, labels, resample_counts(cluster_count, resamples, seed), quantiles)


def weighted_quantiles(
    data: FloatArray, labels: IntArray, counts: IntArray, quantiles: Sequence[float]
) -> list[FloatArray]:
    """For each row r of ``counts``, the ``quantiles`` of the pooled sample that repeats every value of
    cluster k ``counts[r, k]`` times (linear interpolation, as ``percentiles``): one array per quantile.

    The pooled sample is never built. Its sorted values are the sorted ``data`` with each value repeated
    by its cluster's count, so an order statistic can be found on the sorted data: blocks of the sorted
    data carry each row's cumulative weight (a matrix product of counts by per-block cluster sizes), and
    only the one block that holds the wanted rank is expanded. Cost per row and quantile: about K plus
    the block size (~sqrt(n)) operations, instead of a sort of n values.
    """
    size = data.size
    order = np.argsort(data, kind="stable")
    ordered = data[order]
    ordered_labels = labels[order]
    cluster_count = counts.shape[1]
    cluster_sizes = np.bincount(labels, minlength=cluster_count)
    totals = counts @ cluster_sizes  # values in each pooled sample

    block = max(32, math.isqrt(size))
    blocks = -(-size // block)
    block_weight = _block_weights(counts, ordered_labels, cluster_count, block, blocks)
    cumulative = np.cumsum(block_weight, axis=1)  # values of the sample up to the end of each block

    # every order statistic needed: the two ranks each quantile interpolates between
    positions = np.stack([(totals - 1) * q / 100.0 for q in quantiles], axis=1)  # (R, Q)
    lower = np.floor(positions).astype(np.int64)
    upper = np.minimum(lower + 1, (totals - 1)[:, None])
    ranks = np.concatenate([lower, upper], axis=1)  # (R, 2Q)
    values = _order_statistics(ranks, counts, cumulative, ordered, ordered_labels, block)
    low_values, high_values = values[:, : len(quantiles)], values[:, len(quantiles) :]
    estimates = low_values + (high_values - low_values) * (positions - lower)
    return [estimates[:, i].copy() for i in range(len(quantiles))]


def _block_weights(
    counts: IntArray, ordered_labels: IntArray, cluster_count: int, block: int, blocks: int
) -> FloatArray:
    """``weights[r, b]``: how many values of resample r fall in block b of the sorted data."""
    size = ordered_labels.size
    block_of = np.arange(size, dtype=np.int64) // block
    if cluster_count * blocks <= max(4 * size, _WORK_ELEMENTS):
        # per-block cluster sizes (K x B), then one matrix product for all resamples
        per_block = np.bincount(ordered_labels * blocks + block_of, minlength=cluster_count * blocks)
        return counts.astype(np.float64) @ per_block.reshape(cluster_count, blocks).astype(np.float64)
    # many small clusters (e.g. every value its own): sum each resample's weights block by block
    starts = np.arange(0, size, block)
    rows_per_chunk = max(1, _WORK_ELEMENTS // size)
    chunks = [
        np.add.reduceat(counts[first : first + rows_per_chunk][:, ordered_labels], starts, axis=1)
        for first in range(0, counts.shape[0], rows_per_chunk)
    ]
    return np.concatenate(chunks).astype(np.float64)


def _order_statistics(
    ranks: IntArray,
    counts: IntArray,
    cumulative: FloatArray,
    ordered: FloatArray,
    ordered_labels: IntArray,
    block: int,
) -> FloatArray:
    """``result[r, j]``: the value of 0-based rank ``ranks[r, j]`` in resample r's sorted pooled values."""
    resamples, wanted = ranks.shape
    size = ordered.size
    # the block holding each rank: the number of blocks that end at or before it
    block_index = np.empty_like(ranks)
    for j in range(wanted):
        block_index[:, j] = (cumulative <= ranks[:, j : j + 1]).sum(axis=1)
    before = np.where(block_index > 0, np.take_along_axis(cumulative, np.maximum(block_index - 1, 0), axis=1), 0.0)
    positions = block_index[:, :, None] * block + np.arange(block)[None, None, :]  # (R, J, block)
    inside = positions < size
    clipped = np.minimum(positions, size - 1)
    weights = counts[np.arange(resamples)[:, None, None], ordered_labels[clipped]] * inside
    running = before[:, :, None] + np.cumsum(weights, axis=2)
    offset = np.argmax(running > ranks[:, :, None], axis=2)
    return ordered[np.take_along_axis(clipped, offset[:, :, None], axis=2)[:, :, 0]]


def relative_half_width(interval: tuple[float, float], centre: float) -> float:
    """Half the interval's width relative to ``centre`` (0.01 means ±1%)."""
    if centre == 0:
        return math.inf
    return (interval[1] - interval[0]) / 2 / abs(centre)


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

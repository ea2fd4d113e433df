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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

# The stored record and its flag thresholds live in schema (torch-free, read without analysis); re-exported here.
from tokbench.schema.summary import (  # noqa: F401
    CONFIDENCE,
    FLAG_HIGH_DISPERSION,
    FLAG_OUTLIERS,
    FLAG_TREND,
    HIGH_DISPERSION,
    TREND_ALPHA,
    Interval,
    Summary,
    relative_half_width,
)

SUMMARY_PERCENTILES = (90.0, 95.0, 99.0)
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0

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
    return float(np.mean(as_values(values)))


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


FAR_OUT_FENCE = 3.0  # Tukey's "far out" fences: quartiles ± 3 IQR


def tukey_outliers(values: ArrayLike, fence: float = FAR_OUT_FENCE) -> list[int]:
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
    value (or a single cluster) gives a zero-width interval.
    """
    return SortedSample.of(values, clusters).bootstrap_intervals(quantiles, confidence, resamples, seed)


@dataclass(frozen=True, eq=False)
class SortedSample:
    """Values sorted once (stable), with the dense cluster label (0..K-1) of each sorted value.

    Summaries need the sort for percentiles and the bootstrap needs it again: one sort serves both.
    """

    ordered: FloatArray
    ordered_labels: IntArray
    cluster_count: int

    @classmethod
    def of(cls, values: ArrayLike, clusters: ArrayLike | None = None) -> SortedSample:
        data = as_values(values)
        labels = _cluster_labels(data.size, clusters)
        order = np.argsort(data)  # tie order is irrelevant: equal values give the same order statistics
        return cls(data[order], labels[order], int(labels.max()) + 1)

    def percentiles(self, quantiles: Sequence[float]) -> list[float]:
        return _sorted_percentiles(self.ordered, quantiles)

    def bootstrap_intervals(
        self,
        quantiles: Sequence[float],
        confidence: float = CONFIDENCE,
        resamples: int = BOOTSTRAP_RESAMPLES,
        seed: int = BOOTSTRAP_SEED,
    ) -> list[tuple[float, float]]:
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {confidence}")
        if resamples < 1:
            raise ValueError(f"resamples must be >= 1, got {resamples}")
        for q in quantiles:
            _check_quantile(q)
        # resamples in chunks, so memory stays bounded for many clusters (e.g. a large unclustered sample)
        parts = [
            _weighted_sorted_quantiles(self.ordered, self.ordered_labels, counts, quantiles)
            for counts in _resample_count_chunks(self.cluster_count, resamples, seed)
        ]
        estimates = [np.concatenate([part[i] for part in parts]) for i in range(len(quantiles))]
        tail = (1.0 - confidence) / 2 * 100.0
        intervals = []
        for estimate in estimates:
            low, high = _sorted_percentiles(np.sort(estimate), (tail, 100.0 - tail))
            intervals.append((low, high))
        return intervals


def _cluster_labels(size: int, clusters: ArrayLike | None) -> IntArray:
    """Dense labels 0..K-1, one per value, in order of the given labels."""
    if clusters is None:
        return np.arange(size, dtype=np.intp)
    raw = np.asarray(clusters)
    if raw.shape != (size,):
        raise ValueError(f"clusters needs one label per value ({size}), got shape {raw.shape}")
    if np.issubdtype(raw.dtype, np.integer) and raw.min() >= 0 and raw.max() < 4 * size:
        # small non-negative integers (call indices): renumber the ones present without a sort
        present = np.bincount(raw, minlength=1) > 0
        return (np.cumsum(present) - 1)[raw].astype(np.intp)
    return np.unique(raw, return_inverse=True)[1].reshape(size).astype(np.intp)


# Elements of the temporary arrays one step of the bootstrap may use: bounds memory for very large samples.
_WORK_ELEMENTS = 1 << 22


def resample_counts(cluster_count: int, resamples: int, seed: int) -> IntArray:
    """``counts[r, k]``: how often resample r drew cluster k (K draws with replacement from K clusters)."""
    return np.concatenate(list(_resample_count_chunks(cluster_count, resamples, seed)))


def _resample_count_chunks(cluster_count: int, resamples: int, seed: int) -> Iterator[IntArray]:
    """``resample_counts`` a chunk of rows at a time (rows x K <= _WORK_ELEMENTS), from one seeded generator.

    Time is O(resamples x K): trivial for clusters that are calls (hundreds), seconds for a sample of
    hundreds of thousands of independent values.
    """
    rng = np.random.default_rng(seed)
    rows_per_chunk = max(1, _WORK_ELEMENTS // cluster_count)
    for first in range(0, resamples, rows_per_chunk):
        rows = min(rows_per_chunk, resamples - first)
        draws = rng.integers(0, cluster_count, size=(rows, cluster_count))
        offsets = (np.arange(rows, dtype=np.int64) * cluster_count)[:, None]
        counts = np.bincount((draws + offsets).ravel(), minlength=rows * cluster_count)
        yield counts.reshape(rows, cluster_count)


def weighted_quantiles(
    data: ArrayLike, labels: ArrayLike, counts: IntArray, quantiles: Sequence[float]
) -> list[FloatArray]:
    """For each row r of ``counts``, the ``quantiles`` of the pooled sample that repeats every value of
    cluster k ``counts[r, k]`` times (linear interpolation, as ``percentiles``): one array per quantile.
    ``labels`` are dense cluster indices 0..K-1 (K = ``counts.shape[1]``)."""
    array = as_values(data)
    order = np.argsort(array)
    return _weighted_sorted_quantiles(array[order], np.asarray(labels, dtype=np.intp)[order], counts, quantiles)


def _weighted_sorted_quantiles(
    ordered: FloatArray, ordered_labels: IntArray, counts: IntArray, quantiles: Sequence[float]
) -> list[FloatArray]:
    """``weighted_quantiles`` on sorted values.

    The pooled sample is never built. Its sorted values are the sorted data with each value repeated
    by its cluster's count, so an order statistic can be found on the sorted data: blocks of the sorted
    data carry each row's cumulative weight (a matrix product of counts by per-block cluster sizes, or
    block sums when clusters are many and small), and only the block that holds the wanted rank is
    expanded. Cost per row and quantile: about K plus the block size (~sqrt(n)) operations, instead
    of a sort of the pooled values.
    """
    size = ordered.size
    resamples, cluster_count = counts.shape
    block = max(32, math.isqrt(size))
    blocks = -(-size // block)
    # pad to whole blocks with a dummy cluster (index K) that is never drawn
    padded_labels = np.full(blocks * block, cluster_count, dtype=np.intp)
    padded_labels[:size] = ordered_labels
    label_blocks = padded_labels.reshape(blocks, block)
    padded_counts = np.zeros((resamples, cluster_count + 1), dtype=np.int64)
    padded_counts[:, :cluster_count] = counts
    totals = counts @ np.bincount(ordered_labels, minlength=cluster_count)  # values in each pooled sample
    cumulative = np.cumsum(_block_weights(padded_counts, label_blocks), axis=1)  # up to each block's end

    estimates = []
    for q in quantiles:
        position = (totals - 1) * q / 100.0
        lower = np.floor(position).astype(np.int64)
        upper = np.minimum(lower + 1, totals - 1)
        low_index, high_index = _rank_indices(lower, upper, padded_counts, cumulative, label_blocks)
        low, high = ordered[low_index], ordered[high_index]
        estimates.append(low + (high - low) * (position - lower))
    return estimates


def _block_weights(padded_counts: IntArray, label_blocks: IntArray) -> FloatArray:
    """``weights[r, b]``: how many values of pooled sample r fall in block b of the sorted data."""
    blocks, block = label_blocks.shape
    clusters = padded_counts.shape[1]
    if clusters * blocks <= max(40 * blocks * block, _WORK_ELEMENTS):
        # per-block cluster sizes (K x B), then one matrix product (BLAS) for all rows
        block_of = np.repeat(np.arange(blocks, dtype=np.intp), block)
        per_block = np.bincount(label_blocks.ravel() * blocks + block_of, minlength=clusters * blocks)
        return padded_counts.astype(np.float64) @ per_block.reshape(clusters, blocks).astype(np.float64)
    # many small clusters (e.g. every value its own): sum each row's weights block by block, in chunks
    rows_per_chunk = max(1, _WORK_ELEMENTS // label_blocks.size)
    flat = label_blocks.ravel()
    chunks = [
        padded_counts[first : first + rows_per_chunk][:, flat].reshape(-1, blocks, block).sum(axis=2)
        for first in range(0, padded_counts.shape[0], rows_per_chunk)
    ]
    return np.concatenate(chunks).astype(np.float64)


def _rank_indices(
    lower: IntArray, upper: IntArray, padded_counts: IntArray, cumulative: FloatArray, label_blocks: IntArray
) -> tuple[IntArray, IntArray]:
    """Indices into the sorted data of rank ``lower[r]`` and ``upper[r]`` (0-based, upper = lower or
    lower + 1) of each pooled sample r."""
    block = label_blocks.shape[1]
    low_block, running = _expand_block(lower, padded_counts, cumulative, label_blocks)
    low_index = low_block * block + np.argmax(running > lower[:, None], axis=1)
    high_index = low_block * block + np.argmax(running > upper[:, None], axis=1)
    crossing = np.flatnonzero(running[:, -1] <= upper)  # upper is the first value of a later block
    if crossing.size:
        high_block, high_running = _expand_block(
            upper[crossing], padded_counts[crossing], cumulative[crossing], label_blocks
        )
        high_index[crossing] = high_block * block + np.argmax(high_running > upper[crossing, None], axis=1)
    return low_index, high_index


def _expand_block(
    ranks: IntArray, padded_counts: IntArray, cumulative: FloatArray, label_blocks: IntArray
) -> tuple[IntArray, IntArray]:
    """The block holding each row's rank, and the row's running count through that block's values."""
    block_index = np.count_nonzero(cumulative <= ranks[:, None], axis=1)
    before = np.where(block_index > 0, cumulative[np.arange(ranks.size), np.maximum(block_index - 1, 0)], 0.0)
    weights = np.take_along_axis(padded_counts, label_blocks[block_index], axis=1)
    return block_index, before.astype(np.int64)[:, None] + np.cumsum(weights, axis=1)

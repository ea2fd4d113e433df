"""From raw traces to the stored summary: one function every consumer uses.

``summarize_traces`` builds each metric's ``Summary`` from ``samples.metric_samples`` with a cluster
bootstrap over calls; ``median_precision`` is the same computation for the median E2E alone, so the
measurement policy stops on exactly the interval the summary then reports.

Two corrections to the plain percentile bootstrap (issue 20, measured in the compare-stats review):

- the median's interval of a pooled metric (several values per call, e.g. ITL gaps) is widened around the
  median by √(K/(K−1))·t₀.₉₇₅,K−1 / z₀.₉₇₅ for K calls: a percentile bootstrap over few clusters is too narrow
  (seeded simulation, AR(1) token noise: 91% → 93% at 10 calls, 94% → 94.5% at 20, 94% → 95% at 50);
- p90 / p95 / p99 intervals are distribution-free order-statistic (binomial) intervals when the values are
  independent (one per call), and None when the calls are too few for one (p90 needs 35 calls, p99 367) or the
  values of a call are not independent: a bootstrap cannot reach above the sample maximum, so its p99
  interval from 20 calls covered the true p99 in 22% of runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from tokbench.analysis.compare import quantile_interval
from tokbench.analysis.samples import MetricSamples, metric_samples
from tokbench.analysis.stationarity import mann_kendall
from tokbench.analysis.stats import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    CONFIDENCE,
    FAR_OUT_FENCE,
    SUMMARY_PERCENTILES,
    SortedSample,
    Summary,
    as_values,
    coefficient_of_variation,
    mean,
    percentiles,
    relative_half_width,
    sample_std,
)
from tokbench.schema.records import GenerationTrace

if TYPE_CHECKING:
    from tokbench.schema.results import BenchmarkResult

PRECISION_METRIC = "e2e_latency_ms"
_Z_975 = float(special.ndtri(0.975))


def summarize(
    values: ArrayLike,
    unit: str,
    order: ArrayLike | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    *,
    clusters: ArrayLike | None = None,
) -> Summary:
    """Every statistic of ``values``. The trend test runs on ``order`` if given (a shorter series in
    measurement order, e.g. one value per call for a pooled metric), else on ``values``; the bootstrap
    resamples whole ``clusters`` (e.g. calls) when given, else single values."""
    data = as_values(values)
    sample = SortedSample.of(data, clusters)  # one sort for the percentiles and the bootstrap
    q1, centre_median, q3, p90, p95, p99 = sample.percentiles((25.0, 50.0, 75.0, *SUMMARY_PERCENTILES))
    (median_ci,) = sample.bootstrap_intervals((50.0,), resamples=resamples, seed=seed)
    median_ci = _few_clusters_widened(median_ci, centre_median, sample.cluster_count, data.size)
    independent = sample.cluster_count == data.size  # one value per cluster (call)
    tails = [
        quantile_interval(data, q / 100.0, CONFIDENCE) if independent else None for q in SUMMARY_PERCENTILES
    ]
    centre = mean(data)
    spread = sample_std(data)
    iqr = q3 - q1
    outliers = (
        int(np.count_nonzero((data < q1 - FAR_OUT_FENCE * iqr) | (data > q3 + FAR_OUT_FENCE * iqr)))
        if data.size >= 4
        else 0
    )  # as stats.tukey_outliers, without a second sort
    return Summary(
        unit=unit,
        count=int(data.size),
        mean=centre,
        median=centre_median,
        std=spread,
        min=float(sample.ordered[0]),
        max=float(sample.ordered[-1]),
        p90=p90,
        p95=p95,
        p99=p99,
        median_ci=median_ci,
        p90_ci=tails[0],
        p95_ci=tails[1],
        p99_ci=tails[2],
        cv=coefficient_of_variation(data) if centre != 0 else None,
        iqr=iqr,
        outliers=outliers,
        trend_p_value=mann_kendall(data if order is None else order).p_value,
        confidence=CONFIDENCE,
    )


def summarize_samples(samples: MetricSamples) -> Summary:
    """A metric's summary, its bootstrap resampling whole calls."""
    return summarize(samples.values, samples.unit, order=samples.trend_series(), clusters=samples.calls)


def summarize_traces(traces: Sequence[GenerationTrace]) -> dict[str, Summary]:
    """The summary of every metric, computed from raw traces alone."""
    if not traces:
        return {}
    # a metric without samples has no summary (served answers of one token have no TPOT)
    return {name: summarize_samples(samples) for name, samples in metric_samples(traces).items() if len(samples)}


def _few_clusters_widened(
    interval: tuple[float, float], centre: float, clusters: int, values: int
) -> tuple[float, float]:
    """A pooled sample's bootstrap interval widened for few clusters: √(K/(K−1)) (the bootstrap variance of a
    K-cluster statistic is (K−1)/K of the plug-in one) and t₀.₉₇₅,K−1 / z₀.₉₇₅ (K−1 degrees of freedom)."""
    if clusters == values or clusters < 2:
        return interval
    factor = math.sqrt(clusters / (clusters - 1)) * float(special.stdtrit(clusters - 1, 0.975)) / _Z_975
    low, high = interval
    return centre - (centre - low) * factor, centre + (high - centre) * factor


def median_interval(samples: MetricSamples) -> tuple[float, float]:
    """The 95% cluster-bootstrap CI of the median: the summary's ``median_ci``, computed alone."""
    sample = SortedSample.of(samples.values, samples.calls)
    (interval,) = sample.bootstrap_intervals((50.0,))
    return _few_clusters_widened(interval, sample.percentiles((50.0,))[0], sample.cluster_count, len(samples.values))


def median_precision(traces: Sequence[GenerationTrace], metric: str = PRECISION_METRIC) -> float:
    """Relative half-width of the median's CI of ``metric`` over ``traces``, exactly the stored summary's
    ``median_relative_precision``; inf when it cannot be computed (no samples, zero median)."""
    if not traces:
        return math.inf
    samples = metric_samples(traces, (metric,))[metric]  # only this metric: another's failure is not the policy's
    if len(samples) == 0:
        return math.inf
    centre = percentiles(samples.values, (50.0,))[0]
    if centre == 0 or not np.isfinite(centre):
        return math.inf
    return relative_half_width(median_interval(samples), centre)


def recompute_summary(result: BenchmarkResult) -> dict[str, Summary]:
    """A stored result's summary, recomputed from its raw traces with today's statistics."""
    return summarize_traces(result.iterations)

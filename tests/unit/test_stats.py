"""Descriptive statistics against hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokbench.analysis.stats import (
    Summary,
    bootstrap_intervals,
    coefficient_of_variation,
    interquartile_range,
    mean,
    median,
    percentile,
    percentiles,
    relative_half_width,
    resample_counts,
    sample_std,
    weighted_quantiles,
)
from tokbench.analysis.summarize import summarize


def test_mean_and_sample_std_by_hand() -> None:
    values = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
    assert mean(values) == 5.0
    # squared deviations sum to 32; sample variance 32 / 7
    assert sample_std(values) == pytest.approx(math.sqrt(32 / 7))
    assert sample_std([3.0]) == 0.0


def test_percentile_interpolates_between_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0]  # positions 0..3
    assert percentile(values, 0) == 10.0
    assert percentile(values, 100) == 40.0
    assert percentile(values, 50) == 25.0  # position 1.5
    assert percentile(values, 90) == pytest.approx(37.0)  # position 2.7 -> 30 + 0.7 * 10
    assert percentile([40.0, 10.0, 30.0, 20.0], 90) == pytest.approx(37.0)  # order does not matter
    assert median([5.0, 1.0, 3.0]) == 3.0
    assert percentile([7.0], 99) == 7.0


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        percentile([1.0], 101)


def test_summarize_by_hand() -> None:
    values = [float(v) for v in range(1, 11)]  # 1..10
    summary = summarize(values, "ms")
    assert summary == Summary(
        unit="ms",
        count=10,
        mean=5.5,
        median=5.5,
        std=pytest.approx(math.sqrt(82.5 / 9)),  # sum of squared deviations 82.5
        min=1.0,
        max=10.0,
        p90=pytest.approx(9.1),  # position 8.1
        p95=pytest.approx(9.55),  # position 8.55
        p99=pytest.approx(9.91),  # position 8.91
        median_ci=summary.median_ci,  # bootstrap: checked below and in test_bootstrap_*
        p90_ci=summary.p90_ci,
        p95_ci=summary.p95_ci,
        p99_ci=summary.p99_ci,
        cv=pytest.approx(math.sqrt(82.5 / 9) / 5.5),
        iqr=pytest.approx(4.5),  # Q1 at position 2.25 -> 3.25, Q3 at 6.75 -> 7.75
        outliers=0,
        trend_p_value=pytest.approx(math.erfc(44 / math.sqrt(125) / math.sqrt(2))),  # 1..10 rises: S = 45
        confidence=0.95,
    )
    assert summary.median_ci is not None and summary.median_ci[0] <= 5.5 <= summary.median_ci[1]
    assert summary.flags == ("high_dispersion", "trend")  # IQR / median = 4.5 / 5.5; a monotonic series
    assert Summary.from_dict(summary.to_dict()) == summary
    assert summary.to_dict()["flags"] == ["high_dispersion", "trend"]


def test_summaries_written_before_the_confidence_fields_still_load() -> None:
    old = {"unit": "ms", "count": 1, "mean": 1.0, "median": 1.0, "std": 0.0, "min": 1.0, "max": 1.0}
    summary = Summary.from_dict({**old, "p90": 1.0, "p95": 1.0, "p99": 1.0})
    assert summary.median_ci is None and summary.flags == () and summary.median_relative_precision is None


def test_cv_and_iqr_by_hand() -> None:
    values = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
    assert coefficient_of_variation(values) == pytest.approx(math.sqrt(32 / 7) / 5)
    assert interquartile_range(values) == pytest.approx(5.5 - 4.0)  # Q1 at position 1.75, Q3 at 5.25
    with pytest.raises(ValueError, match="zero-mean"):
        coefficient_of_variation([-1.0, 1.0])


def test_bootstrap_of_two_values_by_hand() -> None:
    # resampled medians of {0, 1}: 0 (p = 1/4), 0.5 (1/2), 1 (1/4): the 2.5% and 97.5% points are 0 and 1
    assert bootstrap_intervals([0.0, 1.0], (50.0,), resamples=2000) == [(0.0, 1.0)]
    assert bootstrap_intervals([3.0] * 5, (50.0, 99.0)) == [(3.0, 3.0), (3.0, 3.0)]
    assert relative_half_width((99.0, 101.0), 100.0) == pytest.approx(0.01)


def test_bootstrap_is_seeded_and_narrows_with_more_samples() -> None:
    import random

    rng = random.Random(1)
    small = [rng.gauss(100.0, 10.0) for _ in range(20)]
    large = [rng.gauss(100.0, 10.0) for _ in range(2000)]
    assert bootstrap_intervals(small, (50.0,)) == bootstrap_intervals(small, (50.0,))
    assert bootstrap_intervals(small, (50.0,), seed=1) != bootstrap_intervals(small, (50.0,), seed=2)
    (low_small, high_small), (low_large, high_large) = (
        bootstrap_intervals(values, (50.0,))[0] for values in (small, large)
    )
    assert low_large < 100.0 < high_large
    # the median's standard error falls as 1 / sqrt(n): 100x the samples, about a tenth of the width
    assert 0.05 < (high_large - low_large) / (high_small - low_small) < 0.2


def test_flags_from_dispersion_trend_and_outliers() -> None:
    from dataclasses import replace

    quiet = Summary("ms", 5, 100.0, 100.0, 1.0, 90.0, 110.0, 1.0, 1.0, 1.0, iqr=10.0, outliers=0, trend_p_value=0.05)
    assert quiet.flags == ()  # IQR / median exactly 10% and p exactly 0.05 are not flagged
    assert replace(quiet, iqr=10.1).flags == ("high_dispersion",)
    assert replace(quiet, trend_p_value=0.049).flags == ("trend",)
    assert replace(quiet, outliers=2).flags == ("outliers",)


def _pooled_quantiles_by_sorting(
    values: np.ndarray, labels: np.ndarray, counts: np.ndarray, qs: list[float]
) -> list[np.ndarray]:
    """The definition: build each pooled sample, sort it, interpolate."""
    rows = []
    for row in counts:
        pooled = np.sort(np.repeat(values, row[labels]))
        rows.append(percentiles(pooled, qs))
    return [np.array([row[i] for row in rows]) for i in range(len(qs))]


@pytest.mark.parametrize("work_elements", [None, 64])  # 64: the chunked path for many small clusters
def test_cluster_quantiles_equal_sorting_each_pooled_sample(
    work_elements: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tokbench.analysis import stats

    if work_elements is not None:
        monkeypatch.setattr(stats, "_WORK_ELEMENTS", work_elements)
    rng = np.random.default_rng(3)
    values = np.round(rng.gamma(2.0, 10.0, size=700), 1)  # rounded: ties across clusters
    labels = rng.integers(0, 40, size=700)
    counts = resample_counts(40, 25, seed=5)
    qs = [0.0, 2.5, 50.0, 90.0, 99.0, 100.0]
    fast = weighted_quantiles(values, labels, counts, qs)
    slow = _pooled_quantiles_by_sorting(values, labels, counts, qs)
    for got, want in zip(fast, slow, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_cluster_bootstrap_widens_the_interval_of_correlated_values() -> None:
    # 30 calls of 200 gaps each: each call has its own level (machine state), the gaps of a call are close to it
    rng = np.random.default_rng(4)
    levels = rng.normal(4.0, 0.2, size=30)
    gaps = np.concatenate([level + rng.normal(0.0, 0.02, size=200) for level in levels])
    calls = np.repeat(np.arange(30), 200)
    (independent,) = bootstrap_intervals(gaps, (50.0,))
    (clustered,) = bootstrap_intervals(gaps, (50.0,), clusters=calls)
    width = lambda interval: interval[1] - interval[0]  # noqa: E731
    # 30 independent levels, not 6000 independent gaps: the width is that of a median of ~30 values
    assert width(clustered) > 4 * width(independent)
    (of_levels,) = bootstrap_intervals(levels, (50.0,))
    assert 0.5 < width(clustered) / width(of_levels) < 2.0
    # seeded: the same samples and clusters give the same interval
    assert bootstrap_intervals(gaps, (50.0,), clusters=calls) == [clustered]
    with pytest.raises(ValueError, match="one label per value"):
        bootstrap_intervals(gaps, (50.0,), clusters=calls[:-1])

"""Descriptive statistics against hand-computed answers."""

from __future__ import annotations

import math

import pytest

from tokbench.stats import Summary, mean, median, percentile, sample_std, summarize


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
    )
    assert Summary.from_dict(summary.to_dict()) == summary

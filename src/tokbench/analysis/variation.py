"""How much one config's results vary between processes, against the variation inside each process."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokbench.analysis.stats import mean, median, sample_std
from tokbench.schema.results import BenchmarkResult


@dataclass(frozen=True)
class RepeatVariation:
    """Between-process vs within-process variation of one metric's per-process medians.

    ``between_cv``: sample std of the per-process medians / their mean. ``within_cv``: the mean over
    processes of each process's own std / mean across its iterations.
    """

    metric: str
    processes: int
    mean_of_medians: float
    between_cv: float
    within_cv: float


def repeat_variation(results: Sequence[BenchmarkResult], metric: str = "e2e_latency_ms") -> RepeatVariation | None:
    """Variation over the ``ok`` results of one config run in separate processes (None below two)."""
    summaries = [result.summary[metric] for result in results if result.ok and metric in result.summary]
    if len(summaries) < 2:
        return None
    medians = [summary.median for summary in summaries]
    centre = mean(medians)
    within = [summary.std / summary.mean for summary in summaries if summary.mean]
    return RepeatVariation(
        metric=metric,
        processes=len(summaries),
        mean_of_medians=centre,
        between_cv=sample_std(medians) / centre if centre else 0.0,
        within_cv=mean(within) if within else 0.0,
    )


@dataclass(frozen=True)
class ProcessMedians:
    """One metric over the ``ok`` processes (repeats) of a config: the median of their medians and their range."""

    metric: str
    processes: int
    median: float
    low: float  # the lowest per-process median
    high: float  # the highest


def median_over_processes(results: Sequence[BenchmarkResult], metric: str) -> ProcessMedians | None:
    """The median over processes of each process's median (how a sweep with ``--repeat`` reports a config)."""
    medians = sorted(result.summary[metric].median for result in results if result.ok and metric in result.summary)
    if not medians:
        return None
    return ProcessMedians(metric, len(medians), median(medians), medians[0], medians[-1])


def flag_counts(results: Sequence[BenchmarkResult]) -> dict[str, int]:
    """How many of ``results`` carry each run-level flag (host_busy, precision_not_reached...), first seen first."""
    counts: dict[str, int] = {}
    for result in results:
        for flag in result.flags:
            counts[flag] = counts.get(flag, 0) + 1
    return counts

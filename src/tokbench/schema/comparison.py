"""The result of ``tokbench compare``: typed, frozen, JSON-serializable records (no torch).

``ComparisonReport.to_dict`` is what ``--format json`` prints and what an HTML report reads back with
``ComparisonReport.from_dict``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tokbench.schema.serde import Record

# 2: the process is the unit between sides (a test record per metric, optional intervals, hypotheses, power
# for the decision rule, geometric-mean intervals); version 1 comparisons still load (their extra fields default).
COMPARISON_SCHEMA_VERSION = 2


@dataclass(frozen=True)
class OutputFingerprint(Record):
    """The token ids the validation call generated (row 0) and their hash: same hash, same output."""

    token_ids: tuple[int, ...]
    sha256: str
    source: str = "validation call, row 0"

    @classmethod
    def of(cls, token_ids: tuple[int, ...] | list[int]) -> OutputFingerprint:
        ids = tuple(int(token) for token in token_ids)
        digest = hashlib.sha256(",".join(map(str, ids)).encode("ascii")).hexdigest()
        return cls(token_ids=ids, sha256=digest)


@dataclass(frozen=True)
class StatisticRatio(Record):
    """contender ÷ baseline of one statistic of a metric, with its interval (None: no interval can be given,
    e.g. one process a side, or too few calls for a tail). ``median``: the ratio of the geometric means of
    the per-process medians with the process-level t interval; p90 / p99: quantiles of the calls with a
    distribution-free order-statistic interval. Version 1 stored bootstrap percentile intervals here."""

    statistic: str  # "median", "p90", "p99"
    baseline: float
    contender: float
    ratio: float
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class ProcessTestRecord(Record):
    """How a metric's ratio, interval and p-value were computed: the process is the unit between sides."""

    method: str  # "welch" | "paired" | "duet" | "stored variance" | "none"
    baseline_processes: int
    contender_processes: int
    df: float | None = None  # degrees of freedom of the t distribution
    se_log: float | None = None  # standard error of log(ratio)
    variance_source: str = ""  # stored variance: the stored repeats it came from; none: why there is no test


@dataclass(frozen=True)
class MetricComparison(Record):
    metric: str
    unit: str
    higher_is_better: bool
    baseline_calls: int
    contender_calls: int
    median: StatisticRatio
    tails: tuple[StatisticRatio, ...]  # p90, p99: reported, not part of the verdict
    p_value: float | None  # the hypothesis' two-sided p (version 1: Mann-Whitney U on calls); None: no test
    p_adjusted: float | None  # Holm-adjusted over every (workload, hypothesis) of the comparison
    verdict: str
    verdict_reason: str
    detectable_change: float | None  # smallest change this rule detects with 80% power; None: unknown
    calls_for_1pct: int | None = None  # version 1 only (calls cannot shrink the between-process variation)
    hypothesis: str = ""  # the hypothesis it belongs to (a latency and its reciprocal throughput are one)
    test: ProcessTestRecord | None = None  # None in version 1
    processes_for_target: int | None = None  # processes (pairs) a side to detect the report's power_target


@dataclass(frozen=True)
class EnvironmentDifference(Record):
    field: str
    baseline: str
    contender: str


@dataclass(frozen=True)
class WorkloadComparison(Record):
    SERIALIZED_PROPERTIES: ClassVar[tuple[str, ...]] = ("verdict",)  # derived, for readers of the JSON

    workload_key: str
    name: str  # the baseline's config name (untrusted: neutralize before display)
    device: str
    baseline_runs: tuple[str, ...]  # where each result (one process) came from (file or store run)
    contender_runs: tuple[str, ...]
    metrics: tuple[MetricComparison, ...]
    outputs_changed: bool | None  # None: a side has no fingerprint
    environment_differences: tuple[EnvironmentDifference, ...]
    warnings: tuple[str, ...] = ()
    ignored_fields: tuple[str, ...] = ()  # config fields that differ and were ignored for matching (--ignore)
    # "paired" (adjacent A/B pairs of tokbench ab), "duet pairs" (ab --duet) or "independent" (version 1: pooled calls)
    design: str = ""

    @property
    def verdict(self) -> str:
        """slower if any metric is slower, else faster if any is faster, else inconclusive / no change."""
        verdicts = {metric.verdict for metric in self.metrics}
        for verdict in ("slower", "faster", "inconclusive", "below min-effect"):
            if verdict in verdicts:
                return verdict
        return "no significant change"


@dataclass(frozen=True)
class UnmatchedRun(Record):
    side: str  # "baseline" or "contender"
    origin: str
    name: str
    workload_key: str
    status: str
    why: str


@dataclass(frozen=True)
class GeometricMeanSummary(Record):
    metric: str
    workloads: int
    ratio: float  # geometric mean of the per-workload median ratios
    ci_low: float | None = None  # t interval of the mean log ratio (each workload's own error); None: a
    ci_high: float | None = None  # workload without a test, or a version 1 comparison


@dataclass(frozen=True)
class SequentialLook(Record):
    """Where ``tokbench ab`` stopped: the look (pair count) and the share of alpha this look spent."""

    look: int
    looks: int  # planned looks (pair counts) up to --max-pairs
    pairs: int
    alpha_spent: float  # the alpha of this look; the looks' alphas sum to the overall alpha
    overall_alpha: float
    stopped_because: str


@dataclass(frozen=True)
class ComparisonReport(Record):
    SERIALIZED_PROPERTIES: ClassVar[tuple[str, ...]] = ("regressed",)  # derived, for readers of the JSON

    baseline_source: str
    contender_source: str
    min_effect: float
    alpha: float
    correction: str  # "holm"
    resamples: int  # version 1: bootstrap resamples; 0 since (t intervals, no resampling)
    seed: int
    workloads: tuple[WorkloadComparison, ...]
    unmatched: tuple[UnmatchedRun, ...]
    geometric_means: tuple[GeometricMeanSummary, ...]
    warnings: tuple[str, ...] = ()
    schema_version: int = COMPARISON_SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)
    hypotheses: int = 0  # the size of Holm's family (version 1: 0, every metric was a test)
    power_target: float | None = None  # the change processes_for_target is computed for
    sequential: SequentialLook | None = None  # tokbench ab: where it stopped

    @property
    def regressed(self) -> bool:
        """Whether any workload has a metric significantly slower beyond the minimum effect."""
        return any(metric.verdict == "slower" for workload in self.workloads for metric in workload.metrics)

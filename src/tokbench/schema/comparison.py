"""The result of ``tokbench compare``: typed, frozen, JSON-serializable records (no torch).

``ComparisonReport.to_dict`` is what ``--format json`` prints and what an HTML report reads back with
``ComparisonReport.from_dict``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tokbench.schema.serde import Record

COMPARISON_SCHEMA_VERSION = 1


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
    """contender ÷ baseline of one statistic of a metric, with its 95% bootstrap CI (whole calls resampled)."""

    statistic: str  # "median", "p90", "p99"
    baseline: float
    contender: float
    ratio: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class MetricComparison(Record):
    metric: str
    unit: str
    higher_is_better: bool
    baseline_calls: int
    contender_calls: int
    median: StatisticRatio
    tails: tuple[StatisticRatio, ...]  # p90, p99: reported, not part of the verdict
    p_value: float  # Mann-Whitney U on one value per call, two-sided
    p_adjusted: float  # Holm-adjusted over every (workload, metric) of the comparison
    verdict: str
    verdict_reason: str
    detectable_change: float  # smallest change detectable at 80% power (two-sided alpha)
    calls_for_1pct: int  # calls per side a 1% change would need


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
    baseline_runs: tuple[str, ...]  # where each pooled result came from (file or store run)
    contender_runs: tuple[str, ...]
    metrics: tuple[MetricComparison, ...]
    outputs_changed: bool | None  # None: a side has no fingerprint
    environment_differences: tuple[EnvironmentDifference, ...]
    warnings: tuple[str, ...] = ()
    ignored_fields: tuple[str, ...] = ()  # config fields that differ and were ignored for matching (--ignore)

    @property
    def verdict(self) -> str:
        """slower if any metric is slower, else faster if any is faster, else inconclusive / no change."""
        verdicts = {metric.verdict for metric in self.metrics}
        for verdict in ("slower", "faster", "inconclusive"):
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


@dataclass(frozen=True)
class ComparisonReport(Record):
    SERIALIZED_PROPERTIES: ClassVar[tuple[str, ...]] = ("regressed",)  # derived, for readers of the JSON

    baseline_source: str
    contender_source: str
    min_effect: float
    alpha: float
    correction: str  # "holm"
    resamples: int
    seed: int
    workloads: tuple[WorkloadComparison, ...]
    unmatched: tuple[UnmatchedRun, ...]
    geometric_means: tuple[GeometricMeanSummary, ...]
    warnings: tuple[str, ...] = ()
    schema_version: int = COMPARISON_SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def regressed(self) -> bool:
        """Whether any workload has a metric significantly slower beyond the minimum effect."""
        return any(metric.verdict == "slower" for workload in self.workloads for metric in workload.metrics)

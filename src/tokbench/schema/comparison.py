"""The result of ``tokbench compare``: typed, frozen, JSON-serializable records (no torch).

``ComparisonReport.to_dict`` is what ``--format json`` prints and what an HTML report reads back with
``ComparisonReport.from_dict``.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

COMPARISON_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class OutputFingerprint:
    """The token ids the validation call generated (row 0) and their hash: same hash, same output."""

    token_ids: tuple[int, ...]
    sha256: str
    source: str = "validation call, row 0"

    @classmethod
    def of(cls, token_ids: tuple[int, ...] | list[int]) -> OutputFingerprint:
        ids = tuple(int(token) for token in token_ids)
        digest = hashlib.sha256(",".join(map(str, ids)).encode("ascii")).hexdigest()
        return cls(token_ids=ids, sha256=digest)

    def to_dict(self) -> dict[str, Any]:
        return {"token_ids": list(self.token_ids), "sha256": self.sha256, "source": self.source}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OutputFingerprint:
        return cls(
            token_ids=tuple(int(token) for token in data["token_ids"]),
            sha256=str(data["sha256"]),
            source=str(data.get("source", "validation call, row 0")),
        )


@dataclass(frozen=True)
class StatisticRatio:
    """contender ÷ baseline of one statistic of a metric, with its 95% bootstrap CI (whole calls resampled)."""

    statistic: str  # "median", "p90", "p99"
    baseline: float
    contender: float
    ratio: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class MetricComparison:
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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricComparison:
        values = dict(data)
        values["median"] = StatisticRatio(**data["median"])
        values["tails"] = tuple(StatisticRatio(**tail) for tail in data["tails"])
        return cls(**values)


@dataclass(frozen=True)
class EnvironmentDifference:
    field: str
    baseline: str
    contender: str


@dataclass(frozen=True)
class WorkloadComparison:
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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkloadComparison:
        return cls(
            workload_key=data["workload_key"],
            name=data["name"],
            device=data["device"],
            baseline_runs=tuple(data["baseline_runs"]),
            contender_runs=tuple(data["contender_runs"]),
            metrics=tuple(MetricComparison.from_dict(metric) for metric in data["metrics"]),
            outputs_changed=data["outputs_changed"],
            environment_differences=tuple(EnvironmentDifference(**d) for d in data["environment_differences"]),
            warnings=tuple(data.get("warnings", ())),
            ignored_fields=tuple(data.get("ignored_fields", ())),
        )


@dataclass(frozen=True)
class UnmatchedRun:
    side: str  # "baseline" or "contender"
    origin: str
    name: str
    workload_key: str
    status: str
    why: str


@dataclass(frozen=True)
class GeometricMeanSummary:
    metric: str
    workloads: int
    ratio: float  # geometric mean of the per-workload median ratios


@dataclass(frozen=True)
class ComparisonReport:
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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for workload, record in zip(data["workloads"], self.workloads, strict=True):
            workload["verdict"] = record.verdict  # derived, for readers of the JSON
        data["regressed"] = self.regressed
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ComparisonReport:
        return cls(
            baseline_source=data["baseline_source"],
            contender_source=data["contender_source"],
            min_effect=float(data["min_effect"]),
            alpha=float(data["alpha"]),
            correction=data["correction"],
            resamples=int(data["resamples"]),
            seed=int(data["seed"]),
            workloads=tuple(
                WorkloadComparison.from_dict({k: v for k, v in w.items() if k != "verdict"}) for w in data["workloads"]
            ),
            unmatched=tuple(UnmatchedRun(**u) for u in data["unmatched"]),
            geometric_means=tuple(GeometricMeanSummary(**g) for g in data["geometric_means"]),
            warnings=tuple(data.get("warnings", ())),
            schema_version=int(data.get("schema_version", COMPARISON_SCHEMA_VERSION)),
            extra=dict(data.get("extra", {})),
        )

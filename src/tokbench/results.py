"""BenchmarkResult: everything one config's run produced, schema-versioned, raw data included.

Raw traces are kept so every summary can be recomputed (``recompute_summary``) and new metrics
derived later without re-running anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokbench.config import BenchmarkConfig
from tokbench.errors import ResultFormatError
from tokbench.fileio import atomic_write_text
from tokbench.metrics import METRIC_UNITS, metric_samples
from tokbench.records import DeviceWarmupReport, GenerationTrace, LoadTimings
from tokbench.stats import Summary, summarize

SCHEMA_VERSION = 1

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_SKIPPED = "skipped"
STATUSES = (STATUS_OK, STATUS_FAILED, STATUS_SKIPPED)


@dataclass(frozen=True)
class CompileRecord:
    """Whether torch.compile really ran: generate's compiled forward, and dynamo's graphs per phase."""

    requested: bool
    forward_compiled: bool
    graphs_before: int
    graphs_after_validation: int
    graphs_after_warmup: int
    graphs_after_measurement: int

    @property
    def compiled(self) -> bool:
        return self.forward_compiled and self.graphs_after_validation > self.graphs_before

    @property
    def recompiles_during_measurement(self) -> int:
        return self.graphs_after_measurement - self.graphs_after_warmup

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "forward_compiled": self.forward_compiled,
            "graphs_before": self.graphs_before,
            "graphs_after_validation": self.graphs_after_validation,
            "graphs_after_warmup": self.graphs_after_warmup,
            "graphs_after_measurement": self.graphs_after_measurement,
            "compiled": self.compiled,
            "recompiles_during_measurement": self.recompiles_during_measurement,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompileRecord:
        return cls(
            requested=bool(data["requested"]),
            forward_compiled=bool(data["forward_compiled"]),
            graphs_before=int(data["graphs_before"]),
            graphs_after_validation=int(data["graphs_after_validation"]),
            graphs_after_warmup=int(data["graphs_after_warmup"]),
            graphs_after_measurement=int(data["graphs_after_measurement"]),
        )


@dataclass(frozen=True)
class Phases:
    """Time spent outside the measured iterations: loading, warmups, the cold first call."""

    load: LoadTimings = field(default_factory=LoadTimings)
    device_warmup: DeviceWarmupReport | None = None
    cold_call: GenerationTrace | None = None  # the validation call: the cold-start figure, raw
    warmup_curve_ns: tuple[int, ...] = ()  # E2E latency of each untimed warmup iteration
    measurement_wall_ns: int | None = None
    compile: CompileRecord | None = None

    @property
    def cold_call_ns(self) -> int | None:
        """E2E latency of the validation call, the first generation after loading."""
        return self.cold_call.e2e_ns if self.cold_call else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "load": self.load.to_dict(),
            "device_warmup": self.device_warmup.to_dict() if self.device_warmup else None,
            "cold_call": self.cold_call.to_dict() if self.cold_call else None,
            "warmup_curve_ns": list(self.warmup_curve_ns),
            "measurement_wall_ns": self.measurement_wall_ns,
            "compile": self.compile.to_dict() if self.compile else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Phases:
        return cls(
            load=LoadTimings.from_dict(data["load"]),
            device_warmup=DeviceWarmupReport.from_dict(data["device_warmup"]) if data.get("device_warmup") else None,
            cold_call=GenerationTrace.from_dict(data["cold_call"]) if data.get("cold_call") else None,
            warmup_curve_ns=tuple(int(v) for v in data.get("warmup_curve_ns", ())),
            measurement_wall_ns=data.get("measurement_wall_ns"),
            compile=CompileRecord.from_dict(data["compile"]) if data.get("compile") else None,
        )


@dataclass(frozen=True)
class BenchmarkResult:
    config: BenchmarkConfig
    status: str
    reason: str = ""
    environment: dict[str, Any] = field(default_factory=dict)
    phases: Phases = field(default_factory=Phases)
    iterations: tuple[GenerationTrace, ...] = ()
    summary: dict[str, Summary] = field(default_factory=dict)
    effective_settings: dict[str, Any] = field(default_factory=dict)
    model_source: dict[str, str] = field(default_factory=dict)
    started_at: str = ""
    notes: tuple[str, ...] = ()  # things a reader must know that are not failures
    # How the result was produced when a launcher ran it (launcher, child pid, exit code, wall time,
    # stderr tail...): set by ``tokbench.launchers``, empty for a plain ``run``.
    launch: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def config_hash(self) -> str:
        return self.config.config_hash

    @property
    def sample_output(self) -> str:
        """Decoded text of row 0 of the validation call (what the model generated)."""
        return self.phases.cold_call.decoded_sample if self.phases.cold_call else ""

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "config": self.config.to_dict(),
            "config_hash": self.config_hash,
            "status": self.status,
            "reason": self.reason,
            "started_at": self.started_at,
            "notes": list(self.notes),
            "model_source": dict(self.model_source),
            "environment": self.environment,
            "effective_settings": self.effective_settings,
            "phases": self.phases.to_dict(),
            "summary": {name: summary.to_dict() for name, summary in self.summary.items()},
            "iterations": [trace.to_dict() for trace in self.iterations],
            "launch": dict(self.launch),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchmarkResult:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ResultFormatError(
                f"result schema_version {version!r} is not supported by this tokbench (reads {SCHEMA_VERSION}); "
                "upgrade tokbench to read newer results"
            )
        try:
            config = BenchmarkConfig.from_dict(data["config"])
            result = cls(
                config=config,
                status=data["status"],
                reason=data.get("reason", ""),
                environment=data.get("environment", {}),
                phases=Phases.from_dict(data["phases"]),
                iterations=tuple(GenerationTrace.from_dict(t) for t in data.get("iterations", ())),
                summary={name: Summary.from_dict(s) for name, s in data.get("summary", {}).items()},
                effective_settings=data.get("effective_settings", {}),
                model_source=data.get("model_source", {}),
                started_at=data.get("started_at", ""),
                notes=tuple(str(note) for note in data.get("notes", ())),
                launch=dict(data.get("launch") or {}),
            )
        except (KeyError, TypeError) as error:
            raise ResultFormatError(f"result is missing or has a malformed field: {error}") from error
        if data.get("config_hash") not in (None, result.config_hash):
            raise ResultFormatError(
                f"stored config_hash {data['config_hash']} does not match its config ({result.config_hash})"
            )
        return result


def summarize_traces(traces: tuple[GenerationTrace, ...] | list[GenerationTrace]) -> dict[str, Summary]:
    """The summary of every metric, computed from raw traces alone."""
    if not traces:
        return {}
    samples = metric_samples(traces)
    return {name: summarize(values, METRIC_UNITS[name]) for name, values in samples.items()}


def recompute_summary(result: BenchmarkResult) -> dict[str, Summary]:
    return summarize_traces(result.iterations)


def save_result(result: BenchmarkResult, path: str | Path) -> Path:
    """Write ``result`` as JSON atomically: a crash mid-write never leaves a truncated file."""
    return atomic_write_text(path, json.dumps(result.to_dict(), indent=1, allow_nan=False))


def load_result(path: str | Path) -> BenchmarkResult:
    source = Path(path)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ResultFormatError(f"{source} is not valid JSON: {error}") from error
    return BenchmarkResult.from_dict(data)

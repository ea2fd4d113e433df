"""BenchmarkResult: everything one config's run produced, schema-versioned, raw data included.

Raw traces are kept so every summary can be recomputed (``analysis.summarize.recompute_summary``) and new metrics
derived later without re-running anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokbench.analysis.efficiency import EfficiencyReport
from tokbench.analysis.stats import Summary
from tokbench.config import BenchmarkConfig
from tokbench.engine.policy import MeasurementRecord, WarmupRecord
from tokbench.errors import ResultFormatError
from tokbench.fileio import atomic_write_text
from tokbench.hardware.monitor import MemoryPeak, MonitorRecord
from tokbench.schema.records import (
    ContinuousBatchingSetup,
    DeviceWarmupReport,
    GenerationTrace,
    LoadTimings,
    ProfileRecord,
)

SCHEMA_VERSION = 2
# Versions this tokbench reads. Every field added since version 1 is optional, so older results load as they were
# written (and keep their config_hash: see config._V1_FIELDS).
READABLE_SCHEMA_VERSIONS = (1, 2)

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_SKIPPED = "skipped"
STATUSES = (STATUS_OK, STATUS_FAILED, STATUS_SKIPPED)

FLAG_NO_STEADY_STATE = "no_steady_state"
FLAG_PRECISION_NOT_REACHED = "precision_not_reached"
FLAG_RECOMPILED_WHILE_MEASURING = "recompiled_while_measuring"


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
    # the continuous-batching manager's creation + warmup, done once before the validation call
    continuous_batching_setup: ContinuousBatchingSetup | None = None
    warmup: WarmupRecord | None = None  # the warmup policy's record: steady state reached or not, and why
    measurement: MeasurementRecord | None = None  # the measurement policy's record: stop reason, precision

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
            "continuous_batching_setup": (
                self.continuous_batching_setup.to_dict() if self.continuous_batching_setup else None
            ),
            "warmup": self.warmup.to_dict() if self.warmup else None,
            "measurement": self.measurement.to_dict() if self.measurement else None,
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
            continuous_batching_setup=(
                ContinuousBatchingSetup.from_dict(data["continuous_batching_setup"])
                if data.get("continuous_batching_setup")
                else None
            ),
            warmup=WarmupRecord.from_dict(data["warmup"]) if data.get("warmup") else None,
            measurement=MeasurementRecord.from_dict(data["measurement"]) if data.get("measurement") else None,
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
    # Int4 quantization: {"report": QuantizationReport dict, "tuning": TuningReport dict}; empty if off.
    quantization: dict[str, Any] = field(default_factory=dict)
    profile: ProfileRecord | None = None  # the profiled generation after measurement (profile_tokens > 0)
    monitor: MonitorRecord | None = None  # hardware samples over the measured iterations
    memory_peaks: tuple[MemoryPeak, ...] = ()  # one per measured iteration
    efficiency: EfficiencyReport | None = None  # memory breakdown, MBU / MFU, energy per token
    # How the result was produced when a launcher ran it (launcher, child pid, exit code, wall time,
    # stderr tail...): set by ``tokbench.sweep.launchers``, empty for a plain ``run``.
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

    @property
    def flags(self) -> tuple[str, ...]:
        """Run-level warnings: no steady state before measuring, precision target missed, recompiles."""
        flags = []
        warmup, measurement, compile_record = self.phases.warmup, self.phases.measurement, self.phases.compile
        if warmup is not None and warmup.policy == "auto" and not warmup.steady_state:
            flags.append(FLAG_NO_STEADY_STATE)
        if measurement is not None and measurement.target_met is False:
            flags.append(FLAG_PRECISION_NOT_REACHED)
        if compile_record is not None and compile_record.recompiles_during_measurement > 0:
            flags.append(FLAG_RECOMPILED_WHILE_MEASURING)
        return tuple(flags)

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
            "quantization": self.quantization,
            "phases": self.phases.to_dict(),
            "flags": list(self.flags),  # derived; written for readers of the JSON, ignored on load
            "summary": {name: summary.to_dict() for name, summary in self.summary.items()},
            "iterations": [trace.to_dict() for trace in self.iterations],
            "profile": self.profile.to_dict() if self.profile else None,
            "monitor": self.monitor.to_dict() if self.monitor else None,
            "memory_peaks": [peak.to_dict() for peak in self.memory_peaks],
            "efficiency": self.efficiency.to_dict() if self.efficiency else None,
            "launch": dict(self.launch),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchmarkResult:
        version = data.get("schema_version")
        if version not in READABLE_SCHEMA_VERSIONS:
            raise ResultFormatError(
                f"result schema_version {version!r} is not supported by this tokbench (reads "
                f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))}); upgrade tokbench to read newer results"
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
                quantization=data.get("quantization", {}),
                profile=ProfileRecord.from_dict(data["profile"]) if data.get("profile") else None,
                monitor=MonitorRecord.from_dict(data["monitor"]) if data.get("monitor") else None,
                memory_peaks=tuple(MemoryPeak.from_dict(p) for p in data.get("memory_peaks", ())),
                efficiency=EfficiencyReport.from_dict(data["efficiency"]) if data.get("efficiency") else None,
                launch=dict(data.get("launch") or {}),
            )
        except (KeyError, TypeError) as error:
            raise ResultFormatError(f"result is missing or has a malformed field: {error}") from error
        if data.get("config_hash") not in (None, result.config_hash):
            raise ResultFormatError(
                f"stored config_hash {data['config_hash']} does not match its config ({result.config_hash})"
            )
        return result


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

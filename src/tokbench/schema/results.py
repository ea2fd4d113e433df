"""BenchmarkResult: everything one config's run produced, schema-versioned, raw data included.

Raw traces are kept so every summary can be recomputed (``tokbench.analysis.summarize.recompute_summary``)
and new metrics derived later without re-running anything. Reading a result imports no torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tokbench.config import BenchmarkConfig
from tokbench.errors import ResultFormatError
from tokbench.fileio import UnsafeFileError, atomic_write_text, parse_json_text, read_regular_text
from tokbench.schema.checks import check_numbers, check_traces
from tokbench.schema.comparison import OutputFingerprint
from tokbench.schema.efficiency import EfficiencyReport
from tokbench.schema.environment import EnvironmentRecord
from tokbench.schema.interference import InterferenceRecord
from tokbench.schema.monitor import MemoryPeak, MonitorRecord
from tokbench.schema.policy import MeasurementRecord, WarmupRecord
from tokbench.schema.quant import QuantizationRecord
from tokbench.schema.records import (
    ContinuousBatchingSetup,
    DeviceWarmupReport,
    EffectiveSettings,
    GenerationTrace,
    LaunchRecord,
    LibraryMessage,
    LoadTimings,
    ModelSource,
    ProfileRecord,
)
from tokbench.schema.serde import Record, from_data
from tokbench.schema.serving import ServingRecord
from tokbench.schema.summary import Summary
from tokbench.schema.workload import result_workload_key, serving_config_hash, serving_workload_key

SCHEMA_VERSION = 2
# Versions this tokbench reads. Every field added since version 1 is optional, so older results load as they were
# written (and keep their config_hash: see FieldSpec.introduced in config.py).
READABLE_SCHEMA_VERSIONS = (1, 2)

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_SKIPPED = "skipped"
# Stopped by SIGINT / SIGTERM: keeps what was measured, never counts as ok (a --resume runs it again).
STATUS_INTERRUPTED = "interrupted"
STATUSES = (STATUS_OK, STATUS_FAILED, STATUS_SKIPPED, STATUS_INTERRUPTED)

FLAG_NO_STEADY_STATE = "no_steady_state"
FLAG_PRECISION_NOT_REACHED = "precision_not_reached"
FLAG_RECOMPILED_WHILE_MEASURING = "recompiled_while_measuring"
FLAG_CLIENT_BEHIND_SCHEDULE = "client_behind_schedule"  # a serving run's open loop sent late beyond its budget


@dataclass(frozen=True)
class CompileRecord(Record):
    """Whether torch.compile really ran: generate's compiled forward, and dynamo's graphs per phase."""

    requested: bool
    forward_compiled: bool
    graphs_before: int
    graphs_after_validation: int
    graphs_after_warmup: int
    graphs_after_measurement: int

    SERIALIZED_PROPERTIES: ClassVar[tuple[str, ...]] = ("compiled", "recompiles_during_measurement")

    @property
    def compiled(self) -> bool:
        return self.forward_compiled and self.graphs_after_validation > self.graphs_before

    @property
    def recompiles_during_measurement(self) -> int:
        return self.graphs_after_measurement - self.graphs_after_warmup


@dataclass(frozen=True)
class StageRecords(Record):
    """What each stage of the run recorded besides the raw iterations: load timings, device warmup, the
    backend's setup, the cold first call, the warmup curve and policy record, the measurement policy's record
    and wall time, the compile record. Serialized under the result's ``phases`` key (unchanged)."""

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


# The old name (it said "phases" but held the measurement record too); kept for code written against it.
Phases = StageRecords


@dataclass(frozen=True)
class BenchmarkResult(Record):
    config: BenchmarkConfig
    status: str
    reason: str = ""
    environment: EnvironmentRecord = field(default_factory=EnvironmentRecord)
    phases: StageRecords = field(default_factory=StageRecords)
    iterations: tuple[GenerationTrace, ...] = ()
    summary: dict[str, Summary] = field(default_factory=dict)
    effective_settings: EffectiveSettings = field(default_factory=EffectiveSettings)
    model_source: ModelSource = field(default_factory=ModelSource)
    started_at: str = ""
    notes: tuple[str, ...] = ()  # things a reader must know that are not failures
    # Int4 quantization: what quantizing did and what tuning decided; empty if off.
    quantization: QuantizationRecord = field(default_factory=QuantizationRecord)
    profile: ProfileRecord | None = None  # the profiled generation after measurement (profile_tokens > 0)
    monitor: MonitorRecord | None = None  # hardware samples over the measured iterations
    memory_peaks: tuple[MemoryPeak, ...] = ()  # one per measured iteration
    efficiency: EfficiencyReport | None = None  # memory breakdown, MBU / MFU, energy per token
    # How the result was produced when a launcher ran it (launcher, child pid, exit code, wall time,
    # stderr tail...): set by ``tokbench.sweep.launchers``, empty for a plain ``run``.
    launch: LaunchRecord = field(default_factory=LaunchRecord)
    # The validation call's generated token ids and their hash: `tokbench compare` flags changed outputs.
    output_fingerprint: OutputFingerprint | None = None
    # What else the machine did while measuring (other processes' CPU, steal, load, clocks): host_busy etc.
    interference: InterferenceRecord | None = None
    schema_version: int = SCHEMA_VERSION
    # What was measured, without how (config.workload_key on the resolved device kind): comparisons and
    # history match runs on it. Left empty, it is computed from the config and the run's device.
    workload_key: str = ""
    # A serving run (``tokbench serve-bench``): the load offered, the endpoint, every request's raw stamps. Its
    # iterations are blocks of requests; its config names the served model and the request shape.
    serving: ServingRecord | None = None
    # What the libraries logged or warned while this result was made, held back from the terminal (engine.quiet);
    # written only when there was something.
    library_output: tuple[LibraryMessage, ...] = ()

    # derived; written for readers of the JSON, checked (config_hash) or ignored (flags) on load
    SERIALIZED_PROPERTIES: ClassVar[tuple[str, ...]] = ("config_hash", "flags")
    SPARSE_FIELDS: ClassVar[tuple[str, ...]] = ("library_output",)
    # the order results have always been written in: identity and outcome first, bulky raw data last
    LEADING_KEYS: ClassVar[tuple[str, ...]] = (
        "schema_version", "config", "config_hash", "workload_key", "status", "reason", "started_at", "notes",
        "model_source", "environment", "effective_settings", "quantization", "phases", "flags", "summary", "serving",
        "iterations",
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if isinstance(self.launch, Mapping):  # launchers build the record field by field as a child runs
            object.__setattr__(self, "launch", LaunchRecord.from_dict(self.launch))
        if isinstance(self.environment, Mapping):  # as stored (a result built from parts of a stored one)
            object.__setattr__(self, "environment", EnvironmentRecord.from_dict(self.environment))
        # Derived, always: a copy with another config or device (dataclasses.replace) never keeps a stale key.
        key = result_workload_key(self.config, self.effective_settings, self.environment)
        if self.serving is not None:
            key = serving_workload_key(key, self.serving.settings)
        object.__setattr__(self, "workload_key", key)

    @property
    def config_hash(self) -> str:
        if self.serving is not None:
            return serving_config_hash(self.config.config_hash, self.serving.settings)
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
        """Run-level warnings: no steady state before measuring, precision target missed, recompiles, a busy
        machine or changed clocks while measuring (``interference``)."""
        flags = []
        warmup, measurement, compile_record = self.phases.warmup, self.phases.measurement, self.phases.compile
        if warmup is not None and warmup.policy == "auto" and not warmup.steady_state:
            flags.append(FLAG_NO_STEADY_STATE)
        if measurement is not None and measurement.target_met is False:
            flags.append(FLAG_PRECISION_NOT_REACHED)
        if compile_record is not None and compile_record.recompiles_during_measurement > 0:
            flags.append(FLAG_RECOMPILED_WHILE_MEASURING)
        if self.serving is not None and not self.serving.valid:
            flags.append(FLAG_CLIENT_BEHIND_SCHEDULE)
        if self.interference is not None:
            flags.extend(self.interference.flags)
        return tuple(flags)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchmarkResult:
        """A result from its JSON data, any readable schema version; its stored config_hash must match."""
        if not isinstance(data, Mapping):
            raise ResultFormatError(
                f"expected a JSON object (a tokbench result), got {_json_kind(data)}: this is not a tokbench result"
            )
        if "schema_version" not in data or "config" not in data or "status" not in data:
            missing = [key for key in ("schema_version", "config", "status") if key not in data]
            raise ResultFormatError(f"missing {', '.join(missing)}: this JSON object is not a tokbench result")
        version = data.get("schema_version")
        if version not in READABLE_SCHEMA_VERSIONS:
            raise ResultFormatError(
                f"result schema_version {version!r} is not supported by this tokbench (reads "
                f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))}); upgrade tokbench to read newer results"
            )
        try:
            # A field the stored config lacks did not exist then: it takes its introduced default (a config
            # without grad_mode ran under no_grad), so the stored config hash still matches.
            config = BenchmarkConfig.from_stored_dict(data["config"])
            payload = {key: value for key, value in data.items() if key != "schema_version"}
            payload["config"] = config.to_dict()
            effective_settings = dict(data.get("effective_settings") or {})
            if "workload_key" not in data and effective_settings:  # written before grad_mode: under no_grad
                effective_settings.setdefault("grad_mode", config.grad_mode)
                payload["effective_settings"] = effective_settings
            # loaded means upgraded: the result is this version's (older fields got their defaults)
            check_numbers(payload)
            result = from_data(cls, payload, "result")
            check_traces(result.iterations, result.status, shared_stamps=result.serving is not None)
            if result.phases.cold_call is not None:
                check_traces(
                    (result.phases.cold_call,), result.status, "phases.cold_call", result.serving is not None
                )
        except ResultFormatError:
            raise
        except (KeyError, TypeError, ValueError) as error:  # BenchmarkConfig.from_dict's and the records' own errors
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
    """A result file read back and checked (``schema.checks``); ``ResultFormatError`` names the file and the field.

    Only a regular file of bounded size is read (``fileio.read_regular_text``); ``OSError`` passes through.
    """
    source = Path(path)
    return result_from_data(read_result_data(source), str(source))


def read_result_data(path: Path) -> Any:
    """The parsed JSON of a result file: a regular file of bounded size, of bounded nesting."""
    try:
        return parse_json_text(read_regular_text(path), str(path))
    except UnsafeFileError as error:
        raise ResultFormatError(str(error)) from error
    except UnicodeDecodeError as error:
        raise ResultFormatError(f"{path} is not a result JSON (not UTF-8 text: {error.reason})") from error
    except json.JSONDecodeError as error:
        raise ResultFormatError(f"{path} is not valid JSON: {error}") from error


def result_from_data(data: Any, where: str) -> BenchmarkResult:
    """``BenchmarkResult.from_dict`` with ``where`` (a file, a store row) named in its error."""
    try:
        return BenchmarkResult.from_dict(data)
    except ResultFormatError as error:
        raise ResultFormatError(f"{where}: {error}") from error


def _json_kind(data: object) -> str:
    kinds = {list: "a list", str: "a string", bool: "true or false", int: "a number", float: "a number"}
    return "null" if data is None else kinds.get(type(data), type(data).__name__)

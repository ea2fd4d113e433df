"""The numbers an HTML report shows, extracted from results: plain typed records, no plotting, no torch.

Everything the report reads from a ``BenchmarkResult`` goes through this module, so a change of the data
model is repointed here only. Figures (``report.figures``) and the page (``report.html``) take these
records; they never look into a result themselves.

Inputs (``load_inputs``): a result JSON, a folder of result JSONs, or a results store (SQLite) with a
selector (sweep id, run ids, a started-at time range). A store is opened read-only: reading never
writes, not even a schema migration.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokbench.analysis.metrics import (
    METRIC_LABELS,
    METRIC_UNITS,
    NS_PER_MS,
    NS_PER_S,
    decode_throughput,
    distinct_requests,
    overall_throughput,
    request_ttft_ns,
)
from tokbench.analysis.samples import sample_values
from tokbench.analysis.stats import mean, median, percentile, sample_std
from tokbench.analysis.variation import flag_counts, median_over_processes
from tokbench.errors import ResultFormatError, StoreError, TokbenchError
from tokbench.fileio import file_kind
from tokbench.results.selectors import SelectorError, time_filter
from tokbench.results.store import ResultStore, is_sqlite_file
from tokbench.schema.results import STATUS_OK, BenchmarkResult, read_result_data, result_from_data

# Config fields that tell sweep series apart (one line per combination in "throughput vs batch size").
SERIES_FIELDS = (
    "model",
    "attn_implementation",
    "dtype",
    "compile_mode",
    "quantization",
    "continuous_batching",
    "kernels",
    "static_cache",
    "sequence_length",
    "new_tokens",
    "device",
)


class ReportError(TokbenchError):
    """A report cannot be made as asked (a missing optional library...); the message says how to fix it."""


class ReportInputError(ReportError):
    """An input of ``tokbench report`` cannot be read or selects nothing; the message says how to fix it."""


# --- inputs -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportInput:
    """One result to report and where it came from (a file, or a store row with its sweep)."""

    result: BenchmarkResult
    source: str
    run_id: int | None = None
    sweep_id: str | None = None
    repeat_index: int = 0


@dataclass(frozen=True)
class StoreSelector:
    """Which stored runs to report: all of them, or those of a sweep, of run ids, or started in a range.

    ``since`` / ``until`` are instants (``results.selectors.parse_time_range``: ISO 8601 with ``T`` or a space,
    UTC unless an offset is given), inclusive, each covering the whole unit it names (a date: that day).
    """

    sweep_id: str | None = None
    run_ids: tuple[int, ...] = ()
    since: str | None = None
    until: str | None = None

    @property
    def empty(self) -> bool:
        return self.sweep_id is None and not self.run_ids and self.empty_time

    @property
    def empty_time(self) -> bool:
        return self.since is None and self.until is None


def is_store_file(path: Path) -> bool:
    return is_sqlite_file(path)


@dataclass(frozen=True)
class ReportSources:
    """What the inputs hold: results (files, folders, stores) and comparisons (``tokbench compare`` JSON)."""

    results: tuple[ReportInput, ...]
    comparisons: tuple[ComparisonData, ...] = ()
    skipped: tuple[str, ...] = ()  # files of input folders that are neither results nor comparisons
    inputs: tuple[str, ...] = ()  # every file read (an --output must never be one of them)


def load_sources(paths: Sequence[str | Path], selector: StoreSelector | None = None) -> ReportSources:
    """Every result and comparison named by ``paths``, in the order given; folders sorted by name."""
    selector = selector or StoreSelector()
    inputs: list[ReportInput] = []
    comparisons: list[ComparisonData] = []
    skipped: list[str] = []
    read: list[str] = []
    stores = 0
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = _load_folder(path, inputs, comparisons, skipped)
            read.extend(found)
            if not found:
                raise ReportInputError(f"{path} holds no result .json files; pass a result file, folder or store")
        elif path.is_file() and is_store_file(path):
            stores += 1
            inputs.extend(load_store(path, selector))
            read.append(str(path))
        elif path.is_file():
            _load_file(path, inputs, comparisons)
            read.append(str(path))
        elif path.exists():
            kind = file_kind(path)
            raise ReportInputError(f"{path} is {kind}; pass a result .json, a folder of them, or a store .db")
        else:
            raise ReportInputError(f"{path} does not exist; pass a result .json, a folder of them, or a store .db")
    if not selector.empty and not stores:
        raise ReportInputError("--sweep / --run / --since / --until select runs of a store: pass a store .db file")
    if not inputs and not comparisons:
        raise ReportInputError("nothing to report: the inputs hold no results")
    return ReportSources(tuple(inputs), tuple(comparisons), tuple(skipped), tuple(read))


def _load_folder(
    folder: Path, inputs: list[ReportInput], comparisons: list[ComparisonData], skipped: list[str]
) -> list[str]:
    """The folder's results and comparisons (its own ``*.json``, sorted by name); any other JSON, special file
    or unreadable file is skipped, as ``tokbench compare`` skips it. Returns the files read."""
    read = []
    for file in sorted(p for p in folder.iterdir() if p.suffix == ".json"):
        try:
            data = read_result_data(file) if file.is_file() else None  # a FIFO or device is never opened
        except (ResultFormatError, OSError):
            data = None
        if isinstance(data, dict) and (is_comparison_dict(data) or {"schema_version", "config", "status"} <= set(data)):
            _add_data(data, file, inputs, comparisons)
            read.append(str(file))
        else:
            skipped.append(str(file))
    return read


def load_inputs(paths: Sequence[str | Path], selector: StoreSelector | None = None) -> list[ReportInput]:
    """The results named by ``paths`` (comparisons left out)."""
    results = load_sources(paths, selector).results
    if not results:
        raise ReportInputError("nothing to report: the inputs hold no results")
    return list(results)


def _load_file(path: Path, inputs: list[ReportInput], comparisons: list[ComparisonData]) -> None:
    try:
        data = read_result_data(path)
    except ResultFormatError as error:
        raise ReportInputError(str(error)) from error
    except OSError as error:
        raise ReportInputError(f"{path} cannot be read: {error.strerror}") from error
    _add_data(data, path, inputs, comparisons)


def _add_data(data: Any, path: Path, inputs: list[ReportInput], comparisons: list[ComparisonData]) -> None:
    try:
        if isinstance(data, dict) and is_comparison_dict(data):
            comparisons.append(comparison_data(data, str(path)))
        else:
            inputs.append(ReportInput(result=result_from_data(data, str(path)), source=str(path)))
    except ResultFormatError as error:
        raise ReportInputError(str(error) if str(error).startswith(str(path)) else f"{path}: {error}") from error


def load_store(path: Path, selector: StoreSelector) -> list[ReportInput]:
    """The selected runs of a store, oldest first. ``ResultStore(read_only=True)`` refuses another
    application's database and a damaged one, and changes nothing in the file (no schema upgrade)."""
    try:
        inside = time_filter(selector.since, selector.until)  # instants, parsed: never compared as text
    except SelectorError as error:
        raise ReportInputError(str(error).replace("since=", "--since ").replace("until=", "--until ")) from error
    with ResultStore(path, read_only=True) as store:
        runs = [
            run
            for run in store.runs(sweep_id=selector.sweep_id)
            if (not selector.run_ids or run.run_id in selector.run_ids)
            and (selector.empty_time or inside(run.started_at))
        ]
        if not runs:
            raise ReportInputError(
                f"no stored run of {path} matches the selection; `tokbench history --db {path}` lists the runs"
            )
        inputs = []
        for run, data in zip(runs, store.result_dicts(runs), strict=True):
            try:
                result = BenchmarkResult.from_dict(data)
            except ResultFormatError as error:
                raise StoreError(f"run {run.run_id} in {path} cannot be read: {error}") from error
            inputs.append(
                ReportInput(
                    result=result,
                    source=f"{path} run {run.run_id}",
                    run_id=run.run_id,
                    sweep_id=run.sweep_id,
                    repeat_index=run.repeat_index,
                )
            )
    return inputs


# --- one run ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SummaryRow:
    """One metric's statistics, as the result's summary holds them."""

    metric: str
    label: str
    unit: str
    count: int
    median: float
    ci_low: float | None
    ci_high: float | None
    mean: float
    std: float
    min: float
    p90: float
    p95: float
    p99: float
    max: float
    trend_p_value: float | None
    flags: tuple[str, ...]


@dataclass(frozen=True)
class PositionLatency:
    """Per generated position i (2..N): the gap t_i − t_(i−1) over every measured request, in ms."""

    positions: tuple[int, ...]
    median_ms: tuple[float, ...]
    p10_ms: tuple[float, ...]
    p90_ms: tuple[float, ...]
    min_ms: tuple[float, ...]
    max_ms: tuple[float, ...]
    requests: int  # samples per position (distinct requests over the measured iterations)


@dataclass(frozen=True)
class WarmupCurve:
    """The cold call and each warmup iteration's E2E (ms), with the steady-state verdict and recompiles."""

    cold_call_ms: float | None
    e2e_ms: tuple[float, ...]
    policy: str
    stop_reason: str
    steady_state: bool | None
    steady_from: int | None  # 1-based warmup iteration where the windows the test passed on begin
    compiled_in: tuple[int, ...]  # 1-based warmup iterations during which dynamo compiled graphs
    shift: float | None
    allowed_shift: float | None


@dataclass(frozen=True)
class MeasuredIterations:
    """Each measured call in order: E2E, first-request TTFT, decode and overall tok/s; trend p-values."""

    e2e_ms: tuple[float, ...]
    ttft_ms: tuple[float, ...]
    decode_tok_s: tuple[float, ...]
    overall_tok_s: tuple[float, ...]
    e2e_trend_p_value: float | None
    policy: str
    stop_reason: str
    relative_precision: float | None
    target_relative_precision: float | None
    recompiles: int | None


@dataclass(frozen=True)
class MonitorSeries:
    """One monitored quantity: seconds since the measurement started, values in ``unit``."""

    backend: str
    column: str
    unit: str
    seconds: tuple[float, ...]
    values: tuple[float | None, ...]


@dataclass(frozen=True)
class MonitorData:
    interval_ms: int
    window_s: float
    iteration_spans_s: tuple[tuple[float, float], ...]  # each measured call's [t0, end], same time axis
    series: tuple[MonitorSeries, ...]
    statuses: tuple[tuple[str, str], ...]  # (backend, status): why a backend has no samples


@dataclass(frozen=True)
class MemoryData:
    weight_bytes: int
    kv_cache_bytes: int
    kv_cache_positions: int
    beyond_bytes: int | None
    peak_bytes: int | None
    peak_source: str
    peaks_per_iteration: tuple[int | None, ...]


@dataclass(frozen=True)
class EfficiencyData:
    mbu: float | None
    mfu: float | None
    decode_bandwidth_bytes_s: float | None
    peak_bandwidth_bytes_s: float | None
    prefill_flops_s: float | None
    peak_flops_s: float | None
    peak_source: str
    peak_unavailable: str
    energy_per_token_j: float | None
    energy_status: str
    notes: tuple[str, ...]


@dataclass(frozen=True)
class RunData:
    """Everything one run's page shows."""

    title: str
    model: str
    status: str
    reason: str
    source: str
    config_hash: str
    started_at: str
    config: dict[str, Any]
    effective_settings: dict[str, Any]
    environment: dict[str, Any]
    flags: tuple[str, ...]
    notes: tuple[str, ...]
    summary: tuple[SummaryRow, ...]
    machine: str  # the interference line (busy or quiet while measuring), "" when not assessed
    samples: dict[str, tuple[float, ...]]  # metric -> samples (TTFT, ITL, E2E distributions)
    positions: PositionLatency | None
    warmup: WarmupCurve | None
    iterations: MeasuredIterations | None
    monitor: MonitorData | None
    memory: MemoryData | None
    efficiency: EfficiencyData | None


def run_data(item: ReportInput) -> RunData:
    result = item.result
    traces = result.iterations
    samples = sample_values(traces) if traces else {}
    return RunData(
        title=result.config.name,
        model=result.config.model,
        status=result.status,
        reason=result.reason,
        source=item.source,
        config_hash=result.config_hash,
        started_at=result.started_at,
        config=result.config.to_dict(),
        effective_settings=result.effective_settings.to_dict(),
        environment=result.environment.to_dict(),
        flags=result.flags,
        notes=result.notes,
        summary=summary_rows(result),
        machine=result.interference.summary_line() if result.interference is not None else "",
        samples={name: tuple(values) for name, values in samples.items() if name in ("ttft_ms", "itl_ms",
                                                                                     "e2e_latency_ms")},
        positions=position_latency(result),
        warmup=warmup_curve(result),
        iterations=measured_iterations(result),
        monitor=monitor_data(result),
        memory=memory_data(result),
        efficiency=efficiency_data(result),
    )  # fmt: skip


def summary_rows(result: BenchmarkResult) -> tuple[SummaryRow, ...]:
    rows = []
    for metric in METRIC_UNITS:
        summary = result.summary.get(metric)
        if summary is None:
            continue
        low, high = summary.median_ci if summary.median_ci is not None else (None, None)
        rows.append(
            SummaryRow(
                metric=metric,
                label=METRIC_LABELS.get(metric, metric),
                unit=summary.unit,
                count=summary.count,
                median=summary.median,
                ci_low=low,
                ci_high=high,
                mean=summary.mean,
                std=summary.std,
                min=summary.min,
                p90=summary.p90,
                p95=summary.p95,
                p99=summary.p99,
                max=summary.max,
                trend_p_value=summary.trend_p_value,
                flags=summary.flags,
            )
        )
    return tuple(rows)


def position_latency(result: BenchmarkResult) -> PositionLatency | None:
    """Gap of each generated position over every distinct measured request: does decode slow down?"""
    gaps_by_position: dict[int, list[float]] = {}
    requests = 0
    for trace in result.iterations:
        for row in distinct_requests(trace):
            stamps = trace.token_timestamps_ns[row]
            requests += 1
            for index in range(1, len(stamps)):
                gaps_by_position.setdefault(index + 1, []).append((stamps[index] - stamps[index - 1]) / NS_PER_MS)
    if not gaps_by_position:
        return None
    positions = tuple(sorted(gaps_by_position))
    columns = [gaps_by_position[p] for p in positions]
    return PositionLatency(
        positions=positions,
        median_ms=tuple(median(v) for v in columns),
        p10_ms=tuple(percentile(v, 10) for v in columns),
        p90_ms=tuple(percentile(v, 90) for v in columns),
        min_ms=tuple(min(v) for v in columns),
        max_ms=tuple(max(v) for v in columns),
        requests=requests,
    )


def warmup_curve(result: BenchmarkResult) -> WarmupCurve | None:
    phases = result.phases
    record = phases.warmup
    if not phases.warmup_curve_ns and phases.cold_call is None:
        return None
    steady_from = None
    if record is not None and record.steady_state and record.window:
        steady_from = max(1, record.iterations - 2 * record.window + 1)
    return WarmupCurve(
        cold_call_ms=phases.cold_call_ns / NS_PER_MS if phases.cold_call_ns is not None else None,
        e2e_ms=tuple(v / NS_PER_MS for v in phases.warmup_curve_ns),
        policy=record.policy if record else "",
        stop_reason=record.stop_reason if record else "",
        steady_state=record.steady_state if record else None,
        steady_from=steady_from,
        compiled_in=tuple(i + 1 for i in record.compiled_in) if record else (),
        shift=record.shift if record else None,
        allowed_shift=record.allowed_shift if record else None,
    )


def measured_iterations(result: BenchmarkResult) -> MeasuredIterations | None:
    traces = result.iterations
    if not traces:
        return None
    record = result.phases.measurement
    e2e = result.summary.get("e2e_latency_ms")
    compile_record = result.phases.compile
    return MeasuredIterations(
        e2e_ms=tuple(t.e2e_ns / NS_PER_MS for t in traces),
        ttft_ms=tuple(request_ttft_ns(t, 0) / NS_PER_MS for t in traces),
        decode_tok_s=tuple(decode_throughput(t) for t in traces),
        overall_tok_s=tuple(overall_throughput(t) for t in traces),
        e2e_trend_p_value=e2e.trend_p_value if e2e else None,
        policy=record.policy if record else "",
        stop_reason=record.stop_reason if record else "",
        relative_precision=record.relative_precision if record else None,
        target_relative_precision=record.target_relative_precision if record else None,
        recompiles=compile_record.recompiles_during_measurement if compile_record and compile_record.requested
        else None,
    )  # fmt: skip


_UNIT_SUFFIXES = (("_percent", "%"), ("_bytes", "MiB"), ("_w", "W"), ("_mhz", "MHz"), ("_c", "°C"), ("_mj", "J"))


def column_unit(column: str) -> str:
    return next((unit for suffix, unit in _UNIT_SUFFIXES if column.endswith(suffix)), "")


def _scaled(column: str, value: Any) -> float | None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return None
    if column.endswith("_bytes"):
        return value / 2**20
    if column.endswith("_mj"):
        return value / 1000
    return float(value)


def monitor_data(result: BenchmarkResult) -> MonitorData | None:
    record = result.monitor
    if record is None:
        return None
    start = record.start_ns
    series = []
    for backend in record.series:
        if not backend.timestamps_ns:
            continue
        seconds = tuple((t - start) / NS_PER_S for t in backend.timestamps_ns)
        for column, values in backend.columns.items():
            unit = column_unit(column)
            if not unit or column == "clock_event_reasons":
                continue
            scaled = tuple(_scaled(column, v) for v in values)
            if all(v is None for v in scaled):
                continue
            series.append(MonitorSeries(backend.backend, column, unit, seconds, scaled))
    return MonitorData(
        interval_ms=record.interval_ms,
        window_s=(record.end_ns - start) / NS_PER_S,
        iteration_spans_s=tuple(((t.t0_ns - start) / NS_PER_S, (t.end_ns - start) / NS_PER_S)
                                for t in result.iterations),
        series=tuple(series),
        statuses=tuple((s.backend, s.status) for s in record.series),
    )  # fmt: skip


def memory_data(result: BenchmarkResult) -> MemoryData | None:
    report = result.efficiency
    if report is None:
        return None
    return MemoryData(
        weight_bytes=report.weight_bytes,
        kv_cache_bytes=report.kv_cache_bytes_at_end,
        kv_cache_positions=report.kv_cache_positions_at_end,
        beyond_bytes=report.peak_beyond_weights_and_kv_bytes,
        peak_bytes=report.peak_memory_bytes,
        peak_source=report.peak_memory_source,
        peaks_per_iteration=tuple(p.peak_bytes for p in result.memory_peaks),
    )


def efficiency_data(result: BenchmarkResult) -> EfficiencyData | None:
    report = result.efficiency
    if report is None:
        return None
    peak = report.peak
    return EfficiencyData(
        mbu=report.mbu,
        mfu=report.mfu,
        decode_bandwidth_bytes_s=report.decode_bandwidth_bytes_s,
        peak_bandwidth_bytes_s=peak.memory_bandwidth_bytes_s if peak else None,
        prefill_flops_s=report.prefill_flops_s,
        peak_flops_s=peak.flops_s if peak else None,
        peak_source=_peak_source(peak.to_dict()) if peak else "",
        peak_unavailable=report.peak_unavailable,
        energy_per_token_j=report.energy_per_token_j,
        energy_status=report.energy_status,
        notes=report.notes,
    )


def _peak_source(peak: dict[str, Any]) -> str:
    parts = [str(peak[key]) for key in ("name", "kind", "source") if peak.get(key)]
    return "; ".join(parts)


# --- a sweep (several results) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigRow:
    """One config of a sweep: every process that ran it (repeats) folded into one row."""

    name: str
    model: str
    config_hash: str
    status: str  # "ok", "failed", "skipped", or "ok/failed" when repeats disagree
    reason: str
    run_ids: tuple[int, ...]
    sources: tuple[str, ...]
    batch_size: int
    series: str  # the varying config fields other than batch size: one line per value
    fields: dict[str, Any]  # the config fields shown as columns (series fields + batch size)
    processes: int  # ok results folded in
    medians: dict[str, float | None]  # median over processes of each process's median
    between_cv: float | None  # E2E: CV of the per-process medians (--repeat)
    within_cv: float | None  # E2E: mean per-process CV
    config: dict[str, Any]
    # E2E interval: one process, the 95% CI of its median; several, the range of their medians (see interval_kind)
    e2e_interval: tuple[float, float] | None = None
    interval_kind: str = ""  # "95% CI" | "process range"
    flags: dict[str, int] = field(default_factory=dict)  # run-level flag -> how many of its results carry it


@dataclass(frozen=True)
class SweepData:
    rows: tuple[ConfigRow, ...]
    varying_fields: tuple[str, ...]
    sweep_ids: tuple[str, ...]  # the sweeps the results came from; one id for every result: a sweep
    pareto: tuple[str, ...]  # config hashes on the latency–throughput front (lower E2E, higher tok/s)
    environments: tuple[dict[str, Any], ...]  # each distinct environment, first seen first
    repeated: bool
    counts: dict[str, int] = field(default_factory=dict)
    one_sweep: bool = False  # every result belongs to one sweep (else a collection of runs, titled so)


def _series_value(config: dict[str, Any], name: str) -> Any:
    value = config.get(name)
    return json.dumps(value) if isinstance(value, list | dict) else value


def sweep_data(items: Sequence[ReportInput]) -> SweepData:
    grouped: dict[str, list[ReportInput]] = {}
    for item in items:
        grouped.setdefault(item.result.config_hash, []).append(item)
    configs = {key: group[0].result.config.to_dict() for key, group in grouped.items()}
    varying = tuple(name for name in SERIES_FIELDS if len({repr(_series_value(c, name)) for c in configs.values()}) > 1)
    rows = [_config_row(group, configs[key], varying) for key, group in grouped.items()]
    environments: list[dict[str, Any]] = []
    for item in items:
        environment = _comparable_environment(item.result.environment.to_dict())
        if environment not in environments:
            environments.append(environment)
    counts: dict[str, int] = {}
    for item in items:
        counts[item.result.status] = counts.get(item.result.status, 0) + 1
    return SweepData(
        rows=tuple(rows),
        varying_fields=varying,
        sweep_ids=tuple(dict.fromkeys(item.sweep_id for item in items if item.sweep_id)),
        pareto=pareto_front(rows),
        environments=tuple(environments),
        repeated=any(row.processes > 1 for row in rows),
        counts=counts,
        one_sweep=len(sweeps := {item.sweep_id or item.result.launch.sweep_id for item in items}) == 1
        and None not in sweeps,
    )


def _comparable_environment(environment: dict[str, Any]) -> dict[str, Any]:
    # Timestamps and per-process fields differ between every run; the rest tells machines apart.
    return {key: value for key, value in environment.items() if key not in ("timestamp", "pid", "started_at")}


def _config_row(group: list[ReportInput], config: dict[str, Any], varying: tuple[str, ...]) -> ConfigRow:
    results = [item.result for item in group]
    ok = [r for r in results if r.status == STATUS_OK]
    statuses = sorted({r.status for r in results})
    medians: dict[str, float | None] = {}
    for metric in METRIC_UNITS:
        values = [r.summary[metric].median for r in ok if metric in r.summary]
        medians[metric] = median(values) if values else None
    between = within = None
    e2e = [r.summary["e2e_latency_ms"] for r in ok if "e2e_latency_ms" in r.summary]
    if len(e2e) >= 2:
        centre = mean([s.median for s in e2e])
        between = sample_std([s.median for s in e2e]) / centre if centre else None
        within = mean([s.std / s.mean for s in e2e if s.mean])
    interval, kind = _e2e_interval(ok)
    series_fields = [name for name in varying if name != "batch_size"]
    series = ", ".join(f"{_short_field(name)} {_series_value(config, name)}" for name in series_fields) or "all"
    shown = {name: _series_value(config, name) for name in (*series_fields, "batch_size")}
    return ConfigRow(
        name=results[0].config.name,
        model=results[0].config.model,
        config_hash=results[0].config_hash,
        status="/".join(statuses),
        reason="; ".join(dict.fromkeys(r.reason for r in results if r.reason)),
        run_ids=tuple(item.run_id for item in group if item.run_id is not None),
        sources=tuple(item.source for item in group),
        batch_size=results[0].config.batch_size,
        series=series,
        fields=shown,
        processes=len(ok),
        medians=medians,
        between_cv=between,
        within_cv=within,
        config=config,
        e2e_interval=interval,
        interval_kind=kind,
        flags=flag_counts(results),
    )


def _e2e_interval(ok: list[BenchmarkResult]) -> tuple[tuple[float, float] | None, str]:
    """One process: its median E2E's 95% CI; several: the range of their medians (between-process spread)."""
    if len(ok) == 1:
        summary = ok[0].summary.get("e2e_latency_ms")
        return (summary.median_ci if summary is not None else None), "95% CI"
    over = median_over_processes(ok, "e2e_latency_ms")
    return ((over.low, over.high) if over is not None else None), "process range"


_FIELD_SHORT = {"attn_implementation": "attn", "compile_mode": "compile", "continuous_batching": "cb",
                "quantization": "quant", "sequence_length": "prompt", "new_tokens": "new"}  # fmt: skip


def _short_field(name: str) -> str:
    return _FIELD_SHORT.get(name, name)


def pareto_front(
    rows: Iterable[ConfigRow],
    latency: str = "e2e_latency_ms",
    throughput: str = "overall_throughput_tok_s",
) -> tuple[str, ...]:
    """Config hashes no other config beats on both lower latency and higher throughput, by latency."""
    points = [
        (row.medians[latency], row.medians[throughput], row.config_hash)
        for row in rows
        if row.medians.get(latency) is not None and row.medians.get(throughput) is not None
    ]
    points.sort(key=lambda p: (p[0], -p[1]))
    front: list[str] = []
    best = -math.inf
    for _latency, value, key in points:
        if value > best:
            front.append(key)
            best = value
    return tuple(front)


# --- a comparison (tokbench compare) ---------------------------------------------------------------------


@dataclass(frozen=True)
class ComparisonRow:
    """One workload × metric of a comparison: contender ÷ baseline of the median, its CI, test, verdict."""

    workload: str
    metric: str
    unit: str
    baseline: float
    contender: float
    ratio: float
    ci_low: float | None  # None: no interval (one process a side without a stored between-process variance)
    ci_high: float | None
    p_value: float | None
    p_adjusted: float | None
    verdict: str
    reason: str


@dataclass(frozen=True)
class ComparisonData:
    source: str
    baseline_source: str
    contender_source: str
    min_effect: float | None
    alpha: float | None
    rows: tuple[ComparisonRow, ...]
    warnings: tuple[str, ...] = ()


def is_comparison_dict(data: dict[str, Any]) -> bool:
    """A ``tokbench compare --format json`` record (``ComparisonReport.to_dict``), not a result."""
    return "workloads" in data and "baseline_source" in data and "config" not in data


def comparison_data(data: dict[str, Any], source: str) -> ComparisonData:
    """The rows of a comparison record: read from its JSON shape (workloads → metrics → median ratio and CI,
    p-values, verdict), so this module needs nothing but the JSON ``tokbench compare`` writes."""
    try:
        rows = []
        for workload in data["workloads"]:
            for metric in workload["metrics"]:
                ratio = metric["median"]
                rows.append(
                    ComparisonRow(
                        workload=str(workload.get("name") or workload.get("workload_key", "")),
                        metric=str(metric["metric"]),
                        unit=str(metric.get("unit", "")),
                        baseline=float(ratio["baseline"]),
                        contender=float(ratio["contender"]),
                        ratio=float(ratio["ratio"]),
                        ci_low=_optional_float(ratio.get("ci_low")),
                        ci_high=_optional_float(ratio.get("ci_high")),
                        p_value=_optional_float(metric.get("p_value")),
                        p_adjusted=_optional_float(metric.get("p_adjusted")),
                        verdict=str(metric.get("verdict", "")),
                        reason=str(metric.get("verdict_reason", "")),
                    )
                )
        return ComparisonData(
            source=source,
            baseline_source=str(data.get("baseline_source", "")),
            contender_source=str(data.get("contender_source", "")),
            min_effect=_optional_float(data.get("min_effect")),
            alpha=_optional_float(data.get("alpha")),
            rows=tuple(rows),
            warnings=_comparison_warnings(data),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ResultFormatError(f"comparison record is missing or has a malformed field: {error}") from error


def _comparison_warnings(data: dict[str, Any]) -> tuple[str, ...]:
    """Every warning the terminal prints: the comparison's, then each workload's (named), then what was not
    compared and why."""
    warnings = [str(w) for w in data.get("warnings", ())]
    for workload in data["workloads"]:
        name = str(workload.get("name") or workload.get("workload_key", ""))
        warnings.extend(f"{name}: {w}" for w in workload.get("warnings", ()))
    for run in data.get("unmatched", ()):
        warnings.append(f"not compared: {run.get('side', '')} {run.get('origin', '')}: {run.get('why', '')}")
    return tuple(warnings)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)

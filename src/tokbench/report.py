"""Terminal rendering of results: one readable table per result, built with rich."""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from tokbench.metrics import METRIC_UNITS, NS_PER_MS
from tokbench.results import STATUS_OK, BenchmarkResult

METRIC_LABELS = {
    "ttft_ms": "TTFT",
    "tpot_ms": "TPOT",
    "itl_ms": "ITL",
    "e2e_latency_ms": "E2E latency",
    "prefill_throughput_tok_s": "prefill throughput",
    "decode_throughput_tok_s": "decode throughput",
    "overall_throughput_tok_s": "overall throughput",
}
_STATISTIC_COLUMNS = ("median", "mean", "std", "min", "p90", "p95", "p99", "max")


def _format(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.1f}"
    if value >= 10:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _ms(value_ns: int | None) -> str:
    return "-" if value_ns is None else f"{value_ns / NS_PER_MS:,.1f} ms"


def _model_line(model: str, parameters: object, device: object) -> str:
    size = f" ({parameters:,} params)" if isinstance(parameters, int) else ""
    return f"model {model}{size} on {device}"


def header_lines(result: BenchmarkResult) -> list[str]:
    config = result.config
    effective = result.effective_settings
    compile_text = "off"
    record = result.phases.compile
    if config.compile_mode:
        state = "NOT compiled"
        if record is not None and record.compiled:
            state = f"compiled, {record.recompiles_during_measurement} recompiles while measuring"
        compile_text = f"{config.compile_mode} ({state})"
    lines = [
        f"{config.name}  [{result.status}]  config {result.config_hash}",
        _model_line(config.model, effective.get("parameters"), effective.get("device", config.device)),
        f"batch {config.batch_size} × prompt {config.sequence_length} → {config.new_tokens} new tokens; "
        f"dtype {config.dtype}; attention {config.attn_implementation}; "
        f"cache {'static' if config.static_cache else 'dynamic'}; compile {compile_text}",
    ]
    phases = result.phases
    if phases.cold_call_ns is not None:
        curve = ", ".join(_ms(v).removesuffix(" ms") for v in phases.warmup_curve_ns) or "none"
        lines.append(f"cold first call {_ms(phases.cold_call_ns)}; warmup E2E (ms): {curve}")
    load = phases.load
    lines.append(
        f"load: tokenizer {_ms(load.tokenizer_ns)}{' (cached)' if load.tokenizer_cached else ''}, "
        f"weights {_ms(load.weights_ns)}, to device {_ms(load.to_device_ns)}"
    )
    if result.reason:
        lines.append(f"reason: {result.reason}")
    lines.extend(f"note: {note}" for note in result.notes)
    return lines


def _bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(value) >= size:
            return f"{value / size:,.1f} {unit}"
    return f"{value:,.0f} B"


def _rate(value: float, unit: str) -> str:
    for prefix, size in (("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if value >= size:
            return f"{value / size:,.1f} {prefix}{unit}"
    return f"{value:,.0f} {unit}"


def monitoring_lines(result: BenchmarkResult) -> list[str]:
    """A few lines: what was sampled, memory breakdown, MBU / MFU against which peak, energy."""
    lines = []
    record = result.monitor
    if record is not None:
        parts = []
        for series in record.series:
            if not series.ok:
                parts.append(f"{series.backend} {series.status}")
                continue
            text = f"{series.backend} {len(series.timestamps_ns)} samples"
            if series.backend == "host":
                cpu = series.mean("process_cpu_percent")
                text += f", process CPU {cpu:.0f}%" if cpu is not None else ""
                text += f", RSS peak {_bytes(series.peak('rss_bytes'))}"
            else:
                for name, label, unit in (("gpu_util_percent", "util", "%"), ("power_w", "power", " W")):
                    mean = series.mean(name)
                    text += f", {label} {mean:.0f}{unit} mean" if mean is not None else ""
                text += f", memory peak {_bytes(series.peak('memory_used_bytes'))}"
            parts.append(text)
        window = (record.end_ns - record.start_ns) / NS_PER_MS
        lines.append(f"monitor every {record.interval_ms} ms over {window:,.0f} ms: " + "; ".join(parts))
    report = result.efficiency
    if report is not None:
        memory = (
            f"memory: weights {_bytes(report.weight_bytes)}, KV cache {_bytes(report.kv_cache_bytes_at_end)} at end "
            f"({report.kv_cache_positions_at_end} positions)"
        )
        if report.peak_memory_bytes is not None:
            memory += (
                f", peak {_bytes(report.peak_memory_bytes)} ({report.peak_memory_source}), "
                f"{_bytes(report.peak_beyond_weights_and_kv_bytes)} beyond both"
            )
        lines.append(memory)
        if report.peak is not None:
            peak = report.peak
            efficiency = []
            if report.mbu is not None and report.decode_bandwidth_bytes_s is not None:
                efficiency.append(
                    f"decode MBU {report.mbu:.1%} ({_rate(report.decode_bandwidth_bytes_s, 'B/s')} of "
                    f"{_rate(peak.memory_bandwidth_bytes_s, 'B/s')})"
                )
            if report.mfu is not None and report.prefill_flops_s is not None:
                efficiency.append(
                    f"prefill MFU {report.mfu:.1%} ({_rate(report.prefill_flops_s, 'FLOP/s')} of "
                    f"{_rate(peak.flops_s, 'FLOP/s')} {peak.dtype})"
                )
            lines.append(f"efficiency: {'; '.join(efficiency)}; peak from {peak.kind}: {peak.source}")
        else:
            lines.append(f"efficiency: no MBU / MFU: {report.peak_unavailable}")
        if report.energy_per_token_j is not None and report.energy_j is not None:
            lines.append(f"energy: {report.energy_per_token_j * 1000:,.2f} mJ per token ({report.energy_j:,.1f} J)")
        else:
            lines.append(f"energy: {report.energy_status}")
    return lines


def result_table(result: BenchmarkResult) -> Table:
    table = Table(title=None, show_lines=False, header_style="bold")
    table.add_column("metric", no_wrap=True)
    table.add_column("unit")
    table.add_column("n", justify="right")
    for column in _STATISTIC_COLUMNS:
        table.add_column(column, justify="right")
    for name in METRIC_UNITS:
        summary = result.summary.get(name)
        if summary is None:
            continue
        table.add_row(
            METRIC_LABELS[name],
            summary.unit,
            str(summary.count),
            *(_format(getattr(summary, column)) for column in _STATISTIC_COLUMNS),
        )
    return table


def render(result: BenchmarkResult) -> Group:
    style = "green" if result.status == STATUS_OK else "yellow" if result.status == "skipped" else "red"
    parts: list[Text | Table] = [
        Text(line, style=style if i == 0 else "") for i, line in enumerate(header_lines(result))
    ]
    if result.summary:
        parts.append(result_table(result))
    parts.extend(Text(line) for line in monitoring_lines(result))
    return Group(*parts)


def make_console() -> Console:
    """A console wide enough for the table even when output is piped (rich assumes 80 there)."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 132))
    return console


def print_result(result: BenchmarkResult, console: Console | None = None) -> None:
    (console or make_console()).print(render(result))

"""Terminal rendering of results: one readable table per result, built with rich."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from tokbench.analysis import stats
from tokbench.analysis.metrics import METRIC_LABELS, METRIC_UNITS, NS_PER_MS, per_request_samples
from tokbench.analysis.stats import Summary
from tokbench.report.wording import known_to, precision_text
from tokbench.schema.results import STATUS_OK, BenchmarkResult
from tokbench.text import terminal_safe

if TYPE_CHECKING:
    from tokbench.results.store import StoredRun
    from tokbench.schema.quant import QuantizationMethodRecord
    from tokbench.schema.records import LaunchRecord

_STATISTIC_COLUMNS = ("median", "mean", "std", "min", "p90", "p95", "p99", "max")
# Compact names of Summary.flags for the table's last column.
FLAG_LABELS = {"high_dispersion": "disp", "trend": "trend", "outliers": "outl"}
FLAGS_LEGEND = (
    "±CI: 95% bootstrap CI half-width of the median ([low, high]: the interval, when wider than ±50%); flags: "
    "disp = IQR/median > 10%, trend = Mann-Kendall trend while measuring (p < 0.05), outl = N values beyond 3 IQR"
)


def format_figure(value: float) -> str:
    """A figure as tables print it: 3 decimals below 10, fewer above, thousands separated (results, compare)."""
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
    cache_text = "paged" if config.continuous_batching else "static" if config.static_cache else "dynamic"
    record = result.phases.compile
    if config.compile_mode:
        state = "NOT compiled"
        if record is not None and record.compiled:
            state = f"compiled, {record.recompiles_during_measurement} recompiles while measuring"
        compile_text = f"{config.compile_mode} ({state})"
    lengths = config.prompt_lengths
    prompt_text = (
        str(lengths[0])
        if len(set(lengths)) == 1
        else f"{min(lengths)}..{max(lengths)} (mean {sum(lengths) / len(lengths):.1f}, per request: "
        f"{', '.join(map(str, lengths))})"
    )
    lines = [
        f"{config.name}  [{result.status}]  config {result.config_hash}",
        _model_line(config.model, effective.parameters, effective.device or config.device),
        f"{'requests' if config.continuous_batching else 'batch'} {config.batch_size} × prompt {prompt_text} → "
        f"{config.new_tokens} new tokens; "
        f"dtype {config.dtype}; attention {config.attn_implementation}; "
        f"cache {cache_text}; compile {compile_text}",
    ]
    phases = result.phases
    if phases.cold_call_ns is not None:
        curve = ", ".join(_ms(v).removesuffix(" ms") for v in phases.warmup_curve_ns) or "none"
        lines.append(f"cold first call {_ms(phases.cold_call_ns)}; warmup E2E (ms): {curve}")
    load = phases.load
    lines.append(
        f"load: tokenizer {_ms(load.tokenizer_ns)}{' (cached)' if load.tokenizer_cached else ''}, "
        f"weights {_ms(load.weights_ns)}, to device {_ms(load.to_device_ns)}"
        + (f" (one load shared by {load.shared_by} configs of a sweep)" if load.shared else "")
    )
    lines.extend(_quantization_lines(result))
    setup = phases.continuous_batching_setup
    if setup is not None:
        resolved = setup.settings.get("resolved", {})
        lines.append(
            f"continuous batching: manager setup {_ms(setup.elapsed_ns)} (once, not in any iteration); attention "
            f"{setup.attn_implementation}; page {resolved.get('page_size')} tokens, {resolved.get('num_blocks')} "
            f"blocks, {resolved.get('max_batch_tokens')} tokens and {resolved.get('max_requests_per_batch')} "
            "requests per step"
        )
    profile = result.profile
    if profile is not None:
        top = ", ".join(
            f"{op.name} {(op.self_device_us or op.self_cpu_us) / 1000:.1f} ms" for op in profile.top_operators[:3]
        )
        lines.append(
            f"profile: {profile.tokens} tokens, {profile.forward_passes} forward passes, {_ms(profile.elapsed_ns)}; "
            f"trace {profile.trace_path}; top self time: {top}"
        )
    lines.extend(policy_lines(result))
    if result.reason:
        lines.append(f"reason: {result.reason}")
    lines.extend(f"note: {note}" for note in result.notes)
    return lines


def _quantization_lines(result: BenchmarkResult) -> list[str]:
    config = result.config
    method = result.quantization.method
    if config.quantization is None:
        return _prequantized_lines(method)
    load = result.phases.load
    if config.quantization != "int4":
        return _thirdparty_lines(result, method)
    text = f"{config.quantization} weight-only, group {config.group_size}: quantize {_ms(load.quantize_ns)}"
    tuning = result.quantization.tuning
    tuner_lines: list[str] = []
    if tuning is not None:
        from tokbench.report.tuning import confidence_counts, tuner_warning_lines

        hits, total = tuning.cache_hits, len(tuning.entries)
        picks = confidence_counts(tuning)
        picked = f"; picks {picks}" if picks else ""
        text += f", tune {_ms(load.tune_ns)} ({hits}/{total} shapes×M from cache{picked})"
        # The tuner's warnings (noise picks not cached, noisy timings, bad cache entries) reach the terminal too.
        tuner_lines = [f"tuner: {line}" for line in tuner_warning_lines(result.quantization.tuning_warnings or ())]
    lines = [text, *tuner_lines, *_fingerprint_lines(result)]
    settings = result.effective_settings.quantization
    kernels = settings.kernels if settings is not None else {}
    if kernels:
        lines.append(
            "int4 kernels: "
            + "; ".join(
                f"{shape} " + ", ".join(f"{phase} {label}" for phase, label in chosen.items())
                for shape, chosen in kernels.items()
            )
        )
    return lines


def _prequantized_lines(method: QuantizationMethodRecord | None) -> list[str]:
    if method is None or not method.prequantized:
        return []
    return [
        f"pre-quantized model ({method.method}, loaded as it is): {method.library} {method.library_version}, "
        f"quantized weights {_bytes(method.quantized_weight_bytes)}"
    ]


def _thirdparty_lines(result: BenchmarkResult, method: QuantizationMethodRecord | None) -> list[str]:
    """The method, its library and version, quantize time, quantized weight size, and the output fingerprint."""
    text = f"{result.config.quantization}"
    if method is not None:
        text += (
            f" via {method.library} {method.library_version} (transformers quantization_config): quantize "
            f"{_ms(result.phases.load.quantize_ns)} (weights read again and quantized while loading), quantized "
            f"weights {_bytes(method.quantized_weight_bytes)}"
        )
    return [text, *_fingerprint_lines(result)]


def _fingerprint_lines(result: BenchmarkResult) -> list[str]:
    fingerprint = result.quantization.fingerprint
    if fingerprint is None:
        return []
    first = fingerprint.first_divergence
    where = "identical" if first is None else f"first differs at token {first + 1}"
    return [
        f"output vs unquantized: {fingerprint.agreement:.0%} of {fingerprint.compared_tokens} greedy tokens "
        f"agree ({where}; row 0, same prompt)"
    ]


def _bytes(value: object) -> str:
    return f"{value / 2**20:,.1f} MiB" if isinstance(value, (int, float)) else "-"


def policy_lines(result: BenchmarkResult) -> list[str]:
    """How warmup and measurement ended: steady state or not, precision reached or not."""
    lines = []
    warmup, measurement = result.phases.warmup, result.phases.measurement
    if warmup is not None:
        if warmup.steady_state is None:
            verdict = "steady state not tested (too few iterations)"
        elif warmup.steady_state:
            verdict = "steady state reached"
        else:
            verdict = "NO STEADY STATE REACHED"
        shift = (
            "" if warmup.shift is None else f"; median shift {warmup.shift:.1%} (allowed {warmup.allowed_shift:.1%})"
        )
        compiled = f"; dynamo compiled in warmup iterations {list(warmup.compiled_in)}" if warmup.compiled_in else ""
        lines.append(
            f"warmup {warmup.policy}: {warmup.iterations} iterations, stopped by {warmup.stop_reason}; "
            f"{verdict}{shift}{compiled}"
        )
    if measurement is not None:
        e2e = result.summary.get("e2e_latency_ms")
        reached = known_to(measurement.relative_precision, e2e.median_ci if e2e is not None else None)
        target = ""
        if measurement.target_relative_precision is not None:
            met = "met" if measurement.target_met else "NOT MET"
            target = f" (target ±{measurement.target_relative_precision:.2%}: {met})"
        lines.append(
            f"measurement {measurement.policy}: {measurement.iterations} iterations, stopped by "
            f"{measurement.stop_reason}; {reached}{target} at 95% confidence"
        )
    if result.interference is not None:
        lines.append(result.interference.summary_line())
    if result.flags:
        lines.append(f"flags: {', '.join(result.flags)}")
    return lines


def busy_caption(result: BenchmarkResult) -> str | None:
    """A warning for a table of figures measured while the machine was busy or its clocks changed."""
    record = result.interference
    if record is None or not record.flags:
        return None
    parts = (("on a BUSY machine", record.host_busy), ("while clocks changed", record.clocks_changed))
    what = " and ".join(text for text, raised in parts if raised)
    flags = ", ".join(record.flags)
    return f"measured {what} ({flags}): these figures are not the machine's; see 'machine while measuring'"


def _flags_cell(summary: Summary) -> str:
    labels = []
    for flag in summary.flags:
        label = FLAG_LABELS.get(flag, flag)
        labels.append(f"{label}:{summary.outliers}" if flag == "outliers" else label)
    return " ".join(labels)


def _ci_cell(summary: Summary) -> str:
    return precision_text(summary.median_relative_precision, summary.median_ci)


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
    caption = busy_caption(result)
    table = Table(title=caption, title_style="bold red", show_lines=False, header_style="bold")
    table.add_column("metric", no_wrap=True)
    table.add_column("unit")
    table.add_column("n", justify="right")
    table.add_column("median", justify="right")
    table.add_column("±CI", justify="right")
    for column in _STATISTIC_COLUMNS[1:]:
        table.add_column(column, justify="right")
    table.add_column("flags")
    for name in METRIC_UNITS:
        summary = result.summary.get(name)
        if summary is None:
            continue
        table.add_row(
            METRIC_LABELS[name],
            summary.unit,
            str(summary.count),
            format_figure(summary.median),
            _ci_cell(summary),
            *(format_figure(getattr(summary, column)) for column in _STATISTIC_COLUMNS[1:]),
            _flags_cell(summary),
        )
    return table


def per_request_table(result: BenchmarkResult) -> Table | None:
    """Median TTFT / TPOT / E2E of each request over the measured iterations, when requests differ
    (continuous batching or varying prompt lengths); ``None`` for a plain uniform batch."""
    traces = result.iterations
    if not traces or (not traces[0].per_request_timing and len(set(traces[0].prompt_tokens)) == 1):
        return None
    table = Table(title="per request (median over iterations)", header_style="bold")
    for column in ("request", "prompt tokens", "TTFT ms", "TPOT ms", "E2E ms"):
        table.add_column(column, justify="right")
    for request in per_request_samples(traces):
        table.add_row(
            str(request.row),
            str(request.prompt_tokens),
            format_figure(stats.median(request.ttft_ms)),
            format_figure(stats.median(request.tpot_ms)),
            format_figure(stats.median(request.e2e_latency_ms)),
        )
    return table


def render(result: BenchmarkResult) -> Group:
    style = "green" if result.status == STATUS_OK else "yellow" if result.status == "skipped" else "red"
    parts: list[Text | Table] = [
        Text(terminal_safe(line), style=style if i == 0 else "") for i, line in enumerate(header_lines(result))
    ]
    if result.summary:
        parts.append(result_table(result))
        requests = per_request_table(result)
        if requests is not None:
            parts.append(requests)
        parts.append(Text(FLAGS_LEGEND, style="dim"))
    parts.extend(Text(terminal_safe(line)) for line in monitoring_lines(result))
    return Group(*parts)


class SafeConsole(Console):
    """A console for untrusted text: control characters are shown escaped, and text is never read as markup.

    Names, model ids, reasons and notes come from config files, Hub ids and other people's stores; an ESC
    sequence or a ``[link=...]`` in them must print as text, not drive the terminal.
    """

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(terminal_safe(text), **kwargs)


def make_console() -> Console:
    """A console wide enough for the table even when output is piped (rich assumes 80 there)."""
    options: dict[str, Any] = {"markup": False, "emoji": False, "highlight": False}
    console = SafeConsole(**options)
    if not console.is_terminal:
        console = SafeConsole(width=max(console.width, 150), **options)
    return console


def print_result(result: BenchmarkResult, console: Console | None = None) -> None:
    (console or make_console()).print(render(result))


# --- sweeps and the results store -------------------------------------------------------------------

STATUS_STYLES = {"ok": "green", "skipped": "yellow", "failed": "red", "interrupted": "magenta"}


def cell_text(value: float | None) -> str:
    return "-" if value is None else format_figure(value)


def shorten(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def launch_lines(result: BenchmarkResult) -> list[str]:
    """How a launcher ran the result: launcher, child pid and exit code, wall time, stderr tail."""
    launch = result.launch
    if not launch:
        return []
    parts = [f"launcher {launch.launcher}"]
    for key, label in (("pid", "pid"), ("exit_code", "exit code"), ("signal", "signal"), ("timeout_s", "timeout s")):
        if getattr(launch, key) is not None:
            parts.append(f"{label} {getattr(launch, key)}")
    if launch.wall_ns is not None:
        parts.append(f"wall {_ms(launch.wall_ns)}")
    if launch.compile_cache:
        parts.append(f"compile cache {launch.compile_cache}")
    if launch.threads is not None:
        parts.append(f"torch threads {launch.threads}")
    lines = ["; ".join(parts)]
    lines.extend(_where_lines(launch))
    tail = str(launch.stderr_tail or "").rstrip()
    if tail:
        lines.append("child output (tail):")
        lines.extend("  " + line for line in tail.splitlines()[-20:])
    return lines


def _where_lines(launch: LaunchRecord) -> list[str]:
    """Where an executor ran it: a Ray node and task, a local slot's GPUs, its place in a load group."""
    lines = []
    ray = launch.ray
    if ray is not None:
        if ray.error:
            lines.append(f"ray: the task died: {ray.error}")
        else:
            gpus = ",".join(ray.gpu_ids or ()) or "none"
            lines.append(f"ray: node {ray.node_ip} ({str(ray.node_id)[:12]}), task {ray.task_id}, GPUs {gpus}")
    if launch.slot is not None:
        gpus = ",".join(str(gpu) for gpu in launch.gpus or ()) or "none assigned"
        lines.append(f"local slot {launch.slot} of {launch.parallel}, GPUs {gpus}")
    group = launch.group
    if group is not None:
        lines.append(f"load group: config {group.index + 1} of {group.size}, worker {group.worker}")
    return lines


def history_table(runs: list[StoredRun]) -> Table:
    table = Table(header_style="bold")
    for column in ("run", "started", "model", "config", "hash", "status", "TTFT ms", "TPOT ms", "decode tok/s"):
        table.add_column(
            column,
            justify="right" if column in ("run", "TTFT ms", "TPOT ms", "decode tok/s") else "left",
            overflow="fold",
        )
    table.add_column("flags", overflow="fold")
    table.add_column("reason")
    for run in runs:
        table.add_row(
            str(run.run_id),
            run.started_at,
            run.model,
            run.name,
            run.config_hash,
            Text(terminal_safe(run.status), style=STATUS_STYLES.get(run.status, "")),
            cell_text(run.medians.get("ttft_ms")),
            cell_text(run.medians.get("tpot_ms")),
            cell_text(run.medians.get("decode_throughput_tok_s")),
            Text(terminal_safe(run_flags_text(run.flags)), style="bold red" if busy_flags(run.flags) else ""),
            shorten(run.reason, 70),
        )
    return table


def busy_flags(flags: tuple[str, ...]) -> tuple[str, ...]:
    """The flags that say the machine, not the config, shaped the figures (host_busy, clocks_changed)."""
    from tokbench.schema.interference import FLAG_CLOCKS_CHANGED, FLAG_HOST_BUSY

    return tuple(flag for flag in flags if flag in (FLAG_HOST_BUSY, FLAG_CLOCKS_CHANGED))


def run_flags_text(flags: tuple[str, ...]) -> str:
    """Run-level flags for a table cell, the machine's first (upper case: they concern every figure)."""
    loud = busy_flags(flags)
    return " ".join([*(flag.upper() for flag in loud), *(flag for flag in flags if flag not in loud)]) or "-"

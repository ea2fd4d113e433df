"""Terminal rendering of results: one readable table per result, built with rich."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from tokbench.metrics import METRIC_UNITS, NS_PER_MS
from tokbench.results import STATUS_OK, BenchmarkResult

if TYPE_CHECKING:
    from tokbench.store import StoredRun
    from tokbench.sweep import SweepPlan
    from tokbench.sweep_runner import SweepEntry, SweepOutcome

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
    return Group(*parts)


def make_console() -> Console:
    """A console wide enough for the table even when output is piped (rich assumes 80 there)."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 132))
    return console


def print_result(result: BenchmarkResult, console: Console | None = None) -> None:
    (console or make_console()).print(render(result))


# --- sweeps and the results store -------------------------------------------------------------------

_STATUS_STYLES = {"ok": "green", "skipped": "yellow", "failed": "red"}


def _cell(value: float | None) -> str:
    return "-" if value is None else _format(value)


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def launch_lines(result: BenchmarkResult) -> list[str]:
    """How a launcher ran the result: launcher, child pid and exit code, wall time, stderr tail."""
    launch = result.launch
    if not launch:
        return []
    parts = [f"launcher {launch.get('launcher')}"]
    for key, label in (("pid", "pid"), ("exit_code", "exit code"), ("signal", "signal"), ("timeout_s", "timeout s")):
        if launch.get(key) is not None:
            parts.append(f"{label} {launch[key]}")
    if launch.get("wall_ns") is not None:
        parts.append(f"wall {_ms(launch['wall_ns'])}")
    if launch.get("compile_cache"):
        parts.append(f"compile cache {launch['compile_cache']}")
    lines = ["; ".join(parts)]
    tail = str(launch.get("stderr_tail") or "").rstrip()
    if tail:
        lines.append("child output (tail):")
        lines.extend("  " + line for line in tail.splitlines()[-20:])
    return lines


def print_plan(plan: SweepPlan, console: Console) -> None:
    """The plan before anything runs: what will run, and what cannot (with the reason)."""
    console.print(
        f"sweep {plan.sweep_id}: {len(plan.runnable)} config(s) to run, {len(plan.skipped)} cannot run here"
        + (f", {plan.duplicates} duplicate(s) collapsed" if plan.duplicates else "")
        + (f", {len(plan.invalid)} invalid combination(s)" if plan.invalid else "")
    )
    for note in plan.notes:
        console.print(f"note: {note}")
    for skipped in plan.skipped:
        console.print(Text(f"skipped  {skipped.config.name}: {skipped.reason}", style="yellow"))
    for invalid in plan.invalid:
        console.print(Text(f"invalid  {invalid.fields}: {invalid.reason}", style="red"))


def sweep_summary_table(outcome: SweepOutcome) -> Table:
    """One row per config of a finished (or interrupted) sweep; repeats add between/within-process CV."""
    from tokbench.sweep_runner import repeat_variation

    table = Table(header_style="bold")
    for column in ("config", "status", "run ids", "TTFT ms", "TPOT ms", "E2E ms", "decode tok/s"):
        table.add_column(column, justify="left" if column in ("config", "status") else "right", overflow="fold")
    repeated = any(entry.repeat_index > 0 for entry in outcome.entries)
    if repeated:
        table.add_column("E2E CV between proc", justify="right")
        table.add_column("E2E CV within proc", justify="right")
    table.add_column("reason")
    grouped: dict[str, list[SweepEntry]] = {}
    for entry in outcome.entries:
        grouped.setdefault(entry.config.config_hash, []).append(entry)
    for entries in grouped.values():
        results = [entry.result for entry in entries if entry.result is not None]
        statuses = sorted({result.status for result in results}) or ["stored before (resumed)"]
        ok = [result for result in results if result.ok]
        last = ok[-1] if ok else (results[-1] if results else None)
        run_ids = ",".join(str(entry.run_id) for entry in entries if entry.run_id is not None)

        def median(metric: str, result: BenchmarkResult | None = last) -> str:
            summary = result.summary.get(metric) if result is not None else None
            return _cell(summary.median if summary else None)

        reasons = "; ".join(sorted({_short(result.reason) for result in results if result.reason}))
        status = "/".join(statuses)
        row = [
            entries[0].config.name,
            Text(status, style=_STATUS_STYLES.get(status, "")),
            run_ids or "-",
            median("ttft_ms"),
            median("tpot_ms"),
            median("e2e_latency_ms"),
            median("decode_throughput_tok_s"),
        ]
        if repeated:
            variation = repeat_variation(ok)
            row += (
                [f"{variation.between_cv:.1%}", f"{variation.within_cv:.1%}"] if variation is not None else ["-", "-"]
            )
        table.add_row(*row, reasons)
    return table


def history_table(runs: list[StoredRun]) -> Table:
    table = Table(header_style="bold")
    for column in ("run", "started", "model", "config", "hash", "status", "TTFT ms", "TPOT ms", "decode tok/s"):
        table.add_column(
            column,
            justify="right" if column in ("run", "TTFT ms", "TPOT ms", "decode tok/s") else "left",
            overflow="fold",
        )
    table.add_column("reason")
    for run in runs:
        table.add_row(
            str(run.run_id),
            run.started_at,
            run.model,
            run.name,
            run.config_hash,
            Text(run.status, style=_STATUS_STYLES.get(run.status, "")),
            _cell(run.medians.get("ttft_ms")),
            _cell(run.medians.get("tpot_ms")),
            _cell(run.medians.get("decode_throughput_tok_s")),
            _short(run.reason, 70),
        )
    return table

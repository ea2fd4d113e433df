"""``tokbench report``: one self-contained HTML file of runs, sweeps (and comparisons) with plots and tables.

The page is a list of ``Page``s (a sweep overview, one page per run, a comparison), each a list of
``Section``s: a plot (``report.figures.FigureSpec``) next to the table of its numbers. A new kind of page
(``tokbench compare``'s, say) is one more function that returns a ``Page``.

Self-contained and offline: plotly.js from the plotly Python package is inlined once; there is no external
URL in the page, and a Content-Security-Policy forbids loading anything (``default-src 'none'``), so the
page cannot reach a network even by mistake.

Escaping, three ways: text in the HTML goes through ``html.escape``; figure specs are embedded as JSON in
``<script type="application/json">`` blocks with ``<``, ``>``, ``&`` and the JavaScript line separators
written as ``\\uXXXX`` escapes (``</script>`` inside a string can never close the block); and strings inside
the specs are escaped for plotly's own pseudo-HTML by ``report.figures``.
"""

from __future__ import annotations

import base64
import functools
import gzip
import html
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tokbench.report.data import (
    METRIC_LABELS,
    ComparisonData,
    ConfigRow,
    ReportError,
    ReportInput,
    RunData,
    SweepData,
    run_data,
    sweep_data,
)
from tokbench.report.figures import FigureSpec, comparison_figures, run_figures, sweep_figures, to_plotly, write_pngs
from tokbench.report.page_model import Cell, Page, Report, Section, Table, fmt, mib, num, pct, txt
from tokbench.report.serving_page import serving_pages
from tokbench.report.wording import known_to
from tokbench.results.outputs import OutputLocationError, check_output_file, write_output_text
from tokbench.text import terminal_safe

DEFAULT_RUN_PAGES = 20
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; font-src data:"
)


# The page model (Cell, Table, Section, Filter, Page, Report, fmt, num, pct, txt, mib) lives in report.page_model.


# --- run pages ---------------------------------------------------------------------------------------------


def run_page(data: RunData, page_id: str, open_: bool = True) -> Page:
    """One run's page: its summary, then a section per figure the run has data for, then its settings."""
    figures = run_figures(data)
    sections: list[Section] = [
        Section("Summary", tables=(summary_table(data, table_id=f"{page_id}-summary"),), lines=_run_lines(data)),
        *_positions_sections(data, figures),
        *_distribution_sections(data, figures),
        *_warmup_sections(data, figures),
        *_iterations_sections(data, figures, page_id),
        *_monitor_sections(data, figures),
        *_memory_sections(data, figures),
        *_efficiency_sections(data, figures),
        *_settings_sections(data),
    ]
    subtitle = f"{data.model} · {data.status} · config {data.config_hash} · started {data.started_at or '-'}"
    return Page(page_id, data.title, subtitle, tuple(sections), open=open_, status=data.status)


def _positions_sections(data: RunData, figures: dict[str, FigureSpec]) -> list[Section]:
    """Per-token latency by generated position (does decode slow down as the KV cache grows?)."""
    if "positions" not in figures or data.positions is None:
        return []
    p = data.positions
    rows = tuple(
        (num(pos), num(p.median_ms[i]), num(p.p10_ms[i]), num(p.p90_ms[i]), num(p.min_ms[i]), num(p.max_ms[i]))
        for i, pos in enumerate(p.positions)
    )
    return [Section(
        "Per-token latency across generated positions", figures["positions"],
        (Table(("position", "median ms", "p10 ms", "p90 ms", "min ms", "max ms"), rows, scroll=True),),
        ("Does decode slow down as the KV cache grows? Each point: the gap to the previous token over every "
         "measured request at that position.",),
    )]  # fmt: skip


def _distribution_sections(data: RunData, figures: dict[str, FigureSpec]) -> list[Section]:
    """TTFT, ITL and E2E distributions, each with its summary row."""
    sections: list[Section] = []
    for metric in ("ttft_ms", "itl_ms", "e2e_latency_ms"):
        key = f"dist_{metric}"
        if key in figures:
            row = next((r for r in data.summary if r.metric == metric), None)
            tables = (summary_table(data, only=(metric,)),) if row else ()
            sections.append(Section(f"{METRIC_LABELS[metric]} distribution", figures[key], tables))
    return sections


def _warmup_sections(data: RunData, figures: dict[str, FigureSpec]) -> list[Section]:
    """The warmup curve and the warmup policy's verdict."""
    if "warmup" not in figures or data.warmup is None:
        return []
    w = data.warmup
    rows = []
    if w.cold_call_ms is not None:
        rows.append((num(0), num(w.cold_call_ms), txt("cold first call")))
    for i, value in enumerate(w.e2e_ms, start=1):
        notes = []
        if i in w.compiled_in:
            notes.append("dynamo compiled")
        if w.steady_from == i:
            notes.append("steady state from here")
        rows.append((num(i), num(value), txt(", ".join(notes))))
    verdict = "not tested" if w.steady_state is None else "reached" if w.steady_state else "NOT reached"
    lines = (f"warmup {w.policy or '?'}: {len(w.e2e_ms)} iterations, stopped by {w.stop_reason or '?'}; "
             f"steady state {verdict}"
             + (f"; median shift {w.shift:.1%} (allowed {w.allowed_shift:.1%})"
                if w.shift is not None and w.allowed_shift is not None else ""),)  # fmt: skip
    return [
        Section(
            "Warmup", figures["warmup"], (Table(("iteration", "E2E ms", "note"), tuple(rows), scroll=True),), lines
        )
    ]


def _iterations_sections(data: RunData, figures: dict[str, FigureSpec], page_id: str) -> list[Section]:
    """The measured iterations in order, with the stopping rule and the trend test."""
    if "iterations" not in figures or data.iterations is None:
        return []
    it = data.iterations
    rows = tuple(
        (num(i + 1), num(it.e2e_ms[i]), num(it.ttft_ms[i]), num(it.decode_tok_s[i]), num(it.overall_tok_s[i]))
        for i in range(len(it.e2e_ms))
    )
    trend = it.e2e_trend_p_value
    lines = [
        f"measurement {it.policy or '?'}: {len(it.e2e_ms)} iterations, stopped by {it.stop_reason or '?'}"
        + (f"; {known_to(it.relative_precision, _e2e_interval(data))}" if it.relative_precision is not None else "")
        + (f" (target ±{it.target_relative_precision:.2%})" if it.target_relative_precision is not None else ""),
        "E2E trend (Mann-Kendall): "
        + ("-" if trend is None else f"p = {trend:.3g}" + (" — TREND while measuring" if trend < 0.05 else
                                                            " — no trend")),
    ]  # fmt: skip
    if it.recompiles is not None:
        lines.append(f"dynamo recompiles while measuring: {it.recompiles}")
    return [Section(
        "Measured iterations in order", figures["iterations"],
        (Table(("iteration", "E2E ms", "TTFT ms (request 0)", "decode tok/s", "overall tok/s"), rows,
               scroll=True, table_id=f"{page_id}-iterations"),), tuple(lines),
    )]  # fmt: skip


def _monitor_sections(data: RunData, figures: dict[str, FigureSpec]) -> list[Section]:
    """One section per monitored unit (or the monitors' statuses when none sampled)."""
    if data.monitor is None:
        return []
    sections: list[Section] = []
    monitor = data.monitor
    statuses = tuple(f"{backend}: {status}" for backend, status in monitor.statuses)
    monitor_keys = [k for k in figures if k.startswith("monitor_")]
    for key in monitor_keys:
        spec = figures[key]
        unit = spec.y_title
        rows = []
        for s in monitor.series:
            if s.unit != unit:
                continue
            values = [v for v in s.values if v is not None]
            rows.append((txt(f"{s.backend} {s.column}"), num(len(values)), num(min(values)),
                         num(sum(values) / len(values)), num(max(values))))  # fmt: skip
        sections.append(Section(spec.title, spec, (Table(("series", "samples", "min", "mean", "max"),
                                                         tuple(rows)),), statuses))  # fmt: skip
    if not monitor_keys:
        sections.append(Section("Monitoring", lines=statuses))
    return sections


def _memory_sections(data: RunData, figures: dict[str, FigureSpec]) -> list[Section]:
    """Where the memory went: weights, KV cache, the rest, and the peak per iteration."""
    if data.memory is None:
        return []
    m = data.memory
    rows = [
        (txt("weights"), mib(m.weight_bytes)),
        (txt(f"KV cache at end ({m.kv_cache_positions} positions)"), mib(m.kv_cache_bytes)),
        (txt("beyond weights and KV cache"), mib(m.beyond_bytes)),
        (txt(f"peak ({m.peak_source or 'unknown'})"), mib(m.peak_bytes)),
    ]
    peaks = tuple((num(i + 1), mib(v)) for i, v in enumerate(m.peaks_per_iteration))
    return [Section("Memory", figures.get("memory"), (
        Table(("part", "size"), tuple(rows)),
        Table(("measured iteration", "peak"), peaks, caption="peak per measured iteration", scroll=True),
    ))]  # fmt: skip


def _efficiency_sections(data: RunData, figures: dict[str, FigureSpec]) -> list[Section]:
    """MBU / MFU against the device's limits, and energy per token."""
    if data.efficiency is None:
        return []
    e = data.efficiency
    rows = (
        (
            txt("decode MBU"),
            pct(e.mbu),
            _rate(e.decode_bandwidth_bytes_s, "B/s"),
            _rate(e.peak_bandwidth_bytes_s, "B/s"),
        ),
        (txt("prefill MFU"), pct(e.mfu), _rate(e.prefill_flops_s, "FLOP/s"), _rate(e.peak_flops_s, "FLOP/s")),
    )
    lines = [f"peak: {e.peak_source}" if e.peak_source else f"no peak: {e.peak_unavailable}"]
    lines.append("energy per token: " + (f"{e.energy_per_token_j:.4g} J" if e.energy_per_token_j is not None
                                         else e.energy_status or "-"))  # fmt: skip
    lines.extend(f"note: {note}" for note in e.notes)
    return [
        Section(
            "Efficiency (MBU / MFU)",
            figures.get("efficiency"),
            (Table(("figure", "utilization", "achieved", "device limit"), rows),),
            tuple(lines),
        )
    ]


def _settings_sections(data: RunData) -> list[Section]:
    """The exact config, the effective settings and the environment (closed by default)."""
    return [
        Section("Exact config", tables=(key_value_table(data.config, "config"),
                                        key_value_table(data.effective_settings, "effective settings")),
                open=False),
        Section("Environment", tables=(key_value_table(data.environment, "environment"),), open=False),
    ]  # fmt: skip


def _rate(value: float | None, unit: str) -> Cell:
    if value is None:
        return Cell("-")
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return Cell(f"{value / scale:.4g} {prefix}{unit}", value)
    return Cell(f"{value:.4g} {unit}", value)


def _e2e_interval(data: RunData) -> tuple[float, float] | None:
    row = next((r for r in data.summary if r.metric == "e2e_latency_ms"), None)
    return None if row is None or row.ci_low is None or row.ci_high is None else (row.ci_low, row.ci_high)


def _run_lines(data: RunData) -> tuple[str, ...]:
    lines = [f"source: {data.source}"]
    if data.reason:
        lines.append(f"reason: {data.reason}")
    if data.machine:
        lines.append(data.machine)
    if data.flags:
        lines.append("run flags: " + ", ".join(data.flags))
    lines.extend(f"note: {note}" for note in data.notes)
    return tuple(lines)


SUMMARY_COLUMNS = ("metric", "unit", "n", "median", "95% CI of median", "mean", "std", "min", "p90", "p95", "p99",
                   "max", "trend p", "flags")  # fmt: skip


def summary_table(data: RunData, only: Sequence[str] = (), table_id: str = "") -> Table:
    rows = []
    for r in data.summary:
        if only and r.metric not in only:
            continue
        ci = Cell("-") if r.ci_low is None or r.ci_high is None else Cell(f"{fmt(r.ci_low)} – {fmt(r.ci_high)}")
        rows.append((
            Cell(r.label), Cell(r.unit), num(r.count), num(r.median), ci, num(r.mean), num(r.std), num(r.min),
            num(r.p90), num(r.p95), num(r.p99), num(r.max), num(r.trend_p_value, 3), txt(", ".join(r.flags)),
        ))  # fmt: skip
    return Table(SUMMARY_COLUMNS, tuple(rows), table_id=table_id)


def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as dotted keys; lists of scalars joined, other lists as JSON."""
    if isinstance(value, dict):
        items: list[tuple[str, Any]] = []
        for key, inner in value.items():
            items.extend(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return items
    if isinstance(value, list | tuple):
        if all(not isinstance(v, dict | list | tuple) for v in value):
            return [(prefix, ", ".join(str(v) for v in value))]
        return [(prefix, json.dumps(value, default=str))]
    return [(prefix, value)]


def split_environments(
    environments: Sequence[dict[str, Any]],
) -> tuple[list[tuple[str, Any]], list[tuple[str, list[Any]]]]:
    """(fields equal in every environment, fields that differ with their distinct values in order seen)."""
    flattened = [dict(flatten(environment)) for environment in environments]
    keys = list(dict.fromkeys(key for environment in flattened for key in environment))
    common, differing = [], []
    for key in keys:
        values = list(dict.fromkeys(repr(environment.get(key)) for environment in flattened))
        if len(values) == 1:
            common.append((key, flattened[0].get(key)))
        else:
            seen = list(dict.fromkeys(str(environment.get(key)) for environment in flattened))
            differing.append((key, seen))
    return common, differing


def key_value_table(data: dict[str, Any], caption: str) -> Table:
    return Table(("field", "value"), tuple((txt(k), txt(v)) for k, v in flatten(data)), caption=caption)


# --- sweep page -------------------------------------------------------------------------------------------


def _field_cell(value: Any) -> Cell:
    return num(value) if isinstance(value, int | float) and not isinstance(value, bool) else txt(value)


def sweep_page(data: SweepData, run_anchor: dict[str, str]) -> Page:
    figures = sweep_figures(data)
    sections = []
    field_columns = [name for name in data.varying_fields if name != "batch_size"] + ["batch_size"]
    columns = ("config", "status", "runs", *field_columns, "TTFT ms", "TPOT ms", "E2E ms", "E2E interval",
               "decode tok/s", "overall tok/s", "processes", "E2E CV between", "E2E CV within", "flags",
               "config hash", "reason")  # fmt: skip
    rows = []
    # measured configs first (in plan order), then failed, then skipped
    status_order = {"ok": 0, "failed": 2, "skipped": 3}
    for row in sorted(data.rows, key=lambda r: status_order.get(r.status, 1)):
        anchor = run_anchor.get(row.config_hash)
        rows.append((
            Cell(row.name, link=f"#{anchor}" if anchor else ""),
            Cell(row.status),
            Cell(",".join(map(str, row.run_ids)) or "-"),
            *(_field_cell(row.fields.get(name)) for name in field_columns),
            num(row.medians.get("ttft_ms")), num(row.medians.get("tpot_ms")), num(row.medians.get("e2e_latency_ms")),
            _interval_cell(row), num(row.medians.get("decode_throughput_tok_s")),
            num(row.medians.get("overall_throughput_tok_s")), num(row.processes), pct(row.between_cv),
            pct(row.within_cv), _flags_cell(row), Cell(row.config_hash), Cell(row.reason),
        ))  # fmt: skip
    counts = ", ".join(f"{count} {status}" for status, count in sorted(data.counts.items()))
    lines = [f"{len(data.rows)} configs, {sum(data.counts.values())} results ({counts})"]
    if data.sweep_ids:
        lines.append("sweep " + ", ".join(data.sweep_ids))
    lines.append("medians over processes of each process's median; E2E interval: one process, the 95% CI of its "
                 "median, several, the range of their medians; flags: run-level (HOST_BUSY: measured on a busy "
                 "machine); click a column header to sort")  # fmt: skip
    if not data.one_sweep:
        lines.append("these results are not one sweep: rows compare runs made at different times, maybe on a "
                     "different machine state (see Environment)")  # fmt: skip
    table_section = Section(
        "Every config",
        tables=(Table(columns, tuple(rows), sortable=True, table_id="configs", scroll=True),),
        lines=tuple(lines),
    )
    if "throughput_vs_batch" in figures:
        spec = figures["throughput_vs_batch"]
        table_rows = tuple((txt(s.name), num(x), num(y)) for s in spec.series for x, y in zip(s.x, s.y, strict=True))
        sections.append(Section(spec.title, spec, (Table(("series", "batch size", "tok/s"), table_rows,
                                                         scroll=True),)))  # fmt: skip
    if "pareto" in figures:
        by_hash = {row.config_hash: row for row in data.rows}
        table_rows = tuple(
            (txt(by_hash[key].name), num(by_hash[key].medians.get("e2e_latency_ms")),
             num(by_hash[key].medians.get("overall_throughput_tok_s")))
            for key in data.pareto
        )  # fmt: skip
        sections.append(
            Section(
                "Latency–throughput Pareto front",
                figures["pareto"],
                (Table(("config on the front", "E2E ms", "overall tok/s"), table_rows),),
                ("No other config has both a lower median E2E and a higher median throughput.",),
            )
        )
    if "repeat_variation" in figures:
        spec = figures["repeat_variation"]
        table_rows = tuple((txt(r.name), num(r.processes), pct(r.between_cv), pct(r.within_cv))
                           for r in data.rows if r.between_cv is not None)  # fmt: skip
        sections.append(Section(spec.title, spec, (Table(("config", "processes", "between", "within"), table_rows),),
                                ("Much larger between processes than within: one process's figures are not the "
                                 "machine's.",)))  # fmt: skip
    sections.append(table_section)  # after the plots: they are what a reader looks at first
    configs = tuple(key_value_table(row.config, row.name) for row in data.rows)
    sections.append(Section("Exact configs", tables=configs, open=False))
    common, differing = split_environments(data.environments)
    tables = [Table(("field", "value"), tuple((txt(k), txt(v)) for k, v in common), caption="the same for every run")]
    if differing:
        tables.append(
            Table(
                ("field", "values seen"),
                tuple((txt(k), txt(" | ".join(map(str, v[:8])))) for k, v in differing),
                caption="differs between runs",
            )
        )
    sections.append(Section("Environment", tables=tuple(tables), open=False))
    title = "Sweep" if data.one_sweep else "Runs"
    subtitle = f"{len(data.rows)} configs" + ("" if data.one_sweep else f" from {len(data.sweep_ids) or 'no'} sweep(s)")
    return Page("sweep", title, subtitle, tuple(sections))


def _interval_cell(row: ConfigRow) -> Cell:
    if row.e2e_interval is None:
        return Cell("-")
    low, high = row.e2e_interval
    return Cell(f"{fmt(low)} – {fmt(high)} ({row.interval_kind})", low)


def _flags_cell(row: ConfigRow) -> Cell:
    loud = ("host_busy", "clocks_changed")
    parts = [(flag.upper() if flag in loud else flag) + (f" {count}/{row.processes}" if row.processes > 1 else "")
             for flag, count in row.flags.items()]  # fmt: skip
    return Cell(" ".join(parts) or "-")


# --- comparison page --------------------------------------------------------------------------------------


def comparison_page(data: ComparisonData, page_id: str) -> Page:
    figures = comparison_figures(data)
    columns = ("workload", "metric", "unit", "baseline", "contender", "ratio", "95% CI low", "95% CI high", "p",
               "p (Holm)", "verdict", "why")  # fmt: skip
    rows = tuple(
        (txt(r.workload), txt(METRIC_LABELS.get(r.metric, r.metric)), txt(r.unit), num(r.baseline), num(r.contender),
         num(r.ratio), num(r.ci_low), num(r.ci_high), num(r.p_value, 3), num(r.p_adjusted, 3), txt(r.verdict),
         txt(r.reason))
        for r in data.rows
    )  # fmt: skip
    lines = [f"baseline: {data.baseline_source}", f"contender: {data.contender_source}", f"source: {data.source}"]
    if data.min_effect is not None and data.alpha is not None:
        lines.append(
            f"a verdict needs p (Holm) < {data.alpha:.3g} and a change ≥ {data.min_effect:.1%}; each result is one "
            "process (one value per metric), intervals are t intervals on those values; one process a side gets "
            "no interval and no verdict unless the machine's between-process variance is known from stored repeats"
        )
    lines.extend(f"warning: {w}" for w in data.warnings)
    verdicts: dict[str, int] = {}
    for r in data.rows:
        verdicts[r.verdict] = verdicts.get(r.verdict, 0) + 1
    section = Section(
        "Ratio per workload and metric (forest plot)",
        figures.get("forest"),
        (Table(columns, rows, sortable=True, table_id=f"{page_id}-table", scroll=True),),
        tuple(lines),
    )
    subtitle = ", ".join(f"{count} {verdict}" for verdict, count in sorted(verdicts.items())) or "no metrics"
    return Page(page_id, "Comparison", subtitle, (section,))


# --- the report -------------------------------------------------------------------------------------------


def build_report(
    items: Sequence[ReportInput],
    run_pages: int = DEFAULT_RUN_PAGES,
    comparisons: Sequence[ComparisonData] = (),
) -> Report:
    """Comparison pages first, a sweep page when the inputs hold more than one result, then one page per run
    (up to ``run_pages``)."""
    if not items and not comparisons:
        raise ReportError("nothing to report")
    pages: list[Page] = [comparison_page(c, f"comparison-{i + 1}") for i, c in enumerate(comparisons)]
    served = [item.result for item in items if item.result.serving is not None]
    if served:  # serving runs get their own pages (timelines, load curves): report.serving_page
        pages += serving_pages(served)
        items = [item for item in items if item.result.serving is None]
        if not items:
            title = "tokbench report: " + (f"{len(served)} serving runs" if len(served) > 1 else served[0].config.name)
            return Report(title=title, pages=tuple(pages))
    if not items:
        return Report(title="tokbench report: comparison", pages=tuple(pages))
    notes: list[str] = []
    many = len(items) > 1
    run_items = [item for item in items if item.result.iterations] or list(items[:1])
    shown = run_items[: max(0, run_pages)]
    if len(run_items) > len(shown):
        notes.append(f"{len(run_items) - len(shown)} run(s) have no page of their own (--run-pages {run_pages}); "
                     "the sweep table has their numbers")  # fmt: skip
    anchors = {}
    for index, item in enumerate(shown):
        anchors.setdefault(item.result.config_hash, f"run-{index + 1}")
    if many:
        pages.append(sweep_page(sweep_data(items), anchors))
    for index, item in enumerate(shown):
        pages.append(run_page(run_data(item), f"run-{index + 1}", open_=not many))
    title = "tokbench report: " + (f"{len(items)} results" if many else items[0].result.config.name)
    return Report(title=title, pages=tuple(pages), notes=tuple(notes))


def json_for_script(value: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``</script>``, ``<!--`` or line separator."""
    text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    return (
        text.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


@functools.lru_cache(maxsize=1)
def plotly_js_gzip_base64() -> str:
    """plotly.js gzipped and base64-encoded: a third of its size inline (memoized: the same for every report)."""
    return base64.b64encode(gzip.compress(plotly_js().encode("utf-8"), compresslevel=9, mtime=0)).decode("ascii")


def plotly_js() -> str:
    try:
        from plotly.offline import get_plotlyjs
    except ImportError as error:  # pragma: no cover - plotly is a dependency
        raise ReportError("tokbench report needs plotly: pip install plotly") from error
    return get_plotlyjs()


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#1f2937;color:#f9fafb;padding:14px 24px}
header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#d1d5db;font-size:13px}
nav{padding:8px 24px;background:#e5e7eb;font-size:13px}nav a{margin-right:14px;color:#1f2937}
main{padding:8px 24px}
details.page{background:#fff;border:1px solid #d1d5db;border-radius:6px;margin:14px 0;padding:4px 14px}
details.page>summary{font-size:18px;font-weight:600;padding:8px 0;cursor:pointer}
.subtitle{color:#4b5563;font-size:13px;margin:0 0 8px}
section{border-top:1px solid #e5e7eb;padding:8px 0}
section>h3{margin:6px 0;font-size:15px}
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.plot{flex:1 1 560px;min-width:420px;min-height:380px}
.tables{flex:1 1 420px;min-width:320px;overflow-x:auto}
.scroll{max-height:420px;overflow-y:auto}
table{border-collapse:collapse;font-size:12px;margin:4px 0 10px}
th,td{border:1px solid #e5e7eb;padding:3px 6px;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
th{background:#f3f4f6;position:sticky;top:0}
table.sortable th{cursor:pointer}table.sortable th:after{content:" \\2195";color:#9ca3af}
caption{text-align:left;font-weight:600;padding:2px 0;font-size:12px}
.lines{font-size:13px;color:#374151;margin:4px 0;white-space:pre-wrap;word-break:break-word}
.status-ok{color:#047857}.status-failed{color:#b91c1c}.status-skipped{color:#b45309}
.notes{background:#fef3c7;padding:6px 24px;font-size:13px}
.filters{font-size:13px;margin:4px 0 8px}.filters label{margin-right:16px}
"""

# Draws every figure of an open <details> (and of one opened later), sorts tables on a header click,
# and records what it drew in data-plots-rendered for whoever checks the page.
# Unpacks the gzipped plotly.js with the browser's DecompressionStream and runs it as an inline script (allowed
# by the page's CSP; no eval, no blob: URL), then starts the page script.
_UNPACK_SCRIPT = """
(function(){
  "use strict";
  var packed = document.getElementById('tb-plotly-gz');
  if (typeof DecompressionStream === 'undefined') {
    document.body.insertAdjacentHTML('afterbegin', '<div class="notes">This browser cannot unpack the inlined ' +
      'plotly.js (no DecompressionStream): make the report with --plain-js to see the plots.</div>');
    console.error('no DecompressionStream: plots not drawn');
    return;
  }
  var binary = atob(packed.textContent), bytes = new Uint8Array(binary.length);
  for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'))).text()
    .then(function(source){
      var script = document.createElement('script');
      script.textContent = source;
      document.head.appendChild(script);
      tbPage();
    })
    .catch(function(error){ console.error('plotly.js could not be unpacked: ' + error); });
})();
"""

_PAGE_SCRIPT = """
(function(){
  "use strict";
  var drawn = 0, failed = 0;
  function draw(scope){
    var blocks = document.querySelectorAll('script.tb-figure');
    blocks.forEach(function(block){
      if (block.dataset.done) return;
      var target = document.getElementById(block.dataset.target);
      if (!scope.contains(target) || target.closest('[hidden]')) return;
      var holder = target.closest('details');
      while (holder) { if (!holder.open) return; holder = holder.parentElement.closest('details'); }
      block.dataset.done = '1';
      var spec = JSON.parse(block.textContent);
      Plotly.newPlot(target, spec.data, spec.layout, {displaylogo: false, responsive: true})
        .then(function(){ drawn += 1; document.body.dataset.plotsRendered = String(drawn);
                          document.body.dataset.lastDrawMs = performance.now().toFixed(0); },
              function(error){ failed += 1; document.body.dataset.plotsFailed = String(failed);
                               console.error('plot ' + block.dataset.target + ': ' + error); });
    });
  }
  document.querySelectorAll('details').forEach(function(d){
    d.addEventListener('toggle', function(){ if (d.open) draw(d); });
  });
  function key(cell){
    var v = cell.getAttribute('data-value');
    if (v !== null && v !== '') { var f = parseFloat(v); if (!isNaN(f)) return [0, f]; }
    return [1, cell.textContent.trim().toLowerCase()];
  }
  document.querySelectorAll('table.sortable').forEach(function(table){
    table.querySelectorAll('th').forEach(function(th, column){
      th.addEventListener('click', function(){
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        var ascending = th.getAttribute('aria-sort') !== 'ascending';
        table.querySelectorAll('th').forEach(function(h){ h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
        rows.sort(function(a, b){
          var x = key(a.cells[column]), y = key(b.cells[column]);
          var order = x[0] - y[0] || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0);
          return ascending ? order : -order;
        });
        rows.forEach(function(r){ body.appendChild(r); });
      });
    });
  });
  function openTarget(){
    var target = location.hash && document.getElementById(location.hash.slice(1));
    if (target && target.tagName === 'DETAILS' && !target.open) { target.open = true; }
  }
  window.addEventListener('hashchange', openTarget);
  document.querySelectorAll('select[data-tb-filter]').forEach(function(select){
    function apply(){
      var page = select.closest('details'), chosen = {};
      page.querySelectorAll('select[data-tb-filter]').forEach(function(s){ chosen[s.dataset.tbFilter] = s.value; });
      page.querySelectorAll('section[data-tb-tags]').forEach(function(section){
        var tags = JSON.parse(section.dataset.tbTags), shown = true;
        Object.keys(chosen).forEach(function(name){
          if (chosen[name] !== '' && name in tags && tags[name] !== chosen[name]) shown = false;
        });
        section.hidden = !shown;
      });
      draw(page);
    }
    select.addEventListener('change', apply);
    apply();
  });
  document.body.dataset.plotsRendered = '0';
  openTarget();
  draw(document);
  document.body.dataset.scriptDone = '1';
})();
"""


def _e(text: object) -> str:
    """Text for HTML: markup escaped, and control and bidi-override characters shown as ``\\u202e`` escapes
    (``evil\\u202egnp.exe`` must not display as ``evilexe.png``)."""
    return html.escape(terminal_safe(text), quote=True)


def _render_table(table: Table) -> str:
    attributes = ' class="sortable"' if table.sortable else ""
    if table.table_id:
        attributes += f' id="{_e(table.table_id)}"'
    parts = [f"<table{attributes}>"]
    if table.caption:
        parts.append(f"<caption>{_e(table.caption)}</caption>")
    parts.append("<thead><tr>" + "".join(f"<th>{_e(c)}</th>" for c in table.columns) + "</tr></thead><tbody>")
    for row in table.rows:
        cells = []
        for cell in row:
            if cell.value is not None:
                full = _e(repr(cell.value))
                cells.append(f'<td class="n" data-value="{full}" title="{full}">{_e(cell.text)}</td>')
            elif cell.link.startswith("#"):
                cells.append(f'<td><a href="{_e(cell.link)}">{_e(cell.text)}</a></td>')
            else:
                cells.append(f"<td>{_e(cell.text)}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    body = "".join(parts)
    return f'<div class="scroll">{body}</div>' if table.scroll else body


def _render_section(section: Section, page_id: str, figure_blocks: list[str]) -> str:
    parts = [f"<h3>{_e(section.title)}</h3>"]
    if section.lines:
        parts.append('<div class="lines">' + "<br>".join(_e(line) for line in section.lines) + "</div>")
    tables = "".join(_render_table(t) for t in section.tables)
    if section.figure is not None:
        target = f"plot-{page_id}-{section.figure.key}"
        figure_blocks.append(
            f'<script type="application/json" class="tb-figure" data-target="{_e(target)}">'
            f"{json_for_script(to_plotly(section.figure))}</script>"
        )
        parts.append(f'<div class="row"><div class="plot" id="{_e(target)}"></div>'
                     f'<div class="tables">{tables}</div></div>')  # fmt: skip
    else:
        parts.append(f'<div class="tables">{tables}</div>')
    inner = "".join(parts)
    tags = f" data-tb-tags=\"{_e(json.dumps(dict(section.tags)))}\"" if section.tags else ""
    if not section.open:
        return f"<section{tags}><details><summary>{_e(section.title)}</summary>{inner}</details></section>"
    return f"<section{tags}>{inner}</section>"


def _render_filters(page: Page) -> str:
    controls = []
    for item in page.filters:
        options = "".join(
            f'<option value="{_e(value)}"{" selected" if value == item.default else ""}>{_e(text)}</option>'
            for value, text in (("", "all"), *item.choices)
        )
        controls.append(f'<label>{_e(item.label)} <select data-tb-filter="{_e(item.name)}">{options}</select></label>')
    return f'<div class="filters">{" ".join(controls)}</div>' if controls else ""


def render_html(report: Report, plain_js: bool = False) -> str:
    """The page. plotly.js is inlined once: gzipped + base64 (about a third of its 4.6 MiB, unpacked by the
    browser), or as is with ``plain_js`` for browsers without DecompressionStream (before 2023)."""
    figure_blocks: list[str] = []
    body: list[str] = []
    for page in report.pages:
        sections = "".join(_render_section(s, page.page_id, figure_blocks) for s in page.sections)
        status = f' <span class="status-{_e(page.status)}">[{_e(page.status)}]</span>' if page.status else ""
        body.append(
            f'<details class="page" id="{_e(page.page_id)}"{" open" if page.open else ""}>'
            f"<summary>{_e(page.title)}{status}</summary>"
            f'<p class="subtitle">{_e(page.subtitle)}</p>{_render_filters(page)}{sections}</details>'
        )
    nav = "".join(f'<a href="#{_e(p.page_id)}">{_e(p.title)}</a>' for p in report.pages)
    notes = "".join(f'<div class="notes">{_e(note)}</div>' for note in report.notes)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(report.title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(report.title)}</h1><p>generated {_e(report.generated_at)} by tokbench · self-contained, "
        "works offline · numbers in tables are the ones plotted (hover a number for its full precision)</p></header>"
        f"<nav>{nav}</nav>{notes}<main>{''.join(body)}</main>"
        f"{''.join(figure_blocks)}{_library_and_page_scripts(plain_js)}"
        "</body></html>\n"
    )


def _library_and_page_scripts(plain_js: bool) -> str:
    if plain_js:
        return f"<script>{plotly_js()}</script><script>{_PAGE_SCRIPT}</script>"
    return (
        f'<script type="application/octet-stream" id="tb-plotly-gz">{plotly_js_gzip_base64()}</script>'
        f"<script>function tbPage(){{{_PAGE_SCRIPT}}}\n{_UNPACK_SCRIPT}</script>"
    )


def check_output(output: str | Path, inputs: Iterable[str | Path] = (), force: bool = False) -> Path:
    """``--output`` under the one output rule (``results.outputs``): an earlier HTML page may be replaced, never
    an input, a store, a special file or a link; any other existing file only with ``force``."""
    try:
        return check_output_file(
            output, inputs=inputs, force=force, replaceable=_is_html_page, exists_fix="it is not an HTML page; "
            "tokbench leaves it: pass another --output (or --force to replace it)",
        )  # fmt: skip
    except OutputLocationError as error:
        raise ReportError(str(error)) from error


def _is_html_page(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            start = handle.read(64).lstrip().lower()
    except OSError:
        return False
    return start.startswith((b"<!doctype html", b"<html"))


class PngWriteError(ReportError):
    """The HTML page was written, the PNGs were not (the message says where the page is)."""


def write_report(
    items: Iterable[ReportInput],
    output: str | Path,
    png_dir: str | Path | None = None,
    run_pages: int = DEFAULT_RUN_PAGES,
    comparisons: Sequence[ComparisonData] = (),
    plain_js: bool = False,
    inputs: Iterable[str | Path] = (),
    force: bool = False,
) -> tuple[Path, list[Path]]:
    """Write the HTML report (atomically) and, with ``png_dir``, the plots as PNG; returns the paths.

    ``inputs`` are never replaced; another existing file that is not an earlier page only with ``force``.
    A PNG that cannot be written raises ``PngWriteError`` after the page was written (and says so).
    """
    target = check_output(output, inputs, force)
    report = build_report(list(items), run_pages=run_pages, comparisons=comparisons)
    try:
        path = write_output_text(target, render_html(report, plain_js=plain_js))
    except OutputLocationError as error:
        raise ReportError(str(error)) from error
    pngs: list[Path] = []
    if png_dir is not None:
        # The main plots: the sweep's and the first run's (every run's would be dozens of files).
        main_pages = [p for p in report.pages if not p.page_id.startswith("run-")]
        main_pages += [p for p in report.pages if p.page_id.startswith("run-")][:1]
        try:
            for page in main_pages:
                specs = [s.figure for s in page.sections if s.figure is not None]
                pngs.extend(write_pngs(specs, png_dir, prefix=f"{page.page_id}-"))
        except (OSError, ValueError, RuntimeError) as error:
            reason = getattr(error, "strerror", None) or f"{type(error).__name__}: {error}"
            raise PngWriteError(
                f"the HTML report was written to {path}, but the PNGs could not be written into {png_dir}: "
                f"{reason}; pass another --png"
            ) from error
    return path, pngs

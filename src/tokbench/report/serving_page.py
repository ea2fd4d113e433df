"""HTML pages of serving runs: per-request timelines, concurrency and send lag over time for each run, and
latency, throughput and goodput against the offered load for a sweep. Reads ``BenchmarkResult.serving`` records
only (no torch, no serving code); figures are ``FigureSpec`` like every other page's."""

from __future__ import annotations

from collections.abc import Sequence

from tokbench.analysis.metrics import NS_PER_MS, NS_PER_S
from tokbench.analysis.serving import concurrency_steps, measured, request_tpot_ms, request_ttft_ms
from tokbench.report.figures import LINES, LINES_MARKERS, MARKERS, FigureSpec, Series
from tokbench.report.page_model import Cell, Page, Section, Table, num, txt
from tokbench.report.serving_view import DEFINITIONS_CARD, serving_lines
from tokbench.schema.results import BenchmarkResult

MAX_TIMELINE_REQUESTS = 400  # a page stays light: the first requests of a long run, and it says so


def _timeline(result: BenchmarkResult) -> FigureSpec:
    serving = result.serving
    assert serving is not None
    requests = measured(serving.requests)
    origin = min((r.intended_ns for r in requests), default=0)
    shown = requests[:MAX_TIMELINE_REQUESTS]

    def seconds(value: int) -> float:
        return (value - origin) / NS_PER_S

    queued_x: list[float | None] = []
    queued_y: list[float | None] = []
    streaming_x: list[float | None] = []
    streaming_y: list[float | None] = []
    failed_x: list[float | None] = []
    failed_y: list[float | None] = []
    for position, request in enumerate(shown):
        first = request.event_ns[0] if request.ok and request.event_ns else request.end_ns
        queued_x += [seconds(request.intended_ns), seconds(first), None]
        queued_y += [position, position, None]
        target_x, target_y = (streaming_x, streaming_y) if request.ok else (failed_x, failed_y)
        target_x += [seconds(first), seconds(request.end_ns), None]
        target_y += [position, position, None]
    series = [
        Series("intended send → first token", tuple(queued_x), tuple(queued_y), color="#9ecae1"),
        Series("first token → last byte", tuple(streaming_x), tuple(streaming_y), color="#08519c"),
    ]
    if failed_x:
        series.append(Series("failed request", tuple(failed_x), tuple(failed_y), color="#d62728"))
    note = f" (first {MAX_TIMELINE_REQUESTS} of {len(requests)})" if len(requests) > len(shown) else ""
    return FigureSpec("serving-timeline", f"Per-request timeline{note}", "seconds since the first intended send",
                      "request (send order)", tuple(series), height=460)  # fmt: skip


def _concurrency(result: BenchmarkResult) -> FigureSpec:
    serving = result.serving
    assert serving is not None
    requests = measured(serving.requests)
    origin = min((r.intended_ns for r in requests), default=0)
    times, counts = concurrency_steps(requests)
    lags = tuple(r.send_lag_ns / NS_PER_MS for r in requests)
    return FigureSpec(
        "serving-concurrency", "Requests in flight and send lag over time", "seconds since the first intended send",
        "requests in flight",
        (Series("in flight", tuple((t - origin) / NS_PER_S for t in times), tuple(float(c) for c in counts),
                mode="lines", color="#2ca02c"),
         Series("send lag (ms)", tuple((r.intended_ns - origin) / NS_PER_S for r in requests), lags, mode=MARKERS,
                color="#ff7f0e", y_axis=2)),
        y2_title="send lag (ms)",
    )  # fmt: skip


def _latency_scatter(result: BenchmarkResult) -> FigureSpec:
    serving = result.serving
    assert serving is not None
    requests = [r for r in measured(serving.requests) if r.ok]
    origin = min((r.intended_ns for r in requests), default=0)
    x = tuple((r.intended_ns - origin) / NS_PER_S for r in requests)
    return FigureSpec(
        "serving-latency", "TTFT and TPOT of each request, by intended send time", "seconds since the first send",
        "TTFT (ms)",
        (Series("TTFT", x, tuple(request_ttft_ms(r) for r in requests), mode=MARKERS, color="#1f77b4"),
         Series("TPOT", x, tuple(request_tpot_ms(r) if r.output_tokens > 1 else None for r in requests),
                mode=MARKERS, color="#9467bd", y_axis=2)),
        y2_title="TPOT (ms)",
    )  # fmt: skip


def serving_run_page(result: BenchmarkResult, page_id: str, open_: bool = True) -> Page:
    serving = result.serving
    assert serving is not None
    rows = tuple(
        (txt(name), txt(summary.unit), num(summary.count), num(summary.median), num(summary.p90), num(summary.p99),
         txt(f"{summary.median_ci[0]:.4g} – {summary.median_ci[1]:.4g}" if summary.median_ci else "-"))
        for name, summary in result.summary.items()
    )  # fmt: skip
    metrics = Table(("metric", "unit", "n", "median", "p90", "p99", "median 95% CI"), rows, table_id=f"{page_id}-m")
    errors = tuple((txt(r.index), txt(r.status), txt(r.http_status or "-"), txt(r.error or ""))
                   for r in measured(serving.requests) if not r.ok)[:200]  # fmt: skip
    sections = [
        Section("Per-request timeline", _timeline(result), lines=tuple(serving_lines(result))),
        Section("Concurrency and send lag", _concurrency(result)),
        Section("Latency of each request", _latency_scatter(result), (metrics,)),
    ]
    if errors:
        sections.append(Section("Failed requests", tables=(Table(("request", "error", "HTTP", "detail"), errors),)))
    subtitle = f"{serving.settings.describe_load()} · {serving.endpoint} · {result.status}"
    return Page(page_id, result.config.name, subtitle, tuple(sections), open=open_, status=result.status)


def serving_sweep_page(results: Sequence[BenchmarkResult]) -> Page:
    """Latency, throughput and goodput against the offered load (rate, or concurrency for closed loops)."""
    points = sorted(
        (r for r in results if r.serving is not None and r.serving.summary is not None and r.summary),
        key=lambda r: _offered(r),
    )
    x = tuple(_offered(r) for r in points)

    def stat(metric: str, field: str) -> tuple[float | None, ...]:
        return tuple(getattr(r.summary[metric], field) if metric in r.summary else None for r in points)

    latency = FigureSpec(
        "serving-latency-vs-load", "Latency against offered load", "offered load (req/s, or concurrency)", "ms",
        (Series("TTFT p50", x, stat("ttft_ms", "median"), mode=LINES_MARKERS),
         Series("TTFT p99", x, stat("ttft_ms", "p99"), mode=LINES_MARKERS),
         Series("E2E p50", x, stat("e2e_latency_ms", "median"), mode=LINES_MARKERS),
         Series("TPOT p50", x, stat("tpot_ms", "median"), mode=LINES_MARKERS)),
    )  # fmt: skip
    summaries = [r.serving.summary for r in points]  # type: ignore[union-attr]
    throughput = FigureSpec(
        "serving-goodput-vs-load", "Throughput and goodput against offered load", "offered load", "requests/s",
        (Series("completed req/s", x, tuple(s.request_throughput for s in summaries), mode=LINES_MARKERS),  # type: ignore[union-attr]
         Series("goodput (req/s meeting the SLO)", x, tuple(s.goodput for s in summaries), mode=LINES_MARKERS),  # type: ignore[union-attr]
         Series("offered", x, x, mode=LINES, color="#999999")),
    )  # fmt: skip
    rows = tuple(
        (txt(r.config.name), num(_offered(r)), txt(r.status), num(s.request_throughput), num(s.goodput),  # type: ignore[union-attr]
         num(s.send_lag_p99_ms), num(s.failed), txt("yes" if r.serving.valid else "NO"))  # type: ignore[union-attr]
        for r, s in zip(points, summaries, strict=True)
    )  # fmt: skip
    table = Table(("run", "offered", "status", "req/s", "goodput", "lag p99 ms", "failed", "valid"), rows,
                  sortable=True, table_id="serving-sweep")  # fmt: skip
    card = Table(DEFINITIONS_CARD[0], tuple(tuple(Cell(text) for text in row) for row in DEFINITIONS_CARD[1:]),
                 caption="the same numbers under other tools' names")  # fmt: skip
    sections = (
        Section("Latency against load", latency, (table,)),
        Section("Throughput and goodput against load", throughput),
        Section("Metric definitions", tables=(card,)),
    )
    return Page("serving-sweep", "Serving sweep", f"{len(points)} runs", sections)


def _offered(result: BenchmarkResult) -> float:
    settings = result.serving.settings  # type: ignore[union-attr]
    return float(settings.rate if settings.load == "rate" else settings.concurrency or 0)


def serving_pages(results: Sequence[BenchmarkResult], first_index: int = 1) -> list[Page]:
    pages = [serving_sweep_page(results)] if len(results) > 1 else []
    pages += [serving_run_page(r, f"serving-{first_index + i}", open_=len(results) == 1)
              for i, r in enumerate(results)]  # fmt: skip
    return pages

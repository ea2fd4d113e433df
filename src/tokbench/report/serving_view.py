"""Terminal rendering of serving runs: the run's figures, a sweep table, and the metric definitions card."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group
from rich.table import Table
from rich.text import Text

from tokbench.report.terminal import FLAGS_LEGEND, format_figure, result_table
from tokbench.schema.results import STATUS_OK, BenchmarkResult
from tokbench.schema.serving import ServingRecord
from tokbench.text import terminal_safe

# Each tokbench metric (defined once, analysis/metrics.py) under the names the other tools give the same number;
# "-" where a tool has none, and what the tool's own same-named metric means instead.
DEFINITIONS_CARD: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("metric", "tokbench definition", "vLLM bench serve", "SGLang bench_serving", "GuideLLM", "AIPerf"),
    ("TTFT", "t1 - intended send (first token, never a role-only chunk)", "TTFT (from actual send; chat counts "
     "the role chunk)", "TTFT (first non-empty content)", "time_to_first_token (from actual send)",
     "time_to_first_token"),
    ("TPOT", "(tN - t1) / (N - 1), per request", "TPOT", "TPOT", "inter_token_latency (its 'ITL')",
     "inter_token_latency (its 'ITL')"),
    ("ITL", "every gap t_i - t_(i-1) between TOKENS (0 inside a k-token event)", "ITL is the gap between "
     "EVENTS (= our event gaps)", "ITL = gaps between content events", "- (its TPOT = (tN - t0) / N, includes "
     "TTFT)", "inter_chunk_latency (events)"),
    ("E2E", "last byte - intended send", "E2EL (from actual send)", "E2E latency", "request_latency",
     "request_latency"),
    ("output tok/s", "output tokens of completed requests / run window", "output throughput",
     "output throughput", "output_tokens_per_second", "output_token_throughput"),
    ("goodput", "requests meeting every SLO (errors count as misses) / run window", "request goodput",
     "-", "-", "goodput"),
)  # fmt: skip


def definitions_card() -> Table:
    header, *rows = DEFINITIONS_CARD
    table = Table(title="metric definitions: tokbench and the same number in other tools", header_style="bold")
    for column in header:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def serving_lines(result: BenchmarkResult) -> list[str]:
    serving = result.serving
    if serving is None:
        return []
    settings = serving.settings
    lines = [
        f"endpoint {serving.endpoint} ({settings.api}), model {settings.model}, server {serving.server.kind}"
        + (f" [{settings.label}]" if settings.label else ""),
        f"load: {settings.describe_load()}, {settings.requests} requests (+{settings.warmup_requests} warmup), "
        f"input {settings.input_tokens.describe()} tokens, output {settings.output_tokens.describe()} tokens"
        + (f", dataset {settings.dataset}" if settings.dataset else ""),
    ]
    capabilities = serving.capabilities
    if capabilities is not None:
        lines.append(
            "endpoint: "
            + ", ".join(
                part for part in (
                    f"role-only first chunk {capabilities.role_only_first_chunk}" if settings.api == "chat" else "",
                    f"[DONE] {capabilities.done_sentinel}", f"usage in stream {capabilities.usage_in_stream}",
                    f"usage per chunk {capabilities.usage_per_chunk}",
                    f"fixed length via {capabilities.fixed_output_field or 'nothing'}",
                    f"rejects {', '.join(capabilities.rejected_fields)}" if capabilities.rejected_fields else "",
                ) if part
            )
        )  # fmt: skip
        lines += [f"skip: {reason}" for reason in capabilities.skip_reasons]
    summary = serving.summary
    if summary is not None:
        errors = ", ".join(f"{kind} {count}" for kind, count in sorted(summary.errors.items())) or "none"
        lines += [
            f"completed {summary.completed}, failed {summary.failed} ({errors}) in {summary.duration_s:.3f} s: "
            f"{format_figure(summary.request_throughput)} req/s, {format_figure(summary.output_throughput_tok_s)} "
            f"output tok/s, mean concurrency {summary.mean_concurrency:.2f} (peak {summary.peak_concurrency})",
            f"send lag p50 {summary.send_lag_p50_ms:.3f} ms, p99 {summary.send_lag_p99_ms:.3f} ms, max "
            f"{summary.send_lag_max_ms:.3f} ms (budget {settings.lag_budget_ms:g} ms"
            + (", open loop)" if settings.load == "rate" else ", closed loop: informative)"),
            *_client_lines(serving),
            f"tokens: {summary.events} events, {summary.multi_token_events} carried several tokens (max "
            f"{summary.max_tokens_per_event}); counted from {serving.token_source}; each token stamped at its "
            f"event's arrival" + (f"; {summary.output_tokens_mismatch} requests' counts differ from the server's "
                                  "usage" if summary.output_tokens_mismatch else ""),
        ]  # fmt: skip
        if summary.goodput is not None and serving.slo is not None:
            low, high = summary.good_fraction_ci or (0.0, 1.0)
            verdict = {True: "MET (95% confidence)", False: "MISSED (95% confidence)",
                       None: "inconclusive (more requests needed)"}[summary.slo_met]  # fmt: skip
            lines.append(
                f"SLO {serving.slo.describe()}: {verdict}; goodput {format_figure(summary.goodput)} req/s, "
                f"good {summary.good_fraction:.1%} [{low:.1%}, {high:.1%}]"
            )
            for name, detail in summary.slo_detail.items():
                shown = [f"{key} {'inf' if value is None else format_figure(value)}" for key, value in detail.items()]
                lines.append(f"  {name}: {', '.join(shown)}")
    if not serving.valid:
        lines.append(f"INVALID: {serving.invalid_reason}")
    return lines + [f"note: {note}" for note in result.notes]


def _client_lines(serving: ServingRecord) -> list[str]:
    """How many client processes offered the load, and each one's send lag (one that fell behind shows)."""
    summary = serving.summary
    if serving.client_processes is None or summary is None:
        return []
    lags = "; ".join(f"#{lag.client + 1} ({lag.requests} requests) p50 {lag.send_lag_p50_ms:.3f}, p99 "
                     f"{lag.send_lag_p99_ms:.3f}, max {lag.send_lag_max_ms:.3f}" for lag in summary.client_lags or ())
    return [f"client processes: {serving.client_processes}" + (f"; send lag ms per client: {lags}" if lags else "")]


def render_serving(result: BenchmarkResult) -> Group:
    """The run's header and metric table (as ``tokbench run`` prints them), then the serving figures."""
    style = "green" if result.status == STATUS_OK else "yellow" if result.status == "skipped" else "red"
    header = [f"{result.config.name}  [{result.status}]  config {result.config_hash}  workload {result.workload_key}"]
    header += [f"reason: {result.reason}"] if result.reason else []
    header += [f"flags: {', '.join(result.flags)}"] if result.flags else []
    parts: list[Text | Table] = [Text(terminal_safe(line), style=style if i == 0 else "") for i, line in
                                 enumerate(header)]  # fmt: skip
    if result.summary:
        parts += [result_table(result), Text(FLAGS_LEGEND, style="dim")]
    invalid = "red" if result.serving is not None and not result.serving.valid else ""
    parts += [Text(terminal_safe(line), style=invalid if line.startswith("INVALID") else "") for line in
              serving_lines(result)]  # fmt: skip
    return Group(*parts)


def _median(result: BenchmarkResult, metric: str, field: str = "median") -> str:
    summary = result.summary.get(metric)
    return "-" if summary is None else format_figure(getattr(summary, field))


def sweep_table(results: Sequence[BenchmarkResult]) -> Table:
    table = Table(title="serving sweep", header_style="bold")
    for column in ("#", "load", "status", "req/s", "out tok/s", "TTFT p50", "TTFT p99", "TPOT p50", "ITL p99",
                   "E2E p50", "lag p99 ms", "failed", "goodput", "valid"):  # fmt: skip
        table.add_column(column, justify="right" if column not in ("load", "status") else "left")
    for index, result in enumerate(results):
        serving = result.serving
        if serving is None:
            continue
        summary = serving.summary
        table.add_row(
            str(index), serving.settings.describe_load(), result.status,
            format_figure(summary.request_throughput) if summary else "-",
            format_figure(summary.output_throughput_tok_s) if summary else "-",
            _median(result, "ttft_ms"), _median(result, "ttft_ms", "p99"), _median(result, "tpot_ms"),
            _median(result, "itl_ms", "p99"), _median(result, "e2e_latency_ms"),
            f"{summary.send_lag_p99_ms:.3f}" if summary else "-", str(summary.failed) if summary else "-",
            format_figure(summary.goodput) if summary and summary.goodput is not None else "-",
            "yes" if serving.valid else "NO",
        )  # fmt: skip
    return table

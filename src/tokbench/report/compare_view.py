"""Rendering a ``ComparisonReport``: a rich terminal table, Markdown for a PR comment, JSON.

Names, origins, reasons and environment values come from result files anyone can write: every one passes
through ``neutral`` (control and bidi characters out, length capped) and, for Markdown, ``markdown_text``
(table and inline markup escaped) before it is printed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from tokbench.analysis.metrics import METRIC_LABELS
from tokbench.report.terminal import format_figure
from tokbench.schema.comparison import (
    ComparisonReport,
    GeometricMeanSummary,
    MetricComparison,
    StatisticRatio,
    WorkloadComparison,
)
from tokbench.text import terminal_safe

VERDICT_STYLES = {
    "faster": "bold green",
    "slower": "bold red",
    "inconclusive": "yellow",
    "no significant change": "",
    "below min-effect": "cyan",
}
VERDICT_ORDER = ("slower", "faster", "below min-effect", "no significant change", "inconclusive")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~])")


def neutral(text: object, limit: int = 120) -> str:
    """Untrusted text made inert for a terminal: no control / format characters (escapes, bidi), capped."""
    cleaned = terminal_safe(text, newlines=False)  # the one rule for terminal text (tokbench.text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def markdown_text(text: object, limit: int = 120) -> str:
    """Untrusted text made inert in Markdown (and the HTML GitHub renders from it)."""
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", neutral(text, limit))
    return escaped.replace("&", "&amp;")


def ratio_text(ratio: StatisticRatio) -> str:
    return f"×{ratio.ratio:.3f}"


def ci_text(ratio: StatisticRatio | GeometricMeanSummary) -> str:
    if ratio.ci_low is None or ratio.ci_high is None:
        return "none"
    return f"[{ratio.ci_low:.3f}, {ratio.ci_high:.3f}]"


def _tail_text(metric: MetricComparison, statistic: str, interval: bool = True) -> str:
    tail = next((tail for tail in metric.tails if tail.statistic == statistic), None)
    if tail is None:
        return "-"
    return ratio_text(tail) + ("" if tail.ci_low is None or not interval else f" {ci_text(tail)}")


def _verdict_text(metric: MetricComparison, workload: WorkloadComparison) -> str:
    if metric.verdict == "faster" and workload.outputs_changed:
        return "faster, OUTPUTS CHANGED"
    return metric.verdict


def _p_text(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2g}" if value >= 1e-4 else "<1e-4"


def _detect_text(metric: MetricComparison) -> str:
    if metric.detectable_change is None:
        return "unknown"
    return f"≥{metric.detectable_change:.1%}" if metric.detectable_change < 10 else "> ×10"


def _processes_text(metric: MetricComparison) -> str:
    if metric.test is None:  # a version 1 comparison: calls for 1%
        return f"{metric.calls_for_1pct:,} calls" if metric.calls_for_1pct is not None else "-"
    if metric.test.method == "none":
        return "unknown"
    return f"{metric.processes_for_target:,}" if metric.processes_for_target is not None else "> 1,000"


def _method_text(metric: MetricComparison) -> str:
    test = metric.test
    if test is None:
        return "v1"
    if test.method in ("paired", "duet"):  # pairs: one count
        return f"{test.method} {test.baseline_processes}"
    return f"{test.method.split()[0]} {test.baseline_processes}+{test.contender_processes}"


def _columns(report: ComparisonReport) -> tuple[str, ...]:
    confidence = f"{(1 - report.alpha) * 100:.3g}% CI"
    target = f"processes for {report.power_target:.0%}" if report.power_target else "processes needed"
    return ("metric", "unit", "baseline", "contender", "ratio", confidence, "p (Holm)", "verdict", "test",
            "p90 ratio", "p99 ratio", "detects", target)  # fmt: skip


def _cells(metric: MetricComparison, workload: WorkloadComparison, tail_intervals: bool = True) -> list[str]:
    return [
        METRIC_LABELS.get(metric.metric, metric.metric),
        metric.unit,
        format_figure(metric.median.baseline),
        format_figure(metric.median.contender),
        ratio_text(metric.median),
        ci_text(metric.median),
        _p_text(metric.p_adjusted),
        _verdict_text(metric, workload),
        _method_text(metric),
        _tail_text(metric, "p90", tail_intervals),
        _tail_text(metric, "p99", tail_intervals),
        _detect_text(metric),
        _processes_text(metric),
    ]


def _headline(workload: WorkloadComparison) -> str:
    outputs = {None: "outputs: no fingerprint", True: "OUTPUTS CHANGED", False: "outputs identical"}
    return (
        f"{neutral(workload.name)}  [workload {workload.workload_key}, {neutral(workload.device)}]  "
        f"verdict: {workload.verdict}; {outputs[workload.outputs_changed]}; "
        f"baseline {len(workload.baseline_runs)} process(es), contender {len(workload.contender_runs)} process(es)"
        + (f", {workload.design}" if workload.design else "")
    )


def workload_table(workload: WorkloadComparison, report: ComparisonReport) -> Table:
    table = Table(show_lines=False)
    for column in _columns(report):
        table.add_column(
            column,
            justify="left" if column in ("metric", "unit", "verdict", "test") else "right",
            no_wrap=column in ("verdict", "test", "ratio"),  # the words that decide are never cut
        )
    for metric in workload.metrics:
        cells: list[object] = list(_cells(metric, workload, tail_intervals=False))  # intervals: markdown, JSON
        cells[7] = Text(str(cells[7]), style=VERDICT_STYLES.get(metric.verdict, ""))
        table.add_row(*cells)
    return table


def _environment_lines(workload: WorkloadComparison) -> list[str]:
    if not workload.environment_differences:
        return ["environment: no recorded difference"]
    return ["environment differs:"] + [
        f"  {neutral(d.field, 60)}: {neutral(d.baseline, 60)} → {neutral(d.contender, 60)}"
        for d in workload.environment_differences
    ]


def _geometric_line(report: ComparisonReport) -> str | None:
    if not report.geometric_means:
        return None
    parts = [
        f"{METRIC_LABELS.get(g.metric, g.metric)} ×{g.ratio:.3f}" + ("" if g.ci_low is None else f" {ci_text(g)}")
        for g in report.geometric_means
    ]
    count = max(g.workloads for g in report.geometric_means)
    return f"geometric mean of contender ÷ baseline over {count} workload(s): " + ", ".join(parts)


def summary_lines(report: ComparisonReport) -> list[str]:
    lines = [line] if (line := _geometric_line(report)) is not None else []
    verdicts = [w.verdict for w in report.workloads]
    lines.append(
        f"{len(verdicts)} workload(s) compared: "
        + ", ".join(f"{verdicts.count(v)} {v}" for v in VERDICT_ORDER if verdicts.count(v))
        + f"; {len(report.unmatched)} run(s) unmatched or unusable"
    )
    if report.sequential is not None:
        look = report.sequential
        lines.append(
            f"stopped after {look.pairs} pair(s), look {look.look} of {look.looks}: {look.stopped_because} "
            f"(alpha {look.alpha_spent:.3g} at this look; the looks' alphas sum to {look.overall_alpha:g})"
        )
    return lines


LEGEND = (
    "each result is one process and gives one value per metric (log of its median over its calls); ratio = "
    "contender ÷ baseline of their geometric means (latency: >1 slower; throughput: >1 faster) with a t interval "
    "on those values (test: welch, paired for tokbench ab pairs, duet for duet pairs: each pair's median over its "
    "rounds of log(B call ÷ A call), or a stored between-process variance); p is "
    "Holm-adjusted over {tests} hypotheses (a latency and its reciprocal throughput are one); a verdict needs "
    "adjusted p < {alpha:.3g} and a change ≥ {min_effect:.1%} ('below min-effect': significant but smaller); "
    "one process a side gets no verdict without a stored between-process variance; p90/p99: quantiles of the "
    "calls with an order-statistic interval (none when the calls are too few; ITL gaps of one call are not "
    "independent); 'detects' = the smallest change of this metric alone that this rule finds with 80% power; "
    "'processes for X' = processes (pairs) a side it needs for a change of X"
)
LEGEND_V1 = (
    "version 1 comparison: ratio with a bootstrap CI over pooled calls and a Mann-Whitney p over calls; "
    "a verdict needed adjusted p < {alpha:.3g} and a change ≥ {min_effect:.1%}"
)


def _legend(report: ComparisonReport) -> str:
    template = LEGEND_V1 if report.schema_version < 2 else LEGEND
    tests = report.hypotheses if report.schema_version >= 2 else sum(len(w.metrics) for w in report.workloads)
    return template.format(tests=tests, alpha=report.alpha, min_effect=report.min_effect)


def ab_side_lines(
    ab_id: str, a: dict[str, Any], b: dict[str, Any], compared_fields: tuple[str, ...] = ()
) -> list[str]:
    """What differs between the sides of a ``tokbench ab`` as it was asked for: interpreter, variables, folder;
    a serving side's URL or launch command, label and client processes."""
    lines = [f"A/B {neutral(ab_id)}: config fields compared: {neutral(', '.join(compared_fields) or 'none')}"]
    for key in ("python", "cwd", "url", "launch", "label", "clients"):
        if a.get(key) != b.get(key):
            lines.append(f"  {key}: A {neutral(a.get(key) or '-', 100)} | B {neutral(b.get(key) or '-', 100)}")
    variables = sorted(set(a.get("environment") or {}) | set(b.get("environment") or {}))
    for name in variables:
        first, second = (a.get("environment") or {}).get(name), (b.get("environment") or {}).get(name)
        if first != second:
            lines.append(f"  env {neutral(name, 60)}: A {neutral(first or '-', 80)} | B {neutral(second or '-', 80)}")
    return lines


def _ab_lines(report: ComparisonReport) -> list[str]:
    ab = report.extra.get("ab") if isinstance(report.extra, dict) else None
    if not isinstance(ab, dict) or not isinstance(ab.get("sides"), dict):
        return []
    sides, fields = ab["sides"], ab.get("compared_fields") or []
    return ab_side_lines(str(ab.get("id", "")), sides.get("a") or {}, sides.get("b") or {}, tuple(map(str, fields)))


def render_terminal(report: ComparisonReport) -> Group:
    parts: list[object] = [
        Text(f"baseline {neutral(report.baseline_source)}  vs  contender {neutral(report.contender_source)}")
    ]
    for warning in report.warnings:
        parts.append(Text(f"WARNING: {neutral(warning, 300)}", style="bold red"))
    parts.extend(Text(line) for line in _ab_lines(report))
    for workload in report.workloads:
        parts.append(Text(_headline(workload), style="bold"))
        parts.append(workload_table(workload, report))
        for warning in workload.warnings:
            parts.append(Text(f"  warning: {neutral(warning, 300)}", style="red"))
        if workload.ignored_fields:
            parts.append(Text("  compared across: " + neutral("; ".join(workload.ignored_fields), 300)))
        parts.extend(Text(line) for line in _environment_lines(workload))
    if report.unmatched:
        parts.append(Text("not compared:", style="bold"))
        for run in report.unmatched:
            parts.append(Text(f"  {run.side} {neutral(run.origin)} ({neutral(run.name)}, workload "
                              f"{run.workload_key}): {neutral(run.why, 200)}"))  # fmt: skip
    parts.extend(Text(line, style="bold") for line in summary_lines(report))
    parts.append(Text(_legend(report), style="dim"))
    return Group(*parts)


def render_markdown(report: ComparisonReport) -> str:
    lines = [
        f"### tokbench compare: {markdown_text(report.baseline_source)} → {markdown_text(report.contender_source)}",
        "",
    ]
    lines.extend(f"> **WARNING:** {markdown_text(warning, 300)}" for warning in report.warnings)
    lines.extend(f"- {markdown_text(line, 300)}" for line in _ab_lines(report))
    for line in summary_lines(report):
        lines.append(f"**{markdown_text(line, 400)}**")
        lines.append("")
    for workload in report.workloads:
        lines.append(f"#### {markdown_text(_headline(workload), 400)}")
        lines.append("")
        columns = _columns(report)
        lines.append("| " + " | ".join(columns) + " |")
        aligned = ("---" if column in ("metric", "unit", "verdict", "test") else "--:" for column in columns)
        lines.append("|" + "|".join(aligned) + "|")
        for metric in workload.metrics:
            cells = [markdown_text(cell) for cell in _cells(metric, workload)]
            if metric.verdict in ("slower", "faster"):
                cells[7] = f"**{cells[7]}**"
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for warning in workload.warnings:
            lines.append(f"- warning: {markdown_text(warning, 300)}")
        if workload.ignored_fields:
            lines.append("- compared across: " + markdown_text("; ".join(workload.ignored_fields), 300))
        if workload.environment_differences:
            lines.append("- environment differs: " + "; ".join(
                f"{markdown_text(d.field, 60)} {markdown_text(d.baseline, 60)} → {markdown_text(d.contender, 60)}"
                for d in workload.environment_differences
            ))  # fmt: skip
        else:
            lines.append("- environment: no recorded difference")
        lines.append("")
    if report.unmatched:
        lines.append("Not compared:")
        lines.extend(
            f"- {run.side} {markdown_text(run.origin)} ({markdown_text(run.name)}): {markdown_text(run.why, 200)}"
            for run in report.unmatched
        )
        lines.append("")
    lines.append(f"<sub>{markdown_text(_legend(report), 1000)}</sub>")
    return "\n".join(lines) + "\n"


def render_json(report: ComparisonReport) -> str:
    return json.dumps(report.to_dict(), indent=1, allow_nan=False) + "\n"


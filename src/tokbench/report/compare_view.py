"""Rendering a ``ComparisonReport``: a rich terminal table, Markdown for a PR comment, JSON.

Names, origins, reasons and environment values come from result files anyone can write: every one passes
through ``neutral`` (control and bidi characters out, length capped) and, for Markdown, ``markdown_text``
(table and inline markup escaped) before it is printed.
"""

from __future__ import annotations

import json
import re

from rich.console import Group
from rich.table import Table
from rich.text import Text

from tokbench.analysis.metrics import METRIC_LABELS
from tokbench.report.terminal import format_figure
from tokbench.schema.comparison import ComparisonReport, MetricComparison, StatisticRatio, WorkloadComparison
from tokbench.text import terminal_safe

VERDICT_STYLES = {"faster": "bold green", "slower": "bold red", "inconclusive": "yellow", "no significant change": ""}
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


def ci_text(ratio: StatisticRatio) -> str:
    return f"[{ratio.ci_low:.3f}, {ratio.ci_high:.3f}]"


def _verdict_text(metric: MetricComparison, workload: WorkloadComparison) -> str:
    if metric.verdict == "faster" and workload.outputs_changed:
        return "faster, OUTPUTS CHANGED"
    return metric.verdict


def _p_text(value: float) -> str:
    return f"{value:.2g}" if value >= 1e-4 else "<1e-4"


def _detect_text(metric: MetricComparison) -> str:
    return f"≥{metric.detectable_change:.1%}"


def _headline(workload: WorkloadComparison) -> str:
    outputs = {None: "outputs: no fingerprint", True: "OUTPUTS CHANGED", False: "outputs identical"}
    return (
        f"{neutral(workload.name)}  [workload {workload.workload_key}, {neutral(workload.device)}]  "
        f"verdict: {workload.verdict}; {outputs[workload.outputs_changed]}; "
        f"baseline {len(workload.baseline_runs)} run(s), contender {len(workload.contender_runs)} run(s)"
    )


def workload_table(workload: WorkloadComparison) -> Table:
    table = Table(show_lines=False)
    for column in ("metric", "unit", "baseline", "contender", "ratio", "95% CI", "p (Holm)", "verdict",
                   "p90 ratio", "p99 ratio", "detects", "calls for 1%"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("metric", "unit", "verdict") else "right")
    for metric in workload.metrics:
        tails = {tail.statistic: tail for tail in metric.tails}
        verdict = _verdict_text(metric, workload)
        table.add_row(
            METRIC_LABELS.get(metric.metric, metric.metric),
            metric.unit,
            format_figure(metric.median.baseline),
            format_figure(metric.median.contender),
            ratio_text(metric.median),
            ci_text(metric.median),
            _p_text(metric.p_adjusted),
            Text(verdict, style=VERDICT_STYLES.get(metric.verdict, "")),
            ratio_text(tails["p90"]) if "p90" in tails else "-",
            ratio_text(tails["p99"]) if "p99" in tails else "-",
            _detect_text(metric),
            f"{metric.calls_for_1pct:,}",
        )
    return table


def _environment_lines(workload: WorkloadComparison) -> list[str]:
    if not workload.environment_differences:
        return ["environment: no recorded difference"]
    return ["environment differs:"] + [
        f"  {neutral(d.field, 60)}: {neutral(d.baseline, 60)} → {neutral(d.contender, 60)}"
        for d in workload.environment_differences
    ]


def summary_lines(report: ComparisonReport) -> list[str]:
    lines = []
    if report.geometric_means:
        parts = [f"{METRIC_LABELS.get(g.metric, g.metric)} ×{g.ratio:.3f}" for g in report.geometric_means]
        count = max(g.workloads for g in report.geometric_means)
        lines.append(f"geometric mean of contender ÷ baseline medians over {count} workload(s): " + ", ".join(parts))
    verdicts = [w.verdict for w in report.workloads]
    lines.append(
        f"{len(verdicts)} workload(s) compared: "
        + ", ".join(
            f"{verdicts.count(v)} {v}"
            for v in ("slower", "faster", "no significant change", "inconclusive")
            if verdicts.count(v)
        )
        + f"; {len(report.unmatched)} run(s) unmatched or unusable"
    )
    return lines


LEGEND = (
    "ratio = contender ÷ baseline median (latency: >1 slower; throughput: >1 faster); 95% CI from {resamples} "
    "bootstrap resamples of whole calls (seed {seed}); p = Mann-Whitney U on one value per call, Holm-adjusted over "
    "{tests} tests; a verdict needs adjusted p < {alpha:g} and a change ≥ {min_effect:.1%}; 'detects' = the smallest "
    "change detectable at 80% power; 'calls for 1%' = the calls per side a 1% change would need"
)


def _legend(report: ComparisonReport) -> str:
    tests = sum(len(w.metrics) for w in report.workloads)
    return LEGEND.format(resamples=report.resamples, seed=report.seed, tests=tests, alpha=report.alpha,
                         min_effect=report.min_effect)  # fmt: skip


def render_terminal(report: ComparisonReport) -> Group:
    parts: list[object] = [
        Text(f"baseline {neutral(report.baseline_source)}  vs  contender {neutral(report.contender_source)}")
    ]
    for warning in report.warnings:
        parts.append(Text(f"WARNING: {neutral(warning, 300)}", style="bold red"))
    for workload in report.workloads:
        parts.append(Text(_headline(workload), style="bold"))
        parts.append(workload_table(workload))
        for warning in workload.warnings:
            parts.append(Text(f"  warning: {neutral(warning, 300)}", style="red"))
        if workload.ignored_fields:
            parts.append(Text("  compared across (--ignore): " + neutral("; ".join(workload.ignored_fields), 300)))
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
    for line in summary_lines(report):
        lines.append(f"**{markdown_text(line, 400)}**")
        lines.append("")
    for workload in report.workloads:
        lines.append(f"#### {markdown_text(_headline(workload), 400)}")
        lines.append("")
        lines.append(
            "| metric | unit | baseline | contender | ratio | 95% CI | p (Holm) | verdict | p90 | p99 | detects "
            "| calls for 1% |"
        )
        lines.append("|---|---|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|")
        for metric in workload.metrics:
            tails = {tail.statistic: tail for tail in metric.tails}
            verdict = _verdict_text(metric, workload)
            if metric.verdict in ("slower", "faster"):
                verdict = f"**{verdict}**"
            cells = [
                METRIC_LABELS.get(metric.metric, metric.metric),
                metric.unit,
                format_figure(metric.median.baseline),
                format_figure(metric.median.contender),
                ratio_text(metric.median),
                ci_text(metric.median),
                markdown_text(_p_text(metric.p_adjusted)),
                verdict,
                ratio_text(tails["p90"]) if "p90" in tails else "-",
                ratio_text(tails["p99"]) if "p99" in tails else "-",
                _detect_text(metric),
                f"{metric.calls_for_1pct:,}",
            ]
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


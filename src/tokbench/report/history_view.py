"""Rendering a ``HistoryChangesReport`` (``tokbench regressions``): a rich terminal table, Markdown for CI, JSON.

Names and run descriptions come from results anyone can write: every one passes through ``neutral`` (and
``markdown_text`` for Markdown) before it is printed.
"""

from __future__ import annotations

import json

from rich.table import Table
from rich.text import Text

from tokbench.analysis.metrics import METRIC_LABELS
from tokbench.report.compare_view import VERDICT_STYLES, markdown_text, neutral
from tokbench.report.terminal import format_figure
from tokbench.results.history import HistoryChange, HistoryChangesReport, WorkloadHistory

METHOD = (
    "E-divisive means (Matteson & James) over both ends of the changed segment, permutation test with exact ties; "
    "autocorrelated histories prewhitened"
)


def _label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def location_text(change: HistoryChange) -> str:
    """Where the new level starts, as positions in the series (#1 = the oldest run)."""
    where = f"{change.first_run} (#{change.index + 1})" if change.first_run else f"#{change.index + 1}"
    if change.earliest == change.latest:
        return where
    return f"{where}, or any of #{change.earliest + 1}–#{change.latest + 1}"


def legend(report: HistoryChangesReport) -> str:
    family = (
        f"; {report.series_tested} series, each tested at {report.tested_at:.2g} (Bonferroni: any false alarm over "
        f"the store ≤ {report.significance:g})"
        if report.series_tested > 1
        else ""
    )
    return (
        f"a change needs at least {report.min_size} runs on each side (2 at the newest end) and a permutation "
        f"p-value ≤ {report.tested_at:.2g} ({report.permutations:,} permutations at most){family}; the culprit "
        "commit is after the first commit shown and up to the second"
    )


def quiet_lines(report: HistoryChangesReport) -> list[str]:
    """One line per series without a change: why nothing was found, or what the newest runs show."""
    lines = []
    for workload in report.workloads:
        head = f"{neutral(workload.name)} [{workload.workload_key}] {_label(workload.metric)}: {workload.runs} run(s)"
        if workload.note:
            lines.append(f"{head}: {neutral(workload.note, 300)}")
        elif not workload.changes:
            lines.append(f"{head}: no change point")
        if workload.watch is not None:
            lines.append(f"{head}: watch: {neutral(workload.watch.note, 300)}")
        if workload.autocorrelation > 0:
            lines.append(f"{head}: runs drift together (ρ ≈ {workload.autocorrelation:.2f}), prewhitened first")
    return lines


def _rows(report: HistoryChangesReport) -> list[tuple[WorkloadHistory, HistoryChange]]:
    return [(workload, change) for workload in report.workloads for change in workload.changes]


def history_changes_table(report: HistoryChangesReport) -> list[object]:
    """``tokbench regressions``: a table of every change point, then the series without one."""
    metrics = ", ".join(_label(m) for m in report.metrics or (report.metric,))
    table = Table(title=f"change points in the per-run median {metrics} ({METHOD})")
    table.add_column("workload", overflow="fold")
    table.add_column("metric")
    table.add_column("runs", justify="right")
    table.add_column("change", no_wrap=True)
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_column("p", justify="right")
    table.add_column("first run at the new level", overflow="fold")
    table.add_column("bisect", no_wrap=True)
    for workload, change in _rows(report):
        style = VERDICT_STYLES.get(change.direction, "")
        table.add_row(
            f"{neutral(workload.name, 50)} [{workload.workload_key}]",
            _label(change.metric),
            str(workload.runs),
            Text(f"{change.relative_change:+.1%} {change.direction}", style=style),
            format_figure(change.before_median),
            format_figure(change.after_median),
            f"{change.p_value:.2g}",
            neutral(location_text(change), 80) + (f"; {change.note}" if change.note else ""),
            neutral(change.commit_range or "-", 40),
        )
    found = [table] if _rows(report) else [Text(f"no change point in the per-run median {metrics}")]
    parts: list[object] = [*found]
    parts.extend(Text(line) for line in quiet_lines(report))
    parts.append(Text(legend(report), style="dim"))
    return parts


def render_markdown(report: HistoryChangesReport) -> str:
    metrics = ", ".join(_label(m) for m in report.metrics or (report.metric,))
    rows = _rows(report)
    slower = sum(change.direction == "slower" for _, change in rows)
    lines = [f"### tokbench regressions: {metrics}", ""]
    lines.append(f"**{len(rows)} change point(s), {slower} slower, over {len(report.workloads)} series**")
    lines.append("")
    if rows:
        lines.append("| workload | metric | runs | change | before | after | p | first run at the new level | bisect |")
        lines.append("|---|---|--:|---|--:|--:|--:|---|---|")
        for workload, change in rows:
            change_text = f"{change.relative_change:+.1%} {change.direction}"
            if change.direction == "slower":
                change_text = f"**{change_text}**"
            cells = [
                f"{markdown_text(workload.name, 60)} \\[{workload.workload_key}\\]",
                _label(change.metric),
                str(workload.runs),
                change_text,
                format_figure(change.before_median),
                format_figure(change.after_median),
                f"{change.p_value:.2g}",
                markdown_text(location_text(change) + (f"; {change.note}" if change.note else ""), 300),
                markdown_text(change.commit_range or "-", 40),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines.extend(f"- {markdown_text(line, 400)}" for line in quiet_lines(report))
    lines.append("")
    lines.append(f"<sub>{markdown_text(legend(report) + '; ' + METHOD, 1000)}</sub>")
    return "\n".join(lines) + "\n"


def render_json(report: HistoryChangesReport) -> str:
    return json.dumps(report.to_dict(), indent=1, allow_nan=False) + "\n"

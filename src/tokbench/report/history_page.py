"""The history page of ``tokbench report STORE --history``: per workload and metric, the per-run medians over
time with their 95% intervals, the levels between change points and each change marked with its magnitude and
the commits to bisect; drop-downs filter by model and metric.

The change points are ``results.history.find_history_changes`` for each metric the inputs hold a median for,
family-wise at 1% over the workloads (as ``tokbench regressions --metric M`` for each metric M). Same page model,
escaping and offline rules as every report page (``report.html``): text is escaped there, plot strings by
``report.figures``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokbench.analysis.metrics import METRIC_LABELS, METRIC_UNITS
from tokbench.report.data import ReportError, ReportInput
from tokbench.report.figures import LINES, LINES_MARKERS, PALETTE, FigureSpec, Marker, Series
from tokbench.report.html import check_output, render_html
from tokbench.report.page_model import Filter, Page, Report, Section, Table, fmt, num, txt
from tokbench.results.history import (
    DEFAULT_METRIC,
    HistoryChange,
    HistoryChangesReport,
    WorkloadHistory,
    find_history_changes,
    metrics_held,
)
from tokbench.results.outputs import write_output_text
from tokbench.results.selectors import SelectedRun

PAGE_ID = "history"


def selected_runs(items: Sequence[ReportInput]) -> list[SelectedRun]:
    """The report's inputs as the runs a history is made of (commit from each result's environment)."""
    runs = []
    for item in items:
        runs.append(SelectedRun(item.result, item.source, item.run_id, item.result.started_at,
                                item.result.environment.commit))  # fmt: skip
    return runs


def _levels(workload: WorkloadHistory) -> Series:
    """The median of each segment between change points, drawn as a step line."""
    bounds = [0, *(change.index for change in workload.changes), workload.runs]
    medians = [workload.changes[0].before_median] if workload.changes else [_median(workload.series)]
    medians += [change.after_median for change in workload.changes]
    x: list[float] = []
    y: list[float | None] = []
    for (start, stop), level in zip(itertools.pairwise(bounds), medians, strict=True):
        x += [start + 0.5, stop + 0.5]
        y += [level, level]
    return Series("level between change points", tuple(x), tuple(y), LINES, color=PALETTE[1])


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def change_label(change: HistoryChange) -> str:
    where = f"{change.relative_change:+.1%} {change.direction}"
    return f"{where}, bisect {change.commit_range}" if change.commit_range else where


def _figure(workload: WorkloadHistory, key: str) -> FigureSpec:
    history = workload.history
    x = tuple(range(1, len(history) + 1))
    bands = all(run.ci_low is not None and run.ci_high is not None for run in history)
    hover = tuple(f"#{i} run {run.run_id} · {run.started_at} · commit {run.commit or '-'} · median {fmt(run.median)}"
                  for i, run in enumerate(history, start=1))  # fmt: skip
    medians = Series(
        "per-run median", x, tuple(run.median for run in history), LINES_MARKERS,
        band_low=tuple(run.ci_low or 0.0 for run in history) if bands else (),
        band_high=tuple(run.ci_high or 0.0 for run in history) if bands else (),
        band_name="95% interval of the run's median", hover=hover, color=PALETTE[0],
    )  # fmt: skip
    markers = tuple(Marker(change.index + 0.5, change_label(change), "dash",
                           PALETTE[3] if change.direction == "slower" else PALETTE[2])
                    for change in workload.changes)  # fmt: skip
    label = METRIC_LABELS.get(workload.metric, workload.metric)
    return FigureSpec(
        key=key, title=f"{label} of {workload.name} ({workload.model}), run by run", x_title="run (oldest first)",
        y_title=f"median {label} ({METRIC_UNITS.get(workload.metric, '')})", series=(medians, _levels(workload)),
        markers=markers, x_integer=True,
    )  # fmt: skip


def _tables(workload: WorkloadHistory, table_id: str) -> tuple[Table, ...]:
    changes = tuple(
        (txt(f"#{change.index + 1}" + (f" (any of #{change.earliest + 1}–#{change.latest + 1})"
                                       if change.earliest != change.latest else "")),
         txt(f"{change.relative_change:+.1%}"), txt(change.direction), num(change.before_median),
         num(change.after_median), num(change.p_value, 2), txt(change.commit_range or "-"), txt(change.note))
        for change in workload.changes
    )  # fmt: skip
    runs = tuple(
        (num(i), txt(run.run_id), txt(run.started_at), txt(run.commit or "-"), num(run.median), num(run.ci_low),
         num(run.ci_high))
        for i, run in enumerate(workload.history, start=1)
    )  # fmt: skip
    tables = []
    if changes:
        columns = ("first run at the new level", "change", "direction", "before", "after", "p", "bisect", "note")
        tables.append(Table(columns, changes, caption="change points", table_id=f"{table_id}-changes"))
    tables.append(Table(("#", "run", "started", "commit", "median", "95% low", "95% high"), runs,
                        caption="runs", table_id=f"{table_id}-runs", scroll=True))  # fmt: skip
    return tuple(tables)


def _lines(workload: WorkloadHistory) -> tuple[str, ...]:
    lines = [f"{workload.runs} run(s); workload {workload.workload_key}"]
    if workload.note:
        lines.append(workload.note)
    if workload.watch is not None:
        lines.append("watch: " + workload.watch.note)
    if workload.autocorrelation > 0:
        lines.append(f"runs drift together (ρ ≈ {workload.autocorrelation:.2f}): prewhitened before the search")
    if not workload.changes and not workload.note:
        lines.append("no change point")
    return tuple(lines)


def history_page(reports: Sequence[HistoryChangesReport]) -> Page:
    workloads = [workload for report in reports for workload in report.workloads]
    sections = []
    for number, workload in enumerate(workloads, start=1):
        key = f"history-{number}"
        sections.append(Section(
            f"{workload.name} · {workload.model} · {METRIC_LABELS.get(workload.metric, workload.metric)}",
            _figure(workload, key), _tables(workload, key), _lines(workload),
            tags=(("model", workload.model), ("metric", workload.metric)),
        ))  # fmt: skip
    models = tuple(dict.fromkeys(workload.model for workload in workloads))
    metrics = tuple(dict.fromkeys(workload.metric for workload in workloads))
    default_metric = DEFAULT_METRIC if DEFAULT_METRIC in metrics else ""
    changes = sum(len(workload.changes) for workload in workloads)
    significance = reports[0].significance if reports else 0.0
    subtitle = (
        f"{len({w.workload_key for w in workloads})} workload(s), {len(metrics)} metric(s), {changes} change "
        f"point(s); per metric, any false alarm over the workloads ≤ {significance:g} (Bonferroni); E-divisive means "
        "over both ends of a changed segment, as `tokbench regressions`"
    )
    filters = (
        Filter("model", "model", tuple((model, model) for model in models)),
        Filter("metric", "metric", tuple((m, METRIC_LABELS.get(m, m)) for m in metrics), default_metric),
    )
    return Page(PAGE_ID, "History", subtitle, tuple(sections), filters=filters)


def write_history_report(
    items: Sequence[ReportInput],
    output: str | Path,
    plain_js: bool = False,
    inputs: Iterable[str | Path] = (),
    force: bool = False,
) -> Path:
    """The history page alone, written atomically to ``output`` under the one output rule (``html.check_output``)."""
    target = check_output(output, inputs, force)
    runs = selected_runs(items)
    metrics = metrics_held(runs)
    if not metrics:
        raise ReportError("no ok run with a median to follow over time: --history needs stored ok runs")
    reports = [find_history_changes(runs, metric) for metric in metrics]
    title = f"tokbench history: {len(items)} runs"
    page = history_page(reports)
    return write_output_text(target, render_html(Report(title=title, pages=(page,)), plain_js=plain_js))


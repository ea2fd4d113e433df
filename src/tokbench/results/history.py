"""Change points over the stored history of each workload (``tokbench regressions``, ``history --changes``).

Runs are grouped by workload key and ordered by start time; each (workload, metric) series is the per-run median
of that metric, with the run's 95% interval of it; ``analysis.changepoints`` finds its change points. Each change
carries the runs and git commits around it: the range to bisect, which spans every run that may be the first at
the new level.

Many workloads (and metrics) at once: each series is tested at ``significance / series`` (Bonferroni), so a
store in which nothing changed raises any alarm with probability at most ``significance`` (family-wise error,
under any dependence between the series), the same guarantee ``tokbench compare`` gives with Holm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tokbench.analysis.changepoints import (
    DEFAULT_END_SIZE,
    DEFAULT_MIN_SIZE,
    DEFAULT_SIGNIFICANCE,
    ChangePoint,
    NewestRuns,
    analyse_series,
    automatic_permutations,
    settings_problem,
)
from tokbench.analysis.compare import HIGHER_IS_BETTER
from tokbench.analysis.metrics import METRIC_UNITS
from tokbench.errors import TokbenchError
from tokbench.results.selectors import SelectedRun, workload_key_of
from tokbench.schema.results import STATUS_OK

DEFAULT_METRIC = "e2e_latency_ms"


class HistorySettingsError(TokbenchError):
    """Settings under which no change could ever be significant; the message says what would work."""


@dataclass(frozen=True)
class HistoryRun:
    """One run of a series: its median of the metric and that median's 95% interval (when stored)."""

    run_id: int | None
    started_at: str
    commit: str  # the first 12 characters, "" when not recorded
    median: float
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class HistoryChange:
    workload_key: str
    name: str
    metric: str
    index: int  # position in the series of the (most likely) first run at the new level
    earliest: int  # every run from earliest to latest may be the first at the new level
    latest: int
    before_median: float
    after_median: float
    relative_change: float  # after / before − 1
    direction: str  # "slower" or "faster"
    p_value: float
    runs_after: int  # runs at the new level (up to the next change or the newest run)
    last_before: str  # "run 12 (commit abc1234, 2026-11-23T10:00:00+00:00)": the last run surely before
    first_after: str  # the first run surely after
    commit_range: str  # "abc1234..def5678" (bisect: the culprit is after the first, up to the second)
    note: str = ""  # e.g. a change that rests on the newest runs only
    first_run: str = ""  # the most likely first run at the new level: "run 133" (or the file it came from)


@dataclass(frozen=True)
class NewestRunsWatch:
    """The newest runs are off their level but too few to test."""

    runs: int
    relative_change: float
    sigmas: float
    runs_needed: int
    note: str


@dataclass(frozen=True)
class WorkloadHistory:
    workload_key: str
    name: str
    model: str
    metric: str
    runs: int
    series: tuple[float, ...]
    changes: tuple[HistoryChange, ...]
    note: str = ""  # why the series cannot (or only partly) be decided, and what would decide it
    history: tuple[HistoryRun, ...] = ()
    autocorrelation: float = 0.0  # the ρ removed before the search (0: the runs looked independent)
    watch: NewestRunsWatch | None = None


@dataclass(frozen=True)
class HistoryChangesReport:
    metric: str  # the first metric (all of them: ``metrics``)
    min_size: int
    permutations: int
    significance: float  # family-wise: the chance of any false alarm over every series
    workloads: tuple[WorkloadHistory, ...]
    metrics: tuple[str, ...] = ()
    series_tested: int = 0
    tested_at: float = 0.0  # each series' level: significance / series_tested

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _where(run: SelectedRun) -> str:
    return f"run {run.run_id}" if run.run_id is not None else run.origin


def _describe(run: SelectedRun) -> str:
    commit = (run.git_commit or "")[:12]
    return f"{_where(run)} (commit {commit or 'unknown'}, {run.started_at})"


def _change(
    point: ChangePoint, ordered: Sequence[SelectedRun], key: str, metric: str, min_size: int
) -> HistoryChange:
    before, after = ordered[point.earliest - 1], ordered[point.latest]
    worse = (point.after_median > point.before_median) != (metric in HIGHER_IS_BETTER)
    commits = (before.git_commit or "")[:12], (after.git_commit or "")[:12]
    note = ""
    if point.index + point.runs_after == len(ordered) and point.runs_after < min_size:
        note = (
            f"rests on the newest {point.runs_after} runs only; {min_size - point.runs_after} more run(s) at this "
            "level would confirm a level rather than a pair of outliers"
        )
    return HistoryChange(
        workload_key=key,
        name=ordered[-1].result.config.name,
        metric=metric,
        index=point.index,
        earliest=point.earliest,
        latest=point.latest,
        before_median=point.before_median,
        after_median=point.after_median,
        relative_change=point.relative_change,
        direction="slower" if worse else "faster",
        p_value=point.p_value,
        runs_after=point.runs_after,
        last_before=_describe(before),
        first_after=_describe(after),
        commit_range=f"{commits[0]}..{commits[1]}" if all(commits) else "",
        note=note,
        first_run=_where(ordered[point.index]),
    )


def _watch(newest: NewestRuns | None, metric: str) -> NewestRunsWatch | None:
    if newest is None:
        return None
    worse = (newest.relative_change > 0) != (metric in HIGHER_IS_BETTER)
    note = (
        f"the newest {newest.runs} run(s) are {newest.relative_change:+.1%} ({'slower' if worse else 'faster'}, "
        f"{newest.sigmas:.0f}σ of the run-to-run spread) off their level: too few to tell a change from outliers; "
        f"{newest.runs_needed} newest runs at that level can confirm it"
    )
    return NewestRunsWatch(newest.runs, newest.relative_change, newest.sigmas, newest.runs_needed, note)


def _history_runs(ordered: Sequence[SelectedRun], metric: str) -> tuple[HistoryRun, ...]:
    rows = []
    for run in ordered:
        summary = run.result.summary[metric]
        low, high = summary.median_ci if summary.median_ci is not None else (None, None)
        rows.append(HistoryRun(run.run_id, run.started_at, (run.git_commit or "")[:12], summary.median, low, high))
    return tuple(rows)


def series_by_workload(runs: Sequence[SelectedRun], metric: str) -> dict[str, list[SelectedRun]]:
    """The ok runs holding ``metric`` by workload key, each list ordered by start time (then run id)."""
    groups: dict[str, list[SelectedRun]] = {}
    for run in runs:
        if run.result.status == STATUS_OK and metric in run.result.summary:
            groups.setdefault(workload_key_of(run.result), []).append(run)
    return {key: sorted(members, key=lambda run: (run.started_at, run.run_id or 0)) for key, members in groups.items()}


def metrics_held(runs: Sequence[SelectedRun]) -> tuple[str, ...]:
    """Every metric (of ``METRIC_UNITS``, in its order) that some ok run holds a median for."""
    held = {name for run in runs if run.result.status == STATUS_OK for name in run.result.summary}
    return tuple(name for name in METRIC_UNITS if name in held)


def find_history_changes(
    runs: Sequence[SelectedRun],
    metric: str | Sequence[str] = DEFAULT_METRIC,
    *,
    min_size: int = DEFAULT_MIN_SIZE,
    end_size: int = DEFAULT_END_SIZE,
    permutations: int | None = None,
    significance: float = DEFAULT_SIGNIFICANCE,
    seed: int = 0,
) -> HistoryChangesReport:
    """Change points of every (workload, metric) series, with a family-wise ``significance`` over all of them.

    ``permutations`` None: enough for the per-series level. Settings that could never reach it raise
    ``HistorySettingsError``.
    """
    metrics = (metric,) if isinstance(metric, str) else tuple(metric)
    grouped = {name: series_by_workload(runs, name) for name in metrics}
    tested = sum(len(members) >= min_size + end_size for groups in grouped.values() for members in groups.values())
    tested_at = significance / max(1, tested)
    if permutations is None:
        permutations = automatic_permutations(tested_at)
    problem = settings_problem(permutations, tested_at)
    if problem:
        family = f" (--significance {significance:g} over {tested} series)" if tested > 1 else ""
        raise HistorySettingsError(problem + family)
    workloads = []
    for name in metrics:
        for key, ordered in grouped[name].items():
            workloads.append(
                _workload(ordered, key, name, min_size=min_size, end_size=end_size, permutations=permutations,
                          tested_at=tested_at, seed=seed)
            )  # fmt: skip
    return HistoryChangesReport(
        metric=metrics[0], min_size=min_size, permutations=permutations, significance=significance,
        workloads=tuple(workloads), metrics=metrics, series_tested=tested, tested_at=tested_at,
    )  # fmt: skip


def _workload(
    ordered: Sequence[SelectedRun], key: str, metric: str, *, min_size: int, end_size: int, permutations: int,
    tested_at: float, seed: int,
) -> WorkloadHistory:  # fmt: skip
    series = [run.result.summary[metric].median for run in ordered]
    analysis = analyse_series(series, min_size=min_size, end_size=end_size, permutations=permutations,
                              significance=tested_at, seed=seed)  # fmt: skip
    latest = ordered[-1].result.config
    return WorkloadHistory(
        workload_key=key,
        name=latest.name,
        model=latest.model,
        metric=metric,
        runs=len(series),
        series=tuple(series),
        changes=tuple(_change(point, ordered, key, metric, min_size) for point in analysis.changes),
        note=analysis.note,
        history=_history_runs(ordered, metric),
        autocorrelation=analysis.autocorrelation,
        watch=_watch(analysis.watch, metric),
    )

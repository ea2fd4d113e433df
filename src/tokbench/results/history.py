"""Change points over the stored history of each workload (``tokbench regressions``, ``history --changes``).

Runs are grouped by workload key and ordered by start time; each workload's series is the per-run median of
one metric; ``analysis.changepoints`` finds its change points. Each change carries the runs and git commits on
either side of it: the range to bisect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tokbench.analysis.changepoints import find_change_points
from tokbench.analysis.compare import HIGHER_IS_BETTER
from tokbench.results.selectors import SelectedRun, workload_key_of
from tokbench.schema.results import STATUS_OK


@dataclass(frozen=True)
class HistoryChange:
    workload_key: str
    name: str
    metric: str
    index: int  # position in the workload's series of the first run at the new level
    before_median: float
    after_median: float
    relative_change: float  # after / before − 1
    direction: str  # "slower" or "faster"
    p_value: float
    last_before: str  # "run 12 (commit abc1234, 2026-11-23T10:00:00+00:00)"
    first_after: str
    commit_range: str  # "abc1234..def5678" (bisect hint), or "" without commits


@dataclass(frozen=True)
class WorkloadHistory:
    workload_key: str
    name: str
    runs: int
    series: tuple[float, ...]
    changes: tuple[HistoryChange, ...]
    note: str = ""  # e.g. "too few runs"


@dataclass(frozen=True)
class HistoryChangesReport:
    metric: str
    min_size: int
    permutations: int
    significance: float
    workloads: tuple[WorkloadHistory, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _describe(run: SelectedRun) -> str:
    where = f"run {run.run_id}" if run.run_id is not None else run.origin
    commit = (run.git_commit or "")[:12]
    return f"{where} (commit {commit or 'unknown'}, {run.started_at})"


def find_history_changes(
    runs: Sequence[SelectedRun],
    metric: str = "e2e_latency_ms",
    *,
    min_size: int = 3,
    permutations: int = 199,
    significance: float = 0.01,
    seed: int = 0,
) -> HistoryChangesReport:
    groups: dict[str, list[SelectedRun]] = {}
    for run in runs:
        if run.result.status == STATUS_OK and metric in run.result.summary:
            groups.setdefault(workload_key_of(run.result), []).append(run)
    workloads = []
    for key, members in groups.items():
        ordered = sorted(members, key=lambda run: (run.started_at, run.run_id or 0))
        series = [run.result.summary[metric].median for run in ordered]
        name = ordered[-1].result.config.name
        if len(series) < 2 * min_size:
            workloads.append(
                WorkloadHistory(key, name, len(series), tuple(series), (), note=f"too few runs (need {2 * min_size})")
            )
            continue
        changes = []
        for point in find_change_points(
            series, min_size=min_size, permutations=permutations, significance=significance, seed=seed
        ):
            before, after = ordered[point.index - 1], ordered[point.index]
            worse = (point.after_median > point.before_median) != (metric in HIGHER_IS_BETTER)
            commits = (before.git_commit or "")[:12], (after.git_commit or "")[:12]
            changes.append(
                HistoryChange(
                    workload_key=key,
                    name=name,
                    metric=metric,
                    index=point.index,
                    before_median=point.before_median,
                    after_median=point.after_median,
                    relative_change=point.relative_change,
                    direction="slower" if worse else "faster",
                    p_value=point.p_value,
                    last_before=_describe(before),
                    first_after=_describe(after),
                    commit_range=f"{commits[0]}..{commits[1]}" if all(commits) else "",
                )
            )
        workloads.append(WorkloadHistory(key, name, len(series), tuple(series), tuple(changes)))
    return HistoryChangesReport(
        metric=metric, min_size=min_size, permutations=permutations, significance=significance,
        workloads=tuple(workloads),
    )  # fmt: skip

"""Stored histories of known truth for the change-point tests: a real stored result (tests/data), its per-run
medians of every metric scaled run by run, each run with its own commit and start time, in a real SQLite store."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tokbench.results.selectors import SelectedRun
from tokbench.results.store import ResultStore
from tokbench.schema.environment import GitState
from tokbench.schema.results import BenchmarkResult, load_result

BASE_RESULT = Path(__file__).parent / "data" / "result-v2.json"
START = datetime(2026, 11, 1, 10, 0, tzinfo=timezone.utc)


def _scaled(summary: object, factor: float) -> object:
    interval = getattr(summary, "median_ci", None)
    return dataclasses.replace(
        summary,  # type: ignore[type-var]
        median=summary.median * factor,  # type: ignore[attr-defined]
        median_ci=None if interval is None else (interval[0] * factor, interval[1] * factor),
    )


def history_result(base: BenchmarkResult, index: int, factor: float, *, model: str | None = None) -> BenchmarkResult:
    """``base`` as run number ``index`` of a history: latency medians × ``factor`` (throughputs ÷ it), its own
    commit (``index`` as 12 hex digits then c's) and start time (one hour apart)."""
    summary = {
        name: _scaled(value, 1 / factor if name.endswith("_tok_s") else factor) for name, value in base.summary.items()
    }
    config = base.config if model is None else base.config.replace(model=model)
    environment = dataclasses.replace(base.environment, git=GitState(f"{index:012x}" + "c" * 28, False))
    return dataclasses.replace(
        base,
        config=config,
        summary=summary,
        environment=environment,
        started_at=(START + timedelta(hours=index)).isoformat(),
    )


def commit_of(index: int) -> str:
    return f"{index:012x}"


def write_history_store(path: Path, factors: Mapping[str, Sequence[float]]) -> Path:
    """A store with one workload per model in ``factors``, run i of it scaled by ``factors[model][i]``; runs of
    all workloads interleaved in time, as a nightly job stores them."""
    base = load_result(BASE_RESULT)
    length = max(len(series) for series in factors.values())
    with ResultStore(path) as store:
        for index in range(length):
            for model, series in factors.items():
                if index < len(series):
                    store.add(history_result(base, index, series[index], model=model))
    return path


def history_runs(factors: Mapping[str, Sequence[float]]) -> list[SelectedRun]:
    """The same history as ``write_history_store`` writes, as selected runs in memory (no store)."""
    base = load_result(BASE_RESULT)
    runs = []
    for model, series in factors.items():
        for index, factor in enumerate(series):
            result = history_result(base, index, factor, model=model)
            runs.append(SelectedRun(result, f"{model} #{index}", len(runs) + 1, result.started_at, commit_of(index)))
    return runs

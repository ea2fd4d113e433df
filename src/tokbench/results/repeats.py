"""The machine's between-process variance of a workload, from repeats stored in a results store.

A side of one process has no spread of its own; ``compare`` asks ``StoredRepeats`` for the variance of the
workload's process values on the same machine: groups of ok runs of one config in one sweep (``sweep --repeat
K``) or one side of a ``tokbench ab``, the processes being compared left out (``run_identity``).
"""

from __future__ import annotations

from pathlib import Path

from tokbench.analysis import compare as stats
from tokbench.results.selectors import SelectedRun
from tokbench.schema.environment import EnvironmentRecord
from tokbench.schema.results import STATUS_OK, BenchmarkResult

__all__ = ["StoredRepeats", "machine_of", "run_identity", "stored_repeats"]


def run_identity(result: BenchmarkResult) -> str:
    """What identifies one measured process wherever its result was read from (a file, a store): its config,
    start and the monotonic instant its first measured call started."""
    first = result.iterations[0].t0_ns if result.iterations else None
    return f"{result.config_hash}:{result.started_at}:{first}"


def machine_of(environment: EnvironmentRecord) -> str:
    """What identifies a machine in a result's environment: CPU model and count, memory, GPU names."""
    gpus = ",".join(gpu.name for gpu in environment.gpus)
    parts = (environment.cpu, environment.cpu_count, environment.memory_bytes, gpus)
    return "|".join(str(part) for part in parts)


def stored_repeats(db: str | None, *specs: str) -> StoredRepeats | None:
    """Where to look for stored repeats: ``db``, else the store a side's selector names; None without one."""
    from tokbench.results.selectors import store_path_of

    for candidate in (db, *(store_path_of(spec) for spec in specs)):
        if candidate and Path(candidate).is_file():
            return StoredRepeats(Path(candidate))
    return None


class StoredRepeats:
    """Groups of repeats in a store (ok runs of one config in one sweep or ab side, on one machine), read on
    demand: the between-process variance of a workload for a side of one process."""

    def __init__(self, db: Path) -> None:
        self.db = Path(db)
        self._cache: dict[str, list[tuple[str, SelectedRun]]] = {}

    def _runs(self, workload_key: str) -> list[tuple[str, SelectedRun]]:
        """(sweep id, run) of the ok runs of this workload stored by a sweep or an ab (they have a sweep id)."""
        if workload_key not in self._cache:
            from tokbench.results.store import ResultStore

            with ResultStore(self.db, read_only=True) as store:
                rows = store.runs(workload_key=workload_key, status=STATUS_OK)
                self._cache[workload_key] = [
                    (row.sweep_id, SelectedRun(store.result(row.run_id), f"{self.db} run {row.run_id}", row.run_id))
                    for row in rows
                    if row.sweep_id
                ]
        return self._cache[workload_key]

    def variance(
        self, workload_key: str, machine: str, metric: str, exclude: set[str] | None = None
    ) -> stats.StoredVariance | None:
        groups: dict[tuple[str, str], list[SelectedRun]] = {}
        for sweep_id, run in self._runs(workload_key):
            if run_identity(run.result) in (exclude or set()) or machine_of(run.result.environment) != machine:
                continue
            groups.setdefault((sweep_id, run.result.config_hash), []).append(run)
        values, used = [], []
        for (sweep_id, _), runs in sorted(groups.items()):
            processes = [
                stats.ProcessValue.of(calls[metric])
                for run in runs
                if (calls := stats.per_call_samples(run.result.iterations)).get(metric)
            ]
            if len(processes) >= 2:
                values.append(processes)
                used.append(f"{sweep_id} ({len(processes)} runs)")
        if not values:
            return None
        source = f"between-process variance from stored repeats in {self.db}: " + ", ".join(used)
        return stats.stored_variance_of(values, source)

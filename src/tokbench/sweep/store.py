"""The results store: one SQLite file holding every result, written by one process, one transaction each.

Each row keeps the full result JSON (the source of truth, read back with ``BenchmarkResult.from_dict``)
plus indexed columns to find runs without parsing JSON: model, config hash, status, start time, git
commit, sweep, and the median of each headline metric. The schema is versioned with
``PRAGMA user_version`` and upgraded by ``migrate`` when an older file is opened.

Durability: the default rollback journal with ``synchronous=FULL``, so a committed result lives in the
main file (no -wal file to forget when copying it) and a process killed mid-write leaves the last
committed state; SQLite rolls the half-written transaction back on the next open.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tokbench.errors import ResultFormatError, StoreError
from tokbench.schema.results import STATUS_OK, STATUS_SKIPPED, BenchmarkResult

DEFAULT_DB_PATH = Path("tokbench-results.db")

# Headline metrics kept as columns: the median of each summary entry.
HEADLINE_METRICS = (
    "ttft_ms",
    "tpot_ms",
    "itl_ms",
    "e2e_latency_ms",
    "prefill_throughput_tok_s",
    "decode_throughput_tok_s",
    "overall_throughput_tok_s",
)
_METRIC_COLUMNS = tuple(f"{name}_median" for name in HEADLINE_METRICS)

# A migration step is SQL or, where a new column is computed from the stored JSON, a Python function of the
# connection, run in the step's transaction.
MigrationStep = str | Callable[[sqlite3.Connection], None]


def _backfill_workload_keys(connection: sqlite3.Connection) -> None:
    """Fill ``workload_key`` of rows stored before the column existed, from each row's result JSON."""
    rows = connection.execute("SELECT run_id, result_json FROM results WHERE workload_key IS NULL").fetchall()
    for run_id, text in rows:
        try:
            key = BenchmarkResult.from_dict(json.loads(text)).workload_key
        except (json.JSONDecodeError, ResultFormatError, ValueError, TypeError, KeyError):
            continue  # an unreadable row keeps NULL; `show` reports why it cannot be read
        connection.execute("UPDATE results SET workload_key = ? WHERE run_id = ?", (key, run_id))


# Each migration is the steps that take the schema from version i to i + 1; never edit one that
# has shipped, append a new one.
MIGRATIONS: tuple[tuple[MigrationStep, ...], ...] = (
    (
        f"""
        CREATE TABLE results (
            run_id INTEGER PRIMARY KEY AUTOINCREMENT,
            sweep_id TEXT,
            repeat_index INTEGER NOT NULL DEFAULT 0,
            model TEXT NOT NULL,
            name TEXT NOT NULL,
            config_hash TEXT NOT NULL,
            status TEXT NOT NULL,
            reason TEXT NOT NULL,
            started_at TEXT NOT NULL,
            stored_at TEXT NOT NULL,
            git_commit TEXT,
            launcher TEXT,
            {", ".join(f"{column} REAL" for column in _METRIC_COLUMNS)},
            result_json TEXT NOT NULL
        )
        """,
        "CREATE INDEX results_model ON results (model)",
        "CREATE INDEX results_config_hash ON results (config_hash)",
        "CREATE INDEX results_status ON results (status)",
        "CREATE INDEX results_started_at ON results (started_at)",
        "CREATE INDEX results_git_commit ON results (git_commit)",
        "CREATE INDEX results_sweep ON results (sweep_id, config_hash, repeat_index, status)",
    ),
    (  # 2: what was measured, without how (BenchmarkResult.workload_key): compare and history match on it
        "ALTER TABLE results ADD COLUMN workload_key TEXT",
        "CREATE INDEX results_workload_key ON results (workload_key)",
        _backfill_workload_keys,
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

_ROW_COLUMNS = (
    "run_id", "sweep_id", "repeat_index", "model", "name", "config_hash", "status", "reason",
    "started_at", "stored_at", "git_commit", "launcher", *_METRIC_COLUMNS, "workload_key",
)  # fmt: skip


@dataclass(frozen=True)
class StoredRun:
    """The indexed columns of one stored result (the full result: ``ResultStore.result(run_id)``)."""

    run_id: int
    sweep_id: str | None
    repeat_index: int
    model: str
    name: str
    config_hash: str
    status: str
    reason: str
    started_at: str
    stored_at: str
    git_commit: str | None
    launcher: str | None
    medians: dict[str, float | None]
    workload_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        row = {column: getattr(self, column) for column in _ROW_COLUMNS if not column.endswith("_median")}
        row.update({f"{name}_median": value for name, value in self.medians.items()})
        return row


def migrate(connection: sqlite3.Connection, migrations: Sequence[Sequence[MigrationStep]] = MIGRATIONS) -> int:
    """Bring the schema up to ``len(migrations)``, one transaction per step; returns the old version."""
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > len(migrations):
        raise StoreError(
            f"the results store has schema version {version}, newer than this tokbench reads ({len(migrations)}); "
            "upgrade tokbench or use another --db"
        )
    for target in range(version + 1, len(migrations) + 1):
        connection.execute("BEGIN IMMEDIATE")
        try:
            for step in migrations[target - 1]:
                if callable(step):
                    step(connection)
                else:
                    connection.execute(step)
            connection.execute(f"PRAGMA user_version = {target}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    return version


class ResultStore:
    """An open results store. Use as a context manager, or call ``close``."""

    def __init__(self, path: str | Path = DEFAULT_DB_PATH) -> None:
        self.path = Path(path)
        if self.path.parent != Path():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: no implicit transactions; every write below opens and commits its own.
            self._connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._connection.execute("PRAGMA synchronous = FULL")
            migrate(self._connection)
        except sqlite3.DatabaseError as error:
            raise StoreError(f"cannot open the results store {self.path}: {error}") from error

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def add(self, result: BenchmarkResult, *, sweep_id: str | None = None, repeat_index: int = 0) -> int:
        """Store ``result`` in one transaction and return its run id."""
        data = result.to_dict()
        git = result.environment.get("git") or {}
        values = {
            "sweep_id": sweep_id,
            "repeat_index": repeat_index,
            "model": result.config.model,
            "name": result.config.name,
            "config_hash": result.config_hash,
            "status": result.status,
            "reason": result.reason,
            "started_at": result.started_at,
            "stored_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "git_commit": git.get("commit") if isinstance(git, dict) else None,
            "launcher": result.launch.get("launcher"),
            "workload_key": result.workload_key,
            **{column: _median(result, name) for name, column in zip(HEADLINE_METRICS, _METRIC_COLUMNS, strict=True)},
            "result_json": json.dumps(data, allow_nan=False),
        }
        columns = ", ".join(values)
        placeholders = ", ".join("?" for _ in values)
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            cursor = self._connection.execute(
                f"INSERT INTO results ({columns}) VALUES ({placeholders})", tuple(values.values())
            )
            self._connection.execute("COMMIT")
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        return int(cursor.lastrowid or 0)

    def runs(
        self,
        *,
        model: str | None = None,
        status: str | None = None,
        sweep_id: str | None = None,
        limit: int | None = None,
        workload_key: str | None = None,
    ) -> list[StoredRun]:
        """Stored runs, oldest first, filtered by any of model, status, sweep and workload key."""
        conditions, parameters = [], []
        filters = (("model", model), ("status", status), ("sweep_id", sweep_id), ("workload_key", workload_key))
        for column, value in filters:
            if value is not None:
                conditions.append(f"{column} = ?")
                parameters.append(value)
        query = f"SELECT {', '.join(_ROW_COLUMNS)} FROM results"
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        query += " ORDER BY run_id"
        if limit is not None:
            query = f"SELECT * FROM ({query} DESC LIMIT {int(limit)}) ORDER BY run_id"
        return [_stored_run(row) for row in self._connection.execute(query, parameters)]

    def run(self, run_id: int) -> StoredRun:
        row = self._connection.execute(
            f"SELECT {', '.join(_ROW_COLUMNS)} FROM results WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id} in {self.path}; `tokbench history` lists the stored runs")
        return _stored_run(row)

    def result(self, run_id: int) -> BenchmarkResult:
        row = self._connection.execute("SELECT result_json FROM results WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id} in {self.path}; `tokbench history` lists the stored runs")
        try:
            return BenchmarkResult.from_dict(json.loads(row[0]))
        except (json.JSONDecodeError, ResultFormatError) as error:
            raise StoreError(f"run {run_id} in {self.path} cannot be read: {error}") from error

    def result_dicts(self, runs: Sequence[StoredRun]) -> Iterator[dict[str, Any]]:
        """The full stored JSON of each run, as written."""
        for run in runs:
            row = self._connection.execute("SELECT result_json FROM results WHERE run_id = ?", (run.run_id,)).fetchone()
            yield json.loads(row[0])

    def completed(self, sweep_id: str) -> set[tuple[str, int]]:
        """(config_hash, repeat_index) of the sweep's results stored ok or skipped: what --resume leaves out."""
        rows = self._connection.execute(
            "SELECT config_hash, repeat_index FROM results WHERE sweep_id = ? AND status IN (?, ?)",
            (sweep_id, STATUS_OK, STATUS_SKIPPED),
        )
        return {(config_hash, repeat_index) for config_hash, repeat_index in rows}

    def schema_version(self) -> int:
        return int(self._connection.execute("PRAGMA user_version").fetchone()[0])


def _median(result: BenchmarkResult, metric: str) -> float | None:
    summary = result.summary.get(metric)
    return summary.median if summary is not None else None


def _stored_run(row: Sequence[Any]) -> StoredRun:
    values = dict(zip(_ROW_COLUMNS, row, strict=True))
    return StoredRun(
        run_id=values["run_id"],
        sweep_id=values["sweep_id"],
        repeat_index=values["repeat_index"],
        model=values["model"],
        name=values["name"],
        config_hash=values["config_hash"],
        status=values["status"],
        reason=values["reason"],
        started_at=values["started_at"],
        stored_at=values["stored_at"],
        git_commit=values["git_commit"],
        launcher=values["launcher"],
        medians={name: values[f"{name}_median"] for name in HEADLINE_METRICS},
        workload_key=values["workload_key"],
    )

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
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tokbench.errors import ResultFormatError, StoreError, StoreWriteError, UsageError
from tokbench.fileio import UnsafeFileError, file_kind, parse_json_text
from tokbench.schema.results import STATUS_OK, STATUS_SKIPPED, BenchmarkResult

DEFAULT_DB_PATH = Path("tokbench-results.db")
# PRAGMA application_id of a tokbench store ("tkb1"): another application's SQLite file is never touched.
APPLICATION_ID = 0x746B6231
_SQLITE_HEADER = b"SQLite format 3\x00"

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


def _workload_key_of(result_json: str) -> str | None:
    """The workload key of a stored result's JSON (computed for results written before it existed)."""
    try:
        return BenchmarkResult.from_dict(json.loads(result_json)).workload_key
    except (json.JSONDecodeError, ResultFormatError, ValueError, TypeError, KeyError):
        return None  # an unreadable row has none; `show` reports why it cannot be read


def _backfill_workload_keys(connection: sqlite3.Connection) -> None:
    """Fill ``workload_key`` of rows stored before the column existed, from each row's result JSON."""
    rows = connection.execute("SELECT run_id, result_json FROM results WHERE workload_key IS NULL").fetchall()
    for run_id, text in rows:
        key = _workload_key_of(text)
        if key is not None:
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


class UnreadableRunError(StoreError):
    """A stored run whose JSON cannot be read back as a result (damaged, or edited behind tokbench's back)."""


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
    # The result's run-level flags (no_steady_state, precision_not_reached, host_busy...), read from its JSON.
    flags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        row = {column: getattr(self, column) for column in _ROW_COLUMNS if not column.endswith("_median")}
        row.update({f"{name}_median": value for name, value in self.medians.items()})
        row["flags"] = " ".join(self.flags)
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
            _rollback(connection)  # a failed ROLLBACK must not hide the error that matters (disk full)
            raise
    return version


class ResultStore:
    """An open results store. Use as a context manager, or call ``close``.

    ``read_only=True`` (history, show, export, compare) opens the file read-only and changes nothing in it, not
    even a schema upgrade. Either way the file must be a tokbench store (its application id, or for stores
    written before the id existed, its table layout) and pass SQLite's quick check, else ``StoreError``.
    """

    def __init__(self, path: str | Path = DEFAULT_DB_PATH, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        kind = file_kind(self.path)
        if kind not in ("a file", "missing"):
            raise StoreError(f"{self.path} is {kind}, not a results store file; pass --db with a file path")
        if read_only and kind == "missing":
            raise StoreError(
                f"no results store at {self.path}; `tokbench run` or `tokbench sweep` fill one, or pass --db"
            )
        if not read_only and self.path.parent != Path():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if read_only:
                uri = f"file:{self.path.resolve().as_posix()}?mode=ro"
                self._connection = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)
            else:
                # isolation_level=None: no implicit transactions; every write below opens and commits its own.
                self._connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            _check_is_tokbench_store(self._connection, self.path)
            _quick_check(self._connection, self.path)
            if not read_only:
                self._connection.execute("PRAGMA synchronous = FULL")
                migrate(self._connection)
                if self._connection.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                    self._connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        except sqlite3.Error as error:
            if read_only and _has_hot_journal(self.path):
                raise StoreError(_hot_journal_message(self.path)) from error
            raise StoreError(f"cannot open the results store {self.path}: {error}") from error
        except StoreError:
            self._connection.close()
            raise
        # A store opened read-only is never migrated: without the column, each row's key is computed from its
        # JSON on read, by the same function the migration fills the column with.
        columns = {row[1] for row in self._connection.execute("PRAGMA table_info(results)")}
        self._workload_key_sql = "workload_key"
        if "workload_key" not in columns:
            self._connection.create_function("tokbench_workload_key", 1, _workload_key_of, deterministic=True)
            self._workload_key_sql = "tokbench_workload_key(result_json)"
        _ensure_json_extract(self._connection)

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def add(self, result: BenchmarkResult, *, sweep_id: str | None = None, repeat_index: int = 0) -> int:
        """Store ``result`` in one transaction and return its run id."""
        data = result.to_dict()
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
            "git_commit": result.environment.commit,
            "launcher": result.launch.launcher,
            "workload_key": result.workload_key,
            **{column: _median(result, name) for name, column in zip(HEADLINE_METRICS, _METRIC_COLUMNS, strict=True)},
            "result_json": json.dumps(data, allow_nan=False),
        }
        columns = ", ".join(values)
        placeholders = ", ".join("?" for _ in values)
        try:
            self._connection.execute("BEGIN IMMEDIATE")
            cursor = self._connection.execute(
                f"INSERT INTO results ({columns}) VALUES ({placeholders})", tuple(values.values())
            )
            self._connection.execute("COMMIT")
        except BaseException as error:
            self._rollback()
            if isinstance(error, (sqlite3.Error, OSError)):
                # The first error is the one that matters (disk full, damaged page); a failed ROLLBACK after it
                # ("no transaction is active") would only hide it.
                raise StoreWriteError(f"could not store the result in {self.path}: {error}") from error
            raise
        return int(cursor.lastrowid or 0)

    def _rollback(self) -> None:
        _rollback(self._connection)

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
        filters = (
            ("model", model), ("status", status), ("sweep_id", sweep_id), (self._workload_key_sql, workload_key),
        )  # fmt: skip
        for column, value in filters:
            if value is not None:
                conditions.append(f"{column} = ?")
                parameters.append(value)
        query = f"SELECT {self._select_list()} FROM results"
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        query += " ORDER BY run_id"
        if limit is not None:
            query = f"SELECT * FROM ({query} DESC LIMIT {int(limit)}) ORDER BY run_id"
        return [_stored_run(row) for row in self._connection.execute(query, parameters)]

    def _select_list(self) -> str:
        columns = (self._workload_key_sql + " AS workload_key" if c == "workload_key" else c for c in _ROW_COLUMNS)
        # A damaged row has no flags (``show`` says why it cannot be read), never a failed listing.
        flags = "CASE WHEN json_valid(result_json) THEN json_extract(result_json, '$.flags') END AS flags"
        return ", ".join(columns) + ", " + flags

    def run(self, run_id: int) -> StoredRun:
        row = self._connection.execute(
            f"SELECT {self._select_list()} FROM results WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id} in {self.path}; `tokbench history` lists the stored runs")
        return _stored_run(row)

    def result(self, run_id: int) -> BenchmarkResult:
        row = self._connection.execute("SELECT result_json FROM results WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id} in {self.path}; `tokbench history` lists the stored runs")
        try:
            return BenchmarkResult.from_dict(parse_json_text(row[0], f"run {run_id}"))
        except (json.JSONDecodeError, ResultFormatError, UnsafeFileError) as error:
            raise UnreadableRunError(f"run {run_id} in {self.path} cannot be read: {error}") from error

    def result_dicts(self, runs: Sequence[StoredRun]) -> Iterator[dict[str, Any]]:
        """The full stored JSON of each run, as written."""
        for run in runs:
            row = self._connection.execute("SELECT result_json FROM results WHERE run_id = ?", (run.run_id,)).fetchone()
            try:
                yield parse_json_text(row[0], f"run {run.run_id}")
            except (json.JSONDecodeError, UnsafeFileError) as error:
                raise StoreError(f"run {run.run_id} in {self.path} cannot be read: {error}") from error

    def completed(self, sweep_id: str) -> set[tuple[str, int]]:
        """(config_hash, repeat_index) of the sweep's results stored ok or skipped: what --resume leaves out."""
        rows = self._connection.execute(
            "SELECT config_hash, repeat_index FROM results WHERE sweep_id = ? AND status IN (?, ?)",
            (sweep_id, STATUS_OK, STATUS_SKIPPED),
        )
        return {(config_hash, repeat_index) for config_hash, repeat_index in rows}

    def count(self) -> int:
        return int(self._connection.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def schema_version(self) -> int:
        return int(self._connection.execute("PRAGMA user_version").fetchone()[0])


def _rollback(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        # SQLite may have rolled back already (e.g. on SQLITE_FULL); nothing is half-written either way.
        with suppress(sqlite3.Error):
            connection.execute("ROLLBACK")


def _check_is_tokbench_store(connection: sqlite3.Connection, path: Path) -> None:
    """Refuse another application's database before reading or writing anything in it."""
    application_id = connection.execute("PRAGMA application_id").fetchone()[0]
    if application_id == APPLICATION_ID:
        return
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    tables.discard("sqlite_sequence")
    if application_id == 0 and not tables:
        return  # a new, empty file: becomes a store
    if application_id == 0 and "results" in tables:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(results)")}
        if {"run_id", "config_hash", "status", "result_json"} <= columns:
            return  # a store written before tokbench set its application id
    raise StoreError(
        f"{path} is not a tokbench results store (application id {application_id:#x}, tables "
        f"{', '.join(sorted(tables)) or 'none'}); tokbench leaves it untouched: pass another --db"
    )


class SweepRunningError(StoreError, UsageError):
    """The same sweep is being run into the same store by another process."""


@contextmanager
def sweep_lock(db: str | Path, sweep_id: str) -> Iterator[None]:
    """Hold an exclusive lock on ``sweep_id`` for the store ``db`` while a sweep runs into it.

    A second ``tokbench sweep`` of the same sweep (``--resume`` or not) into the same store would measure the
    configs in flight twice; it is refused at once, naming the process that holds the lock. The lock is a
    ``flock`` on ``.<store name>.sweep-<id>.lock`` beside the store (SQLite's own locks are untouched); the
    kernel drops it when its process dies, so a killed sweep never leaves a stale lock.
    """
    import fcntl

    store = Path(db)
    path = store.parent / f".{store.name}.sweep-{sweep_id}.lock"
    while True:
        try:
            store.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as error:
            raise StoreError(f"cannot write beside the results store {store}: {error.strerror or error}; "
                             "pass a --db in a writable folder") from error  # fmt: skip
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 64, 0).decode("ascii", "replace").strip() or "another process"
            os.close(descriptor)
            raise SweepRunningError(
                f"sweep {sweep_id} is already running into {store} (pid {holder}); running it twice at once would "
                "measure its configs twice: wait for it to end, then use --resume to go on"
            ) from None
        if _same_inode(descriptor, path):  # not a lock file a finishing sweep unlinked meanwhile
            break
        os.close(descriptor)
    try:
        with suppress(OSError):  # the pid only helps the message; a full disk must not stop the sweep here
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, str(os.getpid()).encode("ascii"), 0)
        yield
    finally:
        with suppress(OSError):
            path.unlink()
        os.close(descriptor)


def _same_inode(descriptor: int, path: Path) -> bool:
    try:
        return os.fstat(descriptor).st_ino == os.stat(path).st_ino
    except OSError:
        return False


def _has_hot_journal(path: Path) -> bool:
    journal = Path(f"{path}-journal")
    try:
        return journal.stat().st_size > 0
    except OSError:
        return False


def _hot_journal_message(path: Path) -> str:
    return (
        f"the results store {path} holds a transaction a writer left unfinished when it was stopped "
        f"({path}-journal is its rollback journal); a read command never writes, so it cannot roll it back: "
        f"run `tokbench recover --db {path}` once (SQLite rolls the unfinished transaction back; every result "
        "committed before is kept)"
    )


def _quick_check(connection: sqlite3.Connection, path: Path) -> None:
    problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        raise StoreError(
            f"the results store {path} is damaged ({'; '.join(problems[:3])}); read what you can with "
            "`tokbench export --db` and start a new store with another --db"
        )


def is_sqlite_file(path: str | Path) -> bool:
    """Whether ``path`` starts like an SQLite database (export never writes over one)."""
    try:
        with open(path, "rb") as stream:
            return stream.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER
    except OSError:
        return False


def _median(result: BenchmarkResult, metric: str) -> float | None:
    summary = result.summary.get(metric)
    return summary.median if summary is not None else None


def _ensure_json_extract(connection: sqlite3.Connection) -> None:
    """SQLite's json_valid / json_extract, or (an SQLite built without JSON, before 3.38) the same in Python."""
    try:
        connection.execute("SELECT json_valid('[]'), json_extract('[]', '$')").fetchone()
    except sqlite3.OperationalError:
        connection.create_function("json_valid", 1, _json_valid, deterministic=True)
        connection.create_function("json_extract", 2, _json_extract_top, deterministic=True)


def _json_valid(text: str) -> bool:
    try:
        json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return False
    return True


def _json_extract_top(text: str, path: str) -> str | None:
    try:
        value = json.loads(text).get(path.removeprefix("$."))
    except (json.JSONDecodeError, AttributeError):
        return None
    return None if value is None else json.dumps(value)


def _flags_of(text: str | None) -> tuple[str, ...]:
    try:
        flags = json.loads(text) if text else []
    except json.JSONDecodeError:
        return ()
    return tuple(str(flag) for flag in flags) if isinstance(flags, list) else ()


def _stored_run(row: Sequence[Any]) -> StoredRun:
    values = dict(zip((*_ROW_COLUMNS, "flags"), row, strict=True))
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
        flags=_flags_of(values["flags"]),
    )

"""The SQLite results store on a real stored result and a real database file."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tokbench.config import BenchmarkConfig
from tokbench.errors import StoreError
from tokbench.results.store import MIGRATIONS, SCHEMA_VERSION, ResultStore, migrate
from tokbench.schema.environment import EnvironmentRecord, GitState
from tokbench.schema.records import LaunchRecord
from tokbench.schema.results import BenchmarkResult, load_result


@pytest.fixture(scope="module")
def ok_result() -> BenchmarkResult:
    # A real tiny-llama result measured and stored by an earlier version (the store must take it as it is);
    # the sweeps in tests/system/test_store_sweeps.py store fresh ones.
    result = load_result(Path(__file__).parents[1] / "data" / "result-v2.json")
    assert result.ok, result.reason
    return dataclasses.replace(result, launch=LaunchRecord(launcher="inline", pid=1234, wall_ns=10**9))


def _skipped(model: str = "small-llama") -> BenchmarkResult:
    return BenchmarkResult(
        config=BenchmarkConfig(model=model, device="cpu"),
        status="skipped",
        reason="needs X",
        environment=EnvironmentRecord(git=GitState("abc123", dirty=False)),
    )


def test_a_result_round_trips_with_its_indexed_columns(tmp_path: Path, ok_result: BenchmarkResult) -> None:
    with ResultStore(tmp_path / "r.db") as store:
        first = store.add(ok_result, sweep_id="s1")
        second = store.add(_skipped())
        assert second == first + 1
        assert store.result(first).to_dict() == ok_result.to_dict()
        run = store.run(first)
        assert (run.model, run.status, run.config_hash, run.sweep_id) == (
            "tiny-llama",
            "ok",
            ok_result.config_hash,
            "s1",
        )
        assert run.launcher == "inline"
        assert run.medians["tpot_ms"] == ok_result.summary["tpot_ms"].median
        assert run.medians["decode_throughput_tok_s"] == ok_result.summary["decode_throughput_tok_s"].median
        assert store.run(second).git_commit == "abc123"
        assert store.run(second).medians["ttft_ms"] is None
        assert [r.run_id for r in store.runs(model="small-llama")] == [second]
        assert [r.run_id for r in store.runs(status="ok")] == [first]
        assert [r.run_id for r in store.runs(limit=1)] == [second]
        with pytest.raises(StoreError, match="no run 99"):
            store.result(99)
    # Another connection (another process would do the same) sees both committed rows.
    with sqlite3.connect(tmp_path / "r.db") as connection:
        assert connection.execute("SELECT count(*) FROM results").fetchone() == (2,)


def test_completed_holds_ok_and_skipped_of_the_sweep_by_repeat(tmp_path: Path, ok_result: BenchmarkResult) -> None:
    failed = BenchmarkResult(config=BenchmarkConfig(model="tiny-llama", batch_size=2), status="failed", reason="x")
    with ResultStore(tmp_path / "r.db") as store:
        store.add(ok_result, sweep_id="s", repeat_index=1)
        store.add(_skipped(), sweep_id="s")
        store.add(failed, sweep_id="s")
        store.add(ok_result, sweep_id="other")
        assert store.completed("s") == {(ok_result.config_hash, 1), (_skipped().config_hash, 0)}


def test_schema_migrations(tmp_path: Path, ok_result: BenchmarkResult) -> None:
    path = tmp_path / "r.db"
    with ResultStore(path) as store:
        assert store.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
        store.add(ok_result)
    # An older file is upgraded step by step, keeping its rows; a second open changes nothing.
    newer = (*MIGRATIONS, ("ALTER TABLE results ADD COLUMN comment TEXT",))
    connection = sqlite3.connect(path, isolation_level=None)
    assert migrate(connection, newer) == SCHEMA_VERSION
    assert migrate(connection, newer) == SCHEMA_VERSION + 1
    assert connection.execute("SELECT count(*), max(comment) FROM results").fetchone() == (1, None)
    connection.close()
    # This tokbench refuses a file written by a newer one instead of misreading it.
    with pytest.raises(StoreError, match="newer than this tokbench"):
        ResultStore(path)
    (tmp_path / "junk.db").write_bytes(b"this is not an SQLite file" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        ResultStore(tmp_path / "junk.db")


def _tokbench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "tokbench", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_history_export_and_show_commands(tmp_path: Path, ok_result: BenchmarkResult) -> None:
    with ResultStore(tmp_path / "tokbench-results.db") as store:
        store.add(ok_result, sweep_id="s1")
        store.add(_skipped())
    history = _tokbench("history", "--model", "small-llama", cwd=tmp_path)
    assert history.returncode == 0, history.stderr
    assert "small-llama" in history.stdout and "skipped" in history.stdout and "tiny-llama" not in history.stdout

    exported = _tokbench("export", "--format", "json", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    records = json.loads(exported.stdout)
    assert [record["run_id"] for record in records] == [1, 2]
    assert BenchmarkResult.from_dict(records[0]["result"]).to_dict() == ok_result.to_dict()

    out = tmp_path / "runs.csv"
    assert _tokbench("export", "--format", "csv", "--status", "ok", "--output", str(out), cwd=tmp_path).returncode == 0
    (row,) = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert row["config_hash"] == ok_result.config_hash and row["status"] == "ok"
    assert float(row["tpot_ms_median"]) == pytest.approx(ok_result.summary["tpot_ms"].median)

    shown = _tokbench("show", "1", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "run 1" in shown.stdout and "TPOT" in shown.stdout and "launcher inline" in shown.stdout
    missing = _tokbench("show", "7", cwd=tmp_path)
    assert missing.returncode != 0 and "no run 7" in missing.stderr
    nowhere = _tokbench("history", "--db", str(tmp_path / "none.db"), cwd=tmp_path)
    assert nowhere.returncode != 0 and "no results store" in nowhere.stderr

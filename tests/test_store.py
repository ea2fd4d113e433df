"""The SQLite results store, the inline launcher and resume, on real results and a real database file."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from support import TINY

from tokbench.config import BenchmarkConfig
from tokbench.errors import StoreError
from tokbench.schema.results import BenchmarkResult
from tokbench.sweep.launchers import InlineLauncher
from tokbench.sweep.plan import SweepSpec, plan_sweep
from tokbench.sweep.runner import execute_plan
from tokbench.sweep.store import MIGRATIONS, SCHEMA_VERSION, ResultStore, migrate


@pytest.fixture(scope="module")
def ok_result() -> BenchmarkResult:
    with InlineLauncher() as launcher:
        result = launcher.launch(BenchmarkConfig(**TINY), timeout_s=None)
    assert result.ok, result.reason
    return result


def _skipped(model: str = "small-llama") -> BenchmarkResult:
    return BenchmarkResult(
        config=BenchmarkConfig(model=model, device="cpu"),
        status="skipped",
        reason="needs X",
        environment={"git": {"commit": "abc123", "dirty": False}},
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


def test_inline_sweep_with_repeats_then_resume(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{", encoding="utf-8")
    spec = SweepSpec.from_dict(
        {
            **TINY,
            "configs": [{}, {"attn_implementation": "flash_attention_2"}, {"model": str(broken)}],
        }
    )
    plan = plan_sweep(spec)
    with ResultStore(tmp_path / "r.db") as store, InlineLauncher() as launcher:
        outcome = execute_plan(plan, launcher, store, repeat=2, progress=False)
        assert not outcome.interrupted
        statuses = [(entry.config.model, entry.repeat_index, entry.result.status) for entry in outcome.entries]
        assert statuses == [
            ("tiny-llama", 0, "skipped"),
            ("tiny-llama", 0, "ok"),
            (str(broken), 0, "failed"),
            ("tiny-llama", 1, "ok"),
            (str(broken), 1, "failed"),
        ]
        assert [entry.run_id for entry in outcome.entries] == [1, 2, 3, 4, 5]
        # Resume leaves out what is stored ok or skipped, and runs the failed config again.
        resumed = execute_plan(plan, launcher, store, repeat=2, resume=True, progress=False)
        assert resumed.resumed == 3
        assert [(e.config.model, e.result.status) for e in resumed.entries if e.result] == [(str(broken), "failed")] * 2
        assert len(store.runs()) == 7
        assert len(store.runs(status="ok")) == 2


def test_the_python_api_runs_a_sweep_into_the_store(tmp_path: Path) -> None:
    import tokbench

    db = tmp_path / "api.db"
    outcome = tokbench.run_sweep(
        {**TINY, "attn_implementation": ["sdpa", "flash_attention_2"]}, db=db, launcher="inline", progress=False
    )
    assert [(entry.config.attn_implementation, entry.result.status) for entry in outcome.entries] == [
        ("flash_attention_2", "skipped"),
        ("sdpa", "ok"),
    ]
    with ResultStore(db) as store:
        assert [(run.run_id, run.status, run.sweep_id) for run in store.runs()] == [
            (1, "skipped", outcome.plan.sweep_id),
            (2, "ok", outcome.plan.sweep_id),
        ]


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

"""Fault injection, sweep files and the store under concurrency (issue 24): YAML alias bombs and absurd plans,
typos, all-invalid sweeps, a --baseline that selects nothing, the same sweep run twice at once, and a writer
killed mid-transaction.

Real faults: sweep files as a user or an attacker writes them, the CLI in a child process with a time limit,
a second sweep racing a running one, a writer process SIGKILLed inside an SQLite transaction.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faults_support import TINY_FIELDS, one_line, stderr_line, store_of, tokbench, write_json

from tokbench.cli import main
from tokbench.results.store import ResultStore, sweep_lock
from tokbench.sweep.plan import load_sweep_file, plan_sweep

NINE = "[1, 2, 3, 4, 5, 6, 7, 8, 9]"
LIST_BOMB = f"""model: tiny-llama
batch_size: &a {NINE}
new_tokens: *a
seed: *a
warmup_iterations: *a
measurement_iterations: *a
group_size: *a
"""  # 9^6 = 531,441 combinations in 7 lines
NESTED_BOMB = """model: tiny-llama
name: &a [x, x, x, x, x, x, x, x, x]
seed: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
dtype: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
device: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
monitor: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
kernels: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
tune: [*f, *f, *f, *f, *f, *f, *f, *f, *f]
"""  # 9^7 = 4.8 million values (6 million with the nodes) once expanded
MILLION = f"model: tiny-llama\nbatch_size: &a {list(range(1, 101))}\nnew_tokens: *a\nseed: *a\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (LIST_BOMB, "the sweep expands to 531,441 combinations, more than the 100,000"),
        (NESTED_BOMB, "expands to 6,053,453 values (YAML aliases repeat what they name)"),
        (MILLION, "the sweep expands to 1,000,000 combinations"),
    ],
    ids=["list-bomb", "nested-bomb", "million"],
)
def test_absurd_plans_are_refused_with_their_size_before_they_are_built(
    text: str, expected: str, tmp_path: Path
) -> None:
    sweep = tmp_path / "bomb.yaml"
    sweep.write_text(text)
    for extra in ([], ["--dry-run"]):
        started = time.monotonic()
        completed = tokbench("sweep", "--config", str(sweep), "--db", str(tmp_path / "r.db"), *extra, timeout=120)
        assert completed.returncode == 2 and expected in stderr_line(completed), completed.stderr[-500:]
        assert len(completed.stdout) + len(completed.stderr) < 10_000  # not 174 MB of output
        assert time.monotonic() - started < 90
    assert not (tmp_path / "r.db").exists()
    # fix: fileio.parse_yaml_text counts what aliases expand to; sweep.plan.expand knows the plan's size
    # (the product of the value lists) before building it and refuses beyond MAX_PLAN_COMBINATIONS


def test_a_large_plan_is_said_to_be_large_and_its_listing_is_capped(tmp_path: Path) -> None:
    sweep = write_json(tmp_path / "big.json", {**TINY_FIELDS, "seed": list(range(2_000))})
    completed = tokbench("sweep", "--config", str(sweep), "--dry-run", "--db", str(tmp_path / "r.db"), timeout=300)
    assert completed.returncode == 0, completed.stderr[-500:]
    assert "note: a large plan: 2,000 combinations" in completed.stdout
    assert completed.stdout.count("\nrun      ") <= 1_000 and "... and 1,000 more config(s) to run" in completed.stdout
    assert not (tmp_path / "r.db").exists()
    # fix: sweep.plan.LARGE_PLAN_COMBINATIONS note; cli.sweep caps the lines it prints (MAX_LISTED, MAX_LISTED_RUNS)


def test_invalid_combinations_are_listed_capped_and_an_all_invalid_sweep_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = write_json(tmp_path / "bad.json", {**TINY_FIELDS, "batch_size": [0, -1, -2], "seed": list(range(-20, 0))})
    assert main(["sweep", "--config", str(sweep), "--db", str(tmp_path / "r.db")]) == 2
    captured = capsys.readouterr()
    assert captured.out.count("invalid  ") == 20 and "... and 40 more invalid combination(s)" in captured.out
    assert "every one of its 60 combination(s) is invalid" in one_line(captured.err)
    assert not (tmp_path / "r.db").exists()
    # fix: cli.sweep.command_sweep refuses a plan with nothing to run or store before the store exists


def test_misspelt_fields_get_a_did_you_mean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_json(tmp_path / "c.json", {"model": "tiny-llama", "batchsize": 2})
    assert main(["run", "--config", str(config)]) == 2
    assert "did you mean batch_size (not batchsize)?" in one_line(capsys.readouterr().err)
    sweep = tmp_path / "s.yaml"
    sweep.write_text("model: tiny-llama\nrepat: 2\nnew_token: [3, 4]\n")
    assert main(["sweep", "--config", str(sweep), "--db", str(tmp_path / "r.db")]) == 2
    assert "did you mean new_tokens (not new_token), repeat (not repat)?" in one_line(capsys.readouterr().err)
    # fix: config.unknown_fields_error (difflib) for config files, flags and sweep files


def test_a_baseline_that_selects_nothing_is_refused_before_the_sweep(
    real_results: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = write_json(tmp_path / "s.json", TINY_FIELDS)
    db = tmp_path / "r.db"
    for baseline in ("sweep=nothing", f"{tmp_path / 'missing.db'}:latest", "since=not-a-time"):
        assert main(["sweep", "--config", str(sweep), "--db", str(db), "--baseline", baseline]) == 2
        line = one_line(capsys.readouterr().err)
        assert "--baseline" in line or "since='not-a-time' is not a time" in line, line
        assert not db.exists()  # nothing was run, no store was made
    store_of(db, *real_results)
    before = db.stat().st_mtime_ns
    assert main(["sweep", "--config", str(sweep), "--db", str(db), "--baseline", "sweep=nothing"]) == 2
    assert "selects no stored result" in one_line(capsys.readouterr().err) and db.stat().st_mtime_ns == before
    # fix: cli.sweep._check_before_running selects the baseline before the executor starts


SLOW = {**TINY_FIELDS, "measurement_iterations": 1_000_000, "timeout_s": 120}


def test_the_same_sweep_twice_at_once_is_refused_and_a_killed_sweep_frees_it(tmp_path: Path) -> None:
    sweep = write_json(tmp_path / "slow.json", SLOW)
    db = tmp_path / "r.db"
    sweep_id = plan_sweep(load_sweep_file(sweep)).sweep_id
    lock = tmp_path / f".r.db.sweep-{sweep_id}.lock"
    first = subprocess.Popen(
        [sys.executable, "-m", "tokbench", "sweep", "--config", str(sweep), "--db", str(db), "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not lock.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lock.exists() and first.poll() is None
        second = tokbench("sweep", "--config", str(sweep), "--db", str(db), "--resume", timeout=120)
        assert second.returncode == 2
        line = stderr_line(second)
        assert f"sweep {sweep_id} is already running into {db} (pid {first.pid})" in line and "--resume" in line
    finally:
        first.kill()  # SIGKILL: no cleanup runs; the kernel drops the lock with the process
        first.wait(timeout=60)
    with sweep_lock(db, sweep_id):  # taken at once: a killed sweep never leaves a stale lock
        pass
    # fix: results.store.sweep_lock (flock beside the store) around every sweep run, CLI and API


WRITER = """
import sys, time
from tokbench.results.store import ResultStore
store = ResultStore(sys.argv[1])
connection = store._connection  # the writer's own connection, mid-transaction when it is killed
connection.execute("PRAGMA cache_size = 1")  # spill changed pages into the file: the journal is hot
connection.execute("BEGIN IMMEDIATE")
connection.execute("UPDATE results SET reason = ?", ("x" * 50_000,))
print("in the transaction", flush=True)
time.sleep(600)
"""


def test_a_writer_killed_mid_transaction_gets_a_hint_and_a_recovery(
    real_results: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = store_of(tmp_path / "r.db", *real_results, *real_results[:1])
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "in the transaction"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=60)
    assert Path(f"{db}-journal").stat().st_size > 0  # a hot journal: the half-written transaction
    for command in (["history"], ["show", "1"], ["export"], ["regressions"]):
        code = main([*command, "--db", str(db)])
        line = one_line(capsys.readouterr().err)
        assert code in (2, 4) and "attempt to write a readonly database" not in line
        assert "a writer left unfinished" in line and f"tokbench recover --db {db}" in line
    assert main(["recover", "--db", str(db)]) == 0
    assert "rolled back the unfinished transaction; 3 stored run(s)" in capsys.readouterr().out
    assert main(["history", "--db", str(db)]) == 0
    with ResultStore(db, read_only=True) as store:
        assert [run.reason for run in store.runs()] == ["", "", ""]  # every committed result, as committed
    # fix: results.store explains a hot journal on a read-only open; `tokbench recover` rolls it back

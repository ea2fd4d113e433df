"""`tokbench sweep` as a user runs it: real child processes, real signals, a real SQLite file.

Each child imports torch (seconds), so these sweeps are as small as the behaviour they prove allows.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from support import TINY, descendants_with, stored_rows

# Effectively endless: a config that runs until something ends it.
ENDLESS = 1_000_000


def start_sweep(cwd: Path, *args: str) -> subprocess.Popen[str]:
    # TMPDIR: the child work folders a SIGKILLed parent cannot remove stay inside the test's folder.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", "TMPDIR": str(cwd)}
    return subprocess.Popen(
        [sys.executable, "-m", "tokbench", "sweep", "--no-progress", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def write_sweep(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def rows(db: Path) -> list[tuple[Any, ...]]:
    """Every stored row, read with plain sqlite3 (not tokbench's store code)."""
    return stored_rows(db, "run_id, name, config_hash, status, reason, result_json")


def wait_for(condition: Any, timeout_s: float, what: str, sweep: subprocess.Popen[str]) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if sweep.poll() is not None:
            stdout, stderr = sweep.communicate()
            raise AssertionError(f"the sweep exited ({sweep.returncode}) before {what}:\n{stdout}\n{stderr}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def inductor_cache(result_json: str) -> str:
    return json.loads(result_json)["environment"]["env"]["TORCHINDUCTOR_CACHE_DIR"]


def worker_children(parent_pid: int) -> list[psutil.Process]:
    """Running config children, spawned (children) or forked by the fork server (grandchildren)."""
    return descendants_with(parent_pid, "tokbench.sweep.worker")


@pytest.mark.slow
def test_a_sweep_with_every_kind_of_failure_runs_to_the_end(tmp_path: Path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama", "hidden_size": ', encoding="utf-8")
    sweep = write_sweep(
        tmp_path / "sweep.yaml",
        {
            **TINY,
            "configs": [
                {"attn_implementation": ["sdpa", "eager"], "batch_size": [1, 2]},  # 4 that run
                {"attn_implementation": "flash_attention_2"},  # impossible on this machine
                {"model": str(broken), "name": "broken-model"},  # loading raises in the child
                {"name": "times-out", "measurement_iterations": ENDLESS, "timeout_s": 8},
                {"name": "killed-by-test", "batch_size": 3, "measurement_iterations": ENDLESS},
                {"attn_implementation": "eager", "batch_size": 1, "static_cache": False},  # a duplicate
            ],
        },
    )
    db = tmp_path / "results.db"
    # One process per config (no load groups): each kind of failure hits its own child.
    sweep_process = start_sweep(tmp_path, "--config", str(sweep), "--db", str(db), "--no-share-load")
    # An outside kill of the child that runs "killed-by-test", found by its command line like `ps` would.
    victim = wait_for(
        lambda: next(
            (child for child in worker_children(sweep_process.pid) if "killed-by-test" in " ".join(child.cmdline())),
            None,
        ),
        timeout_s=240,
        what="the killed-by-test child",
        sweep=sweep_process,
    )
    time.sleep(1.0)
    victim.send_signal(signal.SIGKILL)
    stdout, stderr = sweep_process.communicate(timeout=240)
    assert sweep_process.returncode == 4, stderr  # some configs failed, and the sweep still ran to the end
    assert "1 duplicate(s) collapsed" in stdout
    assert "skipped  tiny-llama-flash_attention_2" in stdout.split("┏")[0]  # listed before anything ran

    stored = rows(db)
    by_name = {name: (status, reason) for _, name, _, status, reason, _ in stored}
    assert len(stored) == len(by_name) == 8
    assert [status for status, _ in by_name.values()].count("ok") == 4
    assert by_name["tiny-llama-flash_attention_2-bfloat16-b1-s8-n4"][0] == "skipped"
    assert "flash" in by_name["tiny-llama-flash_attention_2-bfloat16-b1-s8-n4"][1]
    assert by_name["broken-model"][0] == "failed"
    assert by_name["broken-model"][1].startswith("loading failed:")
    assert by_name["times-out"] == ("failed", by_name["times-out"][1])
    assert by_name["times-out"][1].startswith("timed out after 8 s")
    assert by_name["killed-by-test"][0] == "failed"
    assert f"(pid {victim.pid}) was killed by SIGKILL" in by_name["killed-by-test"][1]
    killed = json.loads(next(data for _, name, *_, data in stored if name == "killed-by-test"))
    assert killed["launch"]["pid"] == victim.pid
    assert killed["launch"]["signal"] == "SIGKILL"
    assert killed["launch"]["exit_code"] == -signal.SIGKILL
    assert "stderr_tail" in killed["launch"]
    ok = json.loads(next(data for *_, status, _, data in stored if status == "ok"))
    assert ok["launch"]["launcher"] == "process" and ok["launch"]["exit_code"] == 0
    assert ok["launch"]["start_method"] == "forkserver"  # the default on Linux
    assert ok["launch"]["pid"] != sweep_process.pid
    # Each child had its own empty compile cache (the default, --compile-cache fresh).
    cache_dirs = {inductor_cache(data) for *_, status, _, data in stored if status == "ok"}
    assert len(cache_dirs) == 4 and all("tokbench-child-" in path for path in cache_dirs)
    assert not psutil.pid_exists(victim.pid) or victim.status() == psutil.STATUS_ZOMBIE

    env = {**os.environ, "COLUMNS": "200"}
    history = subprocess.run(
        [sys.executable, "-m", "tokbench", "history", "--db", str(db), "--status", "failed"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert history.returncode == 0, history.stderr
    for name in ("broken-model", "times-out", "killed-by-test"):
        assert name in history.stdout
    assert "tiny-llama-sdpa" not in history.stdout and "skipped" not in history.stdout


@pytest.mark.slow
def test_sigint_and_sigkill_mid_sweep_then_resume_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "sweep.yaml", {**TINY, "batch_size": [1, 2, 3]})
    db = tmp_path / "results.db"
    args = ("--config", str(sweep), "--db", str(db), "--compile-cache", "shared", "--no-share-load")

    # 1. Ctrl-C once the first result is stored: the running child is ended, the store stays consistent.
    first = start_sweep(tmp_path, *args)
    wait_for(lambda: len(rows(db)) >= 1, timeout_s=240, what="the first stored result", sweep=first)
    children = wait_for(lambda: worker_children(first.pid), timeout_s=60, what="the second child", sweep=first)
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 130, stderr
    assert "interrupted" in stderr
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, "the child outlived the interrupted sweep"
    after_sigint = rows(db)
    assert 1 <= len(after_sigint) <= 2

    # 2. Resume, and SIGKILL the parent as soon as it stored one more result.
    second = start_sweep(tmp_path, *args, "--resume")
    orphans = wait_for(
        lambda: len(rows(db)) > len(after_sigint) and worker_children(second.pid),
        timeout_s=240,
        what="a stored result of the resumed sweep and its next child",
        sweep=second,
    )
    second.kill()
    second.communicate(timeout=60)
    _, alive = psutil.wait_procs(orphans, timeout=15)
    assert not alive, "a child went on running after its parent was killed"
    after_sigkill = rows(db)
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert after_sigkill[: len(after_sigint)] == after_sigint  # nothing committed was lost or changed

    # 3. Resume to the end: every config exactly once, earlier rows untouched.
    third = start_sweep(tmp_path, *args, "--resume", "--start-method", "spawn")
    stdout, stderr = third.communicate(timeout=240)
    assert third.returncode == 0, stderr
    assert json.loads(rows(db)[-1][-1])["launch"]["start_method"] == "spawn"
    assert "already stored (resumed)" in stdout
    final = rows(db)
    assert final[: len(after_sigkill)] == after_sigkill
    hashes = [config_hash for _, _, config_hash, *_ in final]
    assert all(status == "ok" for *_, status, _, _ in final)
    assert len(hashes) == len(set(hashes)) == 3
    # --compile-cache shared: the children of one sweep run share one cache folder, and no run shares another's.
    per_run = [{inductor_cache(data) for *_, data in group} for group in (final[: len(after_sigint)], final[-1:])]
    assert all(len(dirs) == 1 and "tokbench-compile-cache-" in next(iter(dirs)) for dirs in per_run)
    assert per_run[0] != per_run[1]


@pytest.mark.parametrize("bad", ["not json", '{"model": "tiny-llama", "batch_size": 0}'])
def test_the_worker_refuses_a_config_it_cannot_read(tmp_path: Path, bad: str) -> None:
    config = tmp_path / "config.json"
    config.write_text(bad, encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, "-m", "tokbench.sweep.worker", "--config", str(config), "--result", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "cannot read the config" in completed.stderr
    assert not (tmp_path / "r.json").exists()

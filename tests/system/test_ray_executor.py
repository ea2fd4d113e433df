"""The Ray executor on a real local Ray cluster (started here, 2 CPUs, no GPU, no dashboard), with real worker
processes, real kills and a real SQLite store. Needs the ``ray`` extra (``make test`` installs it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from support import TINY, stored_rows

from tokbench.sweep.runner import run_sweep

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")

ENDLESS = 1_000_000

# One Ray cluster at a time on this machine: every test that starts or joins one runs on the same pytest-xdist
# worker (make test runs with --dist loadgroup).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]


def rows(db: Path) -> list[tuple[str, str, str, dict[str, Any]]]:
    found = stored_rows(db, "name, config_hash, status, result_json")
    return [(name, config_hash, status, json.loads(data)) for name, config_hash, status, data in found]


def worker_named(name: str) -> psutil.Process | None:
    """A running ``tokbench.sweep.worker`` whose (first) config is ``name``, found like ``ps`` would, among this
    test process's descendants (the cluster's raylet and its workers are): on a shared machine another test run
    may have a worker of the same name, which is not this test's to kill."""
    for process in psutil.Process().children(recursive=True):
        try:
            command = process.cmdline()
        except psutil.Error:  # ended meanwhile
            continue
        named = "--name" in command and command[command.index("--name") + 1 :][:1] == [name]
        if "tokbench.sweep.worker" in command and named:
            return process
    return None


def test_a_sweep_through_ray_survives_crashes_timeouts_and_a_killed_worker(ray_cluster: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama", "hidden_size": ', encoding="utf-8")
    configs: list[dict[str, Any]] = [
        {"batch_size": [1, 2]},  # two that run (one load group with the three below)
        {"name": "times-out", "batch_size": 3, "measurement_iterations": ENDLESS, "timeout_s": 8},
        {"name": "killed", "batch_size": 4, "measurement_iterations": ENDLESS},
        {"name": "after-kill", "batch_size": 5},
        {"name": "broken", "model": str(broken)},  # loading raises in the child: its own task
    ]
    spec = {**TINY, "configs": configs}

    # An outside kill of the Ray worker process that runs "killed" (the parent of its tokbench worker).
    killed: dict[str, Any] = {}

    def kill_the_ray_worker() -> None:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and not killed:
            child = worker_named("killed")
            if child is not None:
                time.sleep(1.0)
                ray_worker = child.parent()
                killed.update(child=child, ray_worker_pid=ray_worker.pid)
                ray_worker.send_signal(signal.SIGKILL)
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_the_ray_worker, daemon=True)
    killer.start()
    db = tmp_path / "ray.db"
    outcome = run_sweep(spec, db=db, executor="ray", start_method="spawn", progress=False)
    killer.join(5)
    assert killed, "the test never found the worker of the 'killed' config"

    stored = rows(db)
    by_name = {name: (status, data) for name, _, status, data in stored}
    assert len(stored) == len(by_name) == len(outcome.entries) == 6  # nothing lost, nothing twice
    statuses = {name: status for name, (status, _) in by_name.items()}
    ok_names = [name for name, status in statuses.items() if status == "ok"]
    assert sorted(ok_names) == sorted(["after-kill", *[n for n in statuses if n.startswith("tiny-llama-sdpa")]])
    assert len(ok_names) == 3
    assert by_name["times-out"][1]["reason"].startswith("timed out after 8 s")
    assert by_name["broken"][1]["reason"].startswith("loading failed:")
    reason = by_name["killed"][1]["reason"]
    assert by_name["killed"][0] == "failed" and reason.startswith("the Ray task running it died:"), reason
    # The worker the kill orphaned ended itself.
    _, alive = psutil.wait_procs([killed["child"]], timeout=15)
    assert not alive

    first = by_name[ok_names[0]][1]["launch"]
    after = by_name["after-kill"][1]["launch"]
    assert first["executor"] == "ray" and first["launcher"] == "process" and first["start_method"] == "spawn"
    assert first["ray"]["node_id"] and first["ray"]["task_id"] and first["ray"]["gpu_ids"] == []
    assert after["ray"]["task_id"] != first["ray"]["task_id"]  # the rest of the group went on in a new task
    assert after["ray"]["worker_pid"] != killed["ray_worker_pid"]
    assert by_name[ok_names[0]][1]["phases"]["load"]["shared_by"] == 5
    # the thread policy: torch ran on the CPU the task reserved (default --cpus-per-config 1), and said so
    assert first["threads"] == 1 == by_name[ok_names[0]][1]["environment"]["torch_threads"]

    # The same sweep (less the kill) run locally gives the same statuses.
    local_spec = {**TINY, "configs": [entry for entry in configs if entry.get("name") != "killed"]}
    local_db = tmp_path / "local.db"
    run_sweep(local_spec, db=local_db, start_method="spawn", progress=False)
    local = {name: status for name, _, status, _ in rows(local_db)}
    assert local == {name: status for name, status in statuses.items() if name != "killed"}


def test_ctrl_c_cancels_the_ray_tasks_and_resume_reruns_nothing_stored(ray_cluster: str, tmp_path: Path) -> None:
    sweep_file = tmp_path / "sweep.yaml"
    configs = [{"name": "first"}, {"name": "second", "batch_size": 2, "new_tokens": 32, "measurement_iterations": 20}]
    sweep_file.write_text(yaml.safe_dump({**TINY, "configs": configs}), encoding="utf-8")
    db = tmp_path / "results.db"
    command = [sys.executable, "-m", "tokbench", "sweep", "--no-progress", "--config", str(sweep_file), "--db", str(db)]
    command += ["--executor", "ray", "--ray-address", ray_cluster, "--start-method", "spawn"]
    env = {**os.environ, "COLUMNS": "200"}
    driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not rows(db) and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        worker = worker_named("first")  # the group's worker, now measuring "second"
        driver.send_signal(signal.SIGINT)
        _, stderr = driver.communicate(timeout=120)
        assert driver.returncode == 130, stderr
        assert "run again with --resume" in stderr
        assert [name for name, *_ in rows(db)] == ["first"]
        if worker is not None:  # cancelled: its task ended the child
            _, alive = psutil.wait_procs([worker], timeout=30)
            assert not alive
    finally:
        if driver.poll() is None:  # a failed assertion must not leave the sweep running
            driver.kill()
            driver.communicate()

    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr == ""  # Ray's own lines (connecting, token authentication) stay off the terminal
    assert "1 already stored (resumed)" in resumed.stdout
    stored = rows(db)
    assert [(name, status) for name, _, status, _ in stored] == [("first", "ok"), ("second", "ok")]
    # what Ray said in the driver is kept with the result instead
    assert any(message["origin"] == "ray" for message in stored[-1][-1].get("library_output", []))
    assert len({config_hash for _, config_hash, _, _ in stored}) == 2

"""Load groups and the local executor with real worker processes, the real tiny preset and a real store."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import TINY, descendants_with

from tokbench.config import BenchmarkConfig
from tokbench.sweep.launchers import InlineLauncher, ProcessLauncher
from tokbench.sweep.runner import run_sweep
from tokbench.sweep.threads import usable_cores

ENDLESS = 1_000_000


def stored(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as connection:
        return [json.loads(row[0]) for row in connection.execute("SELECT result_json FROM results ORDER BY run_id")]


def test_a_load_group_inline_loads_once_and_gives_each_config_its_own_result() -> None:
    configs = [BenchmarkConfig.from_dict({**TINY, "batch_size": size}) for size in (1, 2)]
    with InlineLauncher() as launcher:
        results = list(launcher.launch_group(configs, [None, None]))
    assert [result.config for result in results] == configs
    assert all(result.ok for result in results), [result.reason for result in results]
    loads = [result.phases.load for result in results]
    assert loads[0] == loads[1] and loads[0].shared and loads[0].shared_by == 2
    assert loads[0].weights_ns is not None and loads[0].weights_ns > 0  # the real load's time, not "provided"
    assert all(result.model_source.kind == "preset" for result in results)
    assert [result.launch.group.index for result in results] == [0, 1]


@pytest.mark.slow
def test_a_worker_that_dies_in_a_group_fails_only_its_config_and_the_rest_go_on_in_a_fresh_worker() -> None:
    configs = [
        BenchmarkConfig.from_dict({**TINY, "batch_size": 1}),
        BenchmarkConfig.from_dict({**TINY, "batch_size": 2, "measurement_iterations": ENDLESS, "name": "endless"}),
        BenchmarkConfig.from_dict({**TINY, "batch_size": 3}),
    ]
    with ProcessLauncher(start_method="spawn") as launcher:
        results = list(launcher.launch_group(configs, [600.0, 6.0, 600.0]))
    assert [result.status for result in results] == ["ok", "failed", "ok"], [result.reason for result in results]
    assert results[1].reason.startswith("timed out after 6 s")
    assert results[1].launch.stderr_tail
    first, _, last = (result.launch for result in results)
    assert first.group.worker == 1 and last.group.worker == 2
    assert first.pid != last.pid  # a fresh worker process for what was left
    assert results[0].phases.load.shared_by == 3
    assert not results[2].phases.load.shared  # alone in its fresh worker: a load of its own


@pytest.mark.slow
def test_parallel_2_runs_cpu_configs_in_two_slots_each_result_stored_once(tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    spec = {**TINY, "batch_size": [1, 2, 3]}
    outcome = run_sweep(spec, db=db, parallel=2, share_load=False, start_method="spawn", progress=False)
    assert [entry.result.status for entry in outcome.entries if entry.result] == ["ok"] * 3
    results = stored(db)
    assert sorted(result["config"]["batch_size"] for result in results) == [1, 2, 3]
    launches = [result["launch"] for result in results]
    assert {launch["slot"] for launch in launches} == {0, 1}
    assert all(launch["executor"] == "local" and launch["parallel"] == 2 for launch in launches)
    assert len({launch["pid"] for launch in launches}) == 3
    # one thread policy: the cores divided between the 2 configs at once, given to and applied in each child
    expected = max(1, usable_cores() // 2)
    assert all(launch["threads"] == expected for launch in launches)
    assert all(result["environment"]["torch_threads"] == expected for result in results)


@pytest.mark.slow
def test_the_plan_says_threads_and_when_parallel_cannot_apply(tmp_path: Path) -> None:
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text("model: tiny-llama\nsequence_length: 8\nnew_tokens: 4\nbatch_size: [1, 2]\n")
    command = [sys.executable, "-m", "tokbench", "sweep", "--config", str(sweep_file), "--parallel", "2", "--dry-run"]
    planned = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert planned.returncode == 0, planned.stderr
    assert "--parallel 2 cannot apply fully: this sweep has 1 load group(s)" in planned.stdout  # one shared load
    assert f"threads  {usable_cores()} torch thread(s) per config process" in planned.stdout  # one at once: all cores
    refused = subprocess.run(
        [*command, "--no-share-load", "--threads", str(usable_cores())],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert refused.returncode == 2 and "--threads" in refused.stderr  # 2 at once x all the cores: refused


@pytest.mark.parametrize("option", [{"launcher": "inline", "parallel": 2}, {"gpus_per_config": 1}])
def test_options_this_machine_or_launcher_cannot_honour_are_refused(tmp_path: Path, option: dict[str, Any]) -> None:
    from tokbench.errors import ConfigError
    from tokbench.sweep.executors.local import visible_gpus

    if "gpus_per_config" in option and visible_gpus():
        pytest.skip("GPUs are visible here: --gpus-per-config 1 is possible")
    with pytest.raises(ConfigError):
        run_sweep(TINY, db=tmp_path / "r.db", progress=False, **option)


def test_the_ray_executor_without_ray_says_how_to_get_it(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps(TINY), encoding="utf-8")
    # A Python where `import ray` fails, as in an install without the extra.
    code = "import sys; sys.modules['ray'] = None; from tokbench.cli import main; sys.exit(main(sys.argv[1:]))"
    arguments = ["sweep", "--config", str(sweep), "--db", str(tmp_path / "r.db"), "--executor", "ray"]
    completed = subprocess.run(
        [sys.executable, "-c", code, *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tokbench: the ray executor needs Ray"), completed.stderr
    assert "pip install 'tokbench[ray]'" in lines[0]
    assert not (tmp_path / "r.db").exists()  # nothing written


def test_the_plan_says_which_configs_share_a_load(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps({**TINY, "batch_size": [1, 2], "attn_implementation": ["sdpa", "eager"]}), "utf-8")
    command = [sys.executable, "-m", "tokbench", "sweep", "--config", str(sweep), "--dry-run"]
    env = {**os.environ, "COLUMNS": "300"}
    shared = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert shared.returncode == 0, shared.stderr
    lines = [line for line in shared.stdout.splitlines() if line.startswith("load ")]
    assert len(lines) == 2 and all("2 configs on one load" in line for line in lines)
    assert "tiny-llama-sdpa-bfloat16-b1-s8-n4, tiny-llama-sdpa-bfloat16-b2-s8-n4" in "".join(lines)
    alone = subprocess.run([*command, "--no-share-load"], capture_output=True, text=True, timeout=120, env=env)
    assert "on one load" not in alone.stdout and "not shared" in alone.stdout


def test_show_says_where_an_executor_ran_a_config() -> None:
    from tokbench.report.terminal import launch_lines
    from tokbench.schema.results import BenchmarkResult

    ray_launch = {
        "launcher": "process",
        "executor": "ray",
        "ray": {"node_ip": "10.0.0.7", "node_id": "abcdef0123456789", "task_id": "T1", "gpu_ids": ["3"]},
        "group": {"index": 1, "size": 4, "worker": 2},
    }
    result = BenchmarkResult(config=BenchmarkConfig.from_dict(TINY), status="ok", launch=ray_launch)
    lines = launch_lines(result)
    assert "ray: node 10.0.0.7 (abcdef012345), task T1, GPUs 3" in lines
    assert "load group: config 2 of 4, worker 2" in lines
    local = {"launcher": "process", "executor": "local", "parallel": 2, "slot": 1, "gpus": ["GPU-x"]}
    local_result = BenchmarkResult(config=result.config, status="ok", launch=local)
    assert "local slot 1 of 2, GPUs GPU-x" in launch_lines(local_result)


@pytest.mark.slow
def test_ctrl_c_ends_every_parallel_child_and_keeps_the_store(tmp_path: Path) -> None:
    import signal
    import time

    import psutil

    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps({**TINY, "batch_size": [1, 2], "measurement_iterations": ENDLESS}), "utf-8")
    db = tmp_path / "r.db"
    command = [sys.executable, "-m", "tokbench", "sweep", "--no-progress", "--config", str(sweep), "--db", str(db)]
    command += ["--parallel", "2", "--no-share-load"]  # two configs, two workers at once
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def workers() -> list[psutil.Process]:
        return descendants_with(driver.pid, "tokbench.sweep.worker")  # a child exiting meanwhile is skipped

    try:
        deadline = time.monotonic() + 300
        while len(workers()) < 2 and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        running = workers()
        assert len(running) == 2, "two configs should run at once"
        driver.send_signal(signal.SIGINT)
        _, stderr = driver.communicate(timeout=120)
        assert driver.returncode == 130, stderr
        _, alive = psutil.wait_procs(running, timeout=15)
        assert not alive, "a parallel child outlived the interrupted sweep"
    finally:
        if driver.poll() is None:  # a failed assertion must not leave the sweep running
            driver.kill()
            driver.communicate()
    if db.exists():
        with sqlite3.connect(db) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)

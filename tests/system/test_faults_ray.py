"""Fault injection, the cluster (issue 24): an address nothing answers on, a config no node can hold, and tasks
that wait: each is said in one line instead of a silent hang.

Real parts: a real local Ray cluster (2 CPUs, no GPU, loopback only), the CLI as a separate driver process,
a real closed port, real tasks waiting for CPUs.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from faults_support import TINY_FIELDS, stderr_line, tokbench, write_json

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")

# the ray_cluster fixture (tests/system/conftest.py): one Ray cluster at a time, so the Ray suites share a worker
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_address_is_one_line_within_seconds(tmp_path: Path) -> None:
    sweep = write_json(tmp_path / "s.json", TINY_FIELDS)
    started = time.monotonic()
    done = tokbench("sweep", "--config", str(sweep), "--db", str(tmp_path / "r.db"), "--executor", "ray",
                    "--ray-address", f"127.0.0.1:{_closed_port()}", timeout=120)  # fmt: skip
    assert done.returncode == 2 and time.monotonic() - started < 60  # Ray alone retried for minutes
    assert "cannot reach the Ray cluster at 127.0.0.1:" in stderr_line(done)
    done = tokbench("sweep", "--config", str(sweep), "--db", str(tmp_path / "r.db"), "--executor", "ray",
                    "--ray-address", "no-port-here", timeout=60)  # fmt: skip
    assert done.returncode == 2 and "is not HOST:PORT" in stderr_line(done)
    assert not (tmp_path / "r.db").exists()
    # fix: sweep.executors.ray_cluster.check_reachable (a TCP connect with a timeout) before ray.init


def test_a_config_no_node_can_hold_is_refused_before_submitting(ray_cluster: str, tmp_path: Path) -> None:
    sweep = write_json(tmp_path / "s.json", TINY_FIELDS)
    started = time.monotonic()
    done = tokbench("sweep", "--config", str(sweep), "--db", str(tmp_path / "r.db"), "--executor", "ray",
                    "--ray-address", ray_cluster, "--cpus-per-config", "64", timeout=180)  # fmt: skip
    assert done.returncode == 2, done.stderr[-800:]
    line = stderr_line(done)
    assert "no node of the Ray cluster can run" in line and "reserves 64 CPU(s)" in line and "has 2 CPU(s)" in line
    assert time.monotonic() - started < 150 and not (tmp_path / "r.db").exists()
    assert ray.available_resources().get("CPU") == 2  # nothing was submitted, nothing holds a CPU
    # fix: RayExecutor.check_feasible against every alive node's resources, before the store and the tasks


def test_waiting_tasks_say_what_they_wait_for(
    ray_cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tokbench.results.store import ResultStore
    from tokbench.sweep.executors import ray_cluster as ray_executor
    from tokbench.sweep.plan import SweepSpec, plan_sweep
    from tokbench.sweep.runner import execute_plan

    monkeypatch.setattr(ray_executor, "PENDING_REPORT_S", 2.0)  # a line after 2 s without news, not 60
    lines: list[str] = []
    executor = ray_executor.RayExecutor(cpus_per_config=2, start_method="spawn", notify=lines.append)
    plan = plan_sweep(SweepSpec.from_dict({**TINY_FIELDS, "batch_size": [1, 2]}))
    with ResultStore(tmp_path / "r.db") as store:  # two tasks of 2 CPUs on a 2-CPU cluster: one waits
        outcome = execute_plan(plan, executor, store, share_load=False)
    assert [entry.result.status for entry in outcome.entries if entry.result] == ["ok", "ok"]
    assert lines, "no pending line was printed"
    assert "task(s) outstanding, no result for" in lines[0] and "each reserves 2 CPU(s) and 0 GPU(s)" in lines[0]
    assert "of 2 CPU(s)" in lines[0]
    # fix: RayExecutor.execute reports what is pending and what the cluster has free (PENDING_REPORT_S)

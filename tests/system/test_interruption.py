"""Ctrl-C and SIGTERM sent to real `tokbench run` / `tokbench sweep` processes: what was measured is kept,
the exit code says which signal, no traceback, no temporary folder left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from support import TINY, descendants_with, stored_rows

RUN = [
    "--model", "tiny-llama", "--sequence-length", "8", "--new-tokens", "4", "--device", "cpu",
    "--warmup-iterations", "1", "--measurement-iterations", "1000000", "--no-monitor",
]  # fmt: skip


def start(cwd: Path, *args: str, stderr_path: Path) -> subprocess.Popen[str]:
    # TMPDIR inside the test's folder: every temporary file or folder tokbench makes can be seen (and must go).
    temporary = cwd / "tmp"
    temporary.mkdir(exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", "TMPDIR": str(temporary)}
    return subprocess.Popen(
        [sys.executable, "-m", "tokbench", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr_path.open("w", encoding="utf-8"),
        text=True,
    )


def leftovers(temporary: Path) -> list[str]:
    """What is left in TMPDIR besides torch's own inductor cache (torchinductor_USER, kept across runs by design)."""
    return sorted(path.name for path in temporary.iterdir() if not path.name.startswith("torchinductor_"))


def wait_for(condition: Any, timeout_s: float, what: str, process: subprocess.Popen[str], log: Path) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            raise AssertionError(f"exited ({process.returncode}) before {what}: {log.read_text(encoding='utf-8')}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize(("signal_number", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_measurement_keeps_an_interrupted_result(
    tmp_path: Path, signal_number: int, exit_code: int
) -> None:
    output = tmp_path / "results" / "run.json"
    log = tmp_path / "stderr.txt"
    # With stderr not a terminal, the progress hook writes lines such as "measurement: 2 so far".
    process = start(tmp_path, "run", *RUN, "--output", str(output), stderr_path=log)
    wait_for(lambda: "measurement: 2 so far" in log.read_text(encoding="utf-8"), 240, "measuring", process, log)
    process.send_signal(signal_number)
    stdout, _ = process.communicate(timeout=120)
    stderr = log.read_text(encoding="utf-8")
    assert process.returncode == exit_code, stderr
    assert "Traceback" not in stderr and "Traceback" not in stdout
    name = signal.Signals(signal_number).name
    assert f"tokbench: interrupted: interrupted by {name} after 1 warmup and " in stderr
    assert "TTFT" in stdout and "E2E latency" in stdout and "[interrupted]" in stdout  # the table of what was measured
    data = json.loads(output.read_text(encoding="utf-8"))
    assert data["status"] == "interrupted"
    assert len(data["iterations"]) >= 2
    assert data["phases"]["measurement"]["stop_reason"] == "interrupted"
    assert data["summary"]["e2e_latency_ms"]["count"] == len(data["iterations"])
    assert sorted(path.name for path in output.parent.iterdir()) == ["run.json"]  # no half-written temp file
    assert leftovers(tmp_path / "tmp") == []


def stored(db: Path) -> list[tuple[Any, ...]]:
    return stored_rows(db, "name, status")


def config_children(parent_pid: int) -> list[psutil.Process]:
    """The running config child (spawned, or forked by the fork server)."""
    return descendants_with(parent_pid, "endless")


@pytest.mark.slow
def test_sigterm_stops_a_sweep_like_ctrl_c(tmp_path: Path) -> None:
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(
        yaml.safe_dump({**TINY, "configs": [{"name": "quick"}, {"name": "endless", "measurement_iterations": 10**6}]}),
        encoding="utf-8",
    )
    db = tmp_path / "results.db"
    log = tmp_path / "stderr.txt"
    args = ("sweep", "--no-progress", "--config", str(sweep_file), "--db", str(db), "--compile-cache", "shared",
            "--no-share-load")  # one process per config: the endless one is its own child
    process = start(tmp_path, *args, stderr_path=log)
    wait_for(lambda: stored(db), 240, "the first stored result", process, log)
    children = wait_for(lambda: config_children(process.pid), 60, "the endless child", process, log)
    time.sleep(1.0)
    everything = psutil.Process(process.pid).children(recursive=True)  # fork server, child, compile workers
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=120)
    stderr = log.read_text(encoding="utf-8")
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr and "Traceback" not in stdout
    assert "interrupted; stored results are kept" in stderr
    assert stored(db) == [("quick", "ok")]  # what finished is kept; the stopped config runs again on --resume
    _, alive = psutil.wait_procs([*children, *everything], timeout=15)
    assert not alive, f"outlived the stopped sweep: {alive}"
    assert leftovers(tmp_path / "tmp") == []  # child work folders, shared compile cache, fork server log

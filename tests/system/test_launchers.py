"""The process launcher with both start methods: real children (spawned or forked), real signals.

One launcher per start method serves the whole module, so the fork server starts once per method.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from support import TINY

from tokbench.config import BenchmarkConfig
from tokbench.sweep.launchers import START_METHODS, ProcessLauncher

ENDLESS = 1_000_000


@pytest.fixture(scope="module", params=START_METHODS)
def launcher(request: pytest.FixtureRequest) -> Iterator[ProcessLauncher]:
    with ProcessLauncher(start_method=request.param) as process_launcher:
        yield process_launcher


def find_child(name: str, timeout_s: float = 120) -> psutil.Process:
    """The running child of this config, found by its command line as `ps` shows it (forked ones too)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in psutil.Process().children(recursive=True):
            try:
                cmdline = " ".join(process.cmdline())
            except psutil.NoSuchProcess:
                continue
            if "tokbench.sweep.worker" in cmdline and f"--name {name}" in cmdline:
                return process
        time.sleep(0.1)
    raise AssertionError(f"no child for {name}")


def signal_when_running(name: str, signal_number: int, found: list[psutil.Process]) -> threading.Thread:
    def send() -> None:
        child = find_child(name)
        found.append(child)
        time.sleep(1.0)  # usually measuring by now; under load maybe still importing (a stack either way)
        child.send_signal(signal_number)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def test_an_ok_result_comes_back_with_its_launch_record_and_own_compile_cache(launcher: ProcessLauncher) -> None:
    config = BenchmarkConfig(**TINY)
    result = launcher.launch(config, timeout_s=120)
    assert result.ok, result.reason
    assert result.config_hash == config.config_hash
    launch = result.launch
    assert launch.start_method == launcher.start_method and launch.exit_code == 0
    assert launch.pid not in (os.getpid(), launch.forkserver_pid)
    assert launch.stderr_tail is None and "stderr_tail" not in launch.to_dict()
    # --compile-cache fresh: the child saw its own cache folders in its environment.
    env = result.environment.env
    assert "tokbench-child-" in env["TORCHINDUCTOR_CACHE_DIR"]
    assert not psutil.pid_exists(launch.pid) or psutil.Process(launch.pid).status() == psutil.STATUS_ZOMBIE


def test_a_child_past_its_timeout_is_ended_and_recorded_as_failed(launcher: ProcessLauncher) -> None:
    config = BenchmarkConfig(**{**TINY, "measurement_iterations": ENDLESS, "name": "endless"})
    result = launcher.launch(config, timeout_s=4)
    assert result.status == "failed"
    assert result.reason.startswith("timed out after 4 s")
    assert result.launch.exit_code == -signal.SIGTERM
    assert not psutil.pid_exists(result.launch.pid)


@pytest.mark.parametrize(
    ("signal_number", "expected_output"),
    # faulthandler's stack lines: how many threads it dumps (so whether the tail still holds its first line, or
    # its closing module list) depends on which thread the kernel handed the signal to
    [(signal.SIGKILL, ""), (signal.SIGSEGV, r'File ".+", line \d+ in ')],
)
def test_a_killed_or_crashed_child_is_failed_with_its_signal_and_output_tail(
    launcher: ProcessLauncher, signal_number: int, expected_output: str
) -> None:
    name = f"victim-{signal_number}"
    config = BenchmarkConfig(**{**TINY, "measurement_iterations": ENDLESS, "name": name})
    found: list[psutil.Process] = []
    thread = signal_when_running(name, signal_number, found)
    result = launcher.launch(config, timeout_s=120)
    thread.join(timeout=10)
    signal_name = signal.Signals(signal_number).name
    assert result.status == "failed"
    assert f"(pid {found[0].pid}) was killed by {signal_name}" in result.reason
    assert result.launch.pid == found[0].pid and result.launch.signal == signal_name
    assert result.launch.exit_code == -signal_number
    assert re.search(expected_output, result.launch.stderr_tail or ""), result.launch.stderr_tail
    assert (result.environment.captured_by or "").startswith("parent process")


def test_a_dead_fork_server_fails_its_running_config_and_the_next_config_gets_a_new_one() -> None:
    with ProcessLauncher(start_method="forkserver") as process_launcher:
        config = BenchmarkConfig(**{**TINY, "measurement_iterations": ENDLESS, "name": "server-dies"})
        found: list[psutil.Process] = []
        server_cmdline: list[str] = []

        def kill_server() -> None:
            found.append(find_child("server-dies"))
            found.append(psutil.Process(found[0].ppid()))
            server_cmdline.extend(found[1].cmdline())
            found[1].send_signal(signal.SIGKILL)

        thread = threading.Thread(target=kill_server, daemon=True)
        thread.start()
        result = process_launcher.launch(config, timeout_s=120)
        thread.join(timeout=10)
        child, server = found
        assert "tokbench.sweep.forkserver" in server_cmdline
        assert result.status == "failed" and "the fork server died" in result.reason
        assert result.launch.forkserver_error is not None
        _, alive = psutil.wait_procs([child], timeout=10)
        assert not alive, "the child outlived its dead fork server"

        again = process_launcher.launch(BenchmarkConfig(**TINY), timeout_s=120)
        assert again.ok, again.reason
        assert again.launch.start_method == "forkserver" and again.launch.forkserver_pid != server.pid


def test_a_fork_server_that_cannot_start_falls_back_to_spawn_and_says_so(tmp_path: Path) -> None:
    broken_python = tmp_path / "python"
    broken_python.write_text("#!/bin/sh\necho 'no torch here' >&2\nexit 1\n", encoding="utf-8")
    broken_python.chmod(0o755)
    with ProcessLauncher(start_method="forkserver", python=str(broken_python)) as process_launcher:
        result = process_launcher.launch(BenchmarkConfig(**TINY), timeout_s=60)
    assert result.status == "failed"  # the spawned fallback runs the same broken interpreter
    assert result.launch.start_method == "spawn"
    assert result.launch.fallback.startswith("spawn")
    assert "did not start" in result.launch.forkserver_error
    assert "no torch here" in result.launch.stderr_tail


def test_a_changed_environment_restarts_the_fork_server(monkeypatch: pytest.MonkeyPatch) -> None:
    # torch reads variables such as OMP_NUM_THREADS when imported: the child must see what a spawned one would.
    with ProcessLauncher(start_method="forkserver") as process_launcher:
        first = process_launcher.launch(BenchmarkConfig(**TINY), timeout_s=120)
        changed = "2" if os.environ.get("OMP_NUM_THREADS") == "1" else "1"  # tests/conftest.py sets 1
        monkeypatch.setenv("OMP_NUM_THREADS", changed)
        second = process_launcher.launch(BenchmarkConfig(**TINY), timeout_s=120)
    assert first.ok and second.ok, (first.reason, second.reason)
    assert second.launch.forkserver_pid != first.launch.forkserver_pid
    assert second.launch.forkserver_start_s is not None
    assert second.environment.torch_threads == int(changed)

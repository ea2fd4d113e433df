"""Several client processes offering one run's load (``serving.clients``), against the mock in its own process:
one clock for every process (checked, not assumed), the schedule dealt out exactly, stamps causal across three
processes, per-client send lag, and a client that crashes or hangs recorded, never dropped."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import mock_server_process

from tokbench.schema.serving import LengthSpec, ServingSettings
from tokbench.serving.client import RequestSpec
from tokbench.serving.clients import run_in_clients
from tokbench.serving.http import Endpoint
from tokbench.serving.load import LoadPlan, arrival_offsets_ns
from tokbench.serving.mock import MockScript
from tokbench.serving.runner import MOCK_TOKENIZER, ServingRun, run_serving

VENV_BIN = Path(sys.executable).parent


def test_every_process_reads_one_monotonic_clock() -> None:
    """time.perf_counter_ns is CLOCK_MONOTONIC on Linux: a child's reading lies between two of the parent's."""
    if sys.platform != "linux":
        pytest.skip("the shared-clock guarantee is Linux's CLOCK_MONOTONIC")
    assert "CLOCK_MONOTONIC" in time.get_clock_info("perf_counter").implementation
    for _ in range(5):
        before = time.perf_counter_ns()
        child = subprocess.run([sys.executable, "-c", "import time; print(time.perf_counter_ns())"],
                               capture_output=True, text=True, check=True)  # fmt: skip
        after = time.perf_counter_ns()
        assert before < int(child.stdout) < after


@pytest.fixture
def mock_process() -> Iterator[str]:
    """The mock in its own process, so clients, parent and server are three processes reading one clock."""
    script = MockScript(ttft_us=1_000, tpot_us=500, tokens_per_event=2, usage="final")
    with mock_server_process(script.to_json()) as url:
        yield url


def _settings(**changes: object) -> ServingSettings:
    base = {"api": "completions", "model": "mock-model", "load": "rate", "rate": 60.0, "arrival": "poisson",
            "requests": 30, "warmup_requests": 2, "input_tokens": LengthSpec("fixed", value=4),
            "output_tokens": LengthSpec("fixed", value=6), "lag_budget_ms": 1000.0, "timeout_s": 30.0}  # fmt: skip
    return ServingSettings(**{**base, **changes})  # type: ignore[arg-type]


def _mock_log(url: str) -> dict[str, dict]:
    with urllib.request.urlopen(url + "/mock/log", timeout=10) as response:
        return {served["request_id"]: served for served in json.loads(response.read())}


def test_three_clients_split_the_open_loop_schedule_exactly_and_stamps_follow_the_server(mock_process: str) -> None:
    settings = _settings()
    result = run_serving(ServingRun(mock_process, settings, tokenizer=MOCK_TOKENIZER, clients=3))
    log = _mock_log(mock_process)
    assert result.status == "ok", result.reason
    serving = result.serving
    assert serving is not None and serving.client_processes == 3 and serving.valid
    measured = sorted((r for r in serving.requests if not r.warmup), key=lambda r: r.intended_ns)
    assert all(r.ok for r in serving.requests)
    # the one-process schedule, dealt out: arrival i to client i mod 3, at exactly its intended instant
    offsets = arrival_offsets_ns(30, 60.0, "poisson", 1.0, 0)
    start = measured[0].intended_ns
    assert [r.intended_ns - start for r in measured] == offsets
    assert [r.client for r in measured] == [i % 3 for i in range(30)]
    assert {r.client for r in serving.requests if r.warmup} == {0, 1}  # 2 warmups, round-robin
    lags = serving.summary.client_lags  # type: ignore[union-attr]
    assert lags is not None and [(lag.client, lag.requests) for lag in lags] == [(0, 10), (1, 10), (2, 10)]
    # causality across processes, whatever the load: each client sent before the mock read the request, and read
    # each event after the mock wrote it (stamps of three processes on one clock)
    for request in serving.requests:
        served = log[f"tokbench-{request.index}"]
        assert request.sent_ns <= served["received_ns"]
        assert request.intended_ns <= request.sent_ns
        assert all(read >= wrote for read, wrote in zip(request.event_ns, served["write_ns"], strict=True))
        assert request.event_tokens == (2, 2, 2)


def test_a_closed_loop_deals_its_slots_over_the_clients(mock_process: str) -> None:
    settings = _settings(load="concurrency", rate=None, concurrency=4, requests=24)
    result = run_serving(ServingRun(mock_process, settings, tokenizer=MOCK_TOKENIZER, clients=2))
    assert result.status == "ok", result.reason
    serving = result.serving
    assert serving is not None and serving.client_processes == 2
    measured = [r for r in serving.requests if not r.warmup]
    assert all(r.ok for r in measured) and serving.summary.peak_concurrency <= 4  # type: ignore[union-attr]
    assert [r.client for r in sorted(measured, key=lambda r: r.index)] == [(i % 4) % 2 for i in range(24)]


def test_more_clients_than_requests_start_no_idle_processes_and_say_so(mock_process: str) -> None:
    settings = _settings(load="concurrency", rate=None, concurrency=2, requests=4, warmup_requests=0)
    result = run_serving(ServingRun(mock_process, settings, tokenizer=MOCK_TOKENIZER, clients=5))
    assert result.status == "ok" and result.serving.client_processes == 2  # type: ignore[union-attr]
    assert any("2 client processes, not 5" in note for note in result.notes)


def _plan(url: str, load: str = "rate") -> LoadPlan:
    return LoadPlan(Endpoint.parse(url), "completions", "mock-model", load, concurrency=2, rate=50.0, timeout_s=120.0)


def test_a_client_that_crashes_leaves_its_requests_recorded_as_client_failed(tmp_path: Path, mock_process: str) -> None:
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'client exploded: out of sockets' >&2\nexit 3\n")
    broken.chmod(0o755)
    specs = [RequestSpec(i, "tok tok", 2, 4) for i in range(6)]
    driven = run_in_clients(_plan(mock_process), specs, 2, python=str(broken))
    assert sorted(driven.outcomes) == list(range(6))  # every request is there
    assert {o.status for o in driven.outcomes.values()} == {"client_failed"}
    assert all("exited with code 3" in o.error and "out of sockets" in o.error for o in driven.outcomes.values())
    assert len(driven.failures) == 2 and driven.client_of == {i: i % 2 for i in range(6)}


def test_a_client_past_the_deadline_is_ended_and_its_requests_recorded() -> None:
    from tokbench.serving.mock import MockThread

    with MockThread(MockScript(ttft_us=60_000_000)) as mock:  # the first token would take a minute
        specs = [RequestSpec(i, "tok tok", 2, 4) for i in range(3)]
        began = time.monotonic()
        driven = run_in_clients(_plan(mock.url), specs, 1, deadline_s=2.0)
        elapsed = time.monotonic() - began
    assert elapsed < 30  # ended at the deadline (plus the grace before SIGKILL), not after the minute
    assert {o.status for o in driven.outcomes.values()} == {"client_failed"}
    assert "ended by signal" in driven.failures[0]


def test_serve_bench_clients_prints_each_clients_send_lag(mock_process: str, tmp_path: Path) -> None:
    completed = subprocess.run(
        [str(VENV_BIN / "tokbench"), "serve-bench", mock_process, "--rate", "40", "--requests", "20", "--clients",
         "2", "--lag-budget-ms", "1000", "--output-tokens", "4", "--output-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "client processes: 2; send lag ms per client: #1 (10 requests)" in completed.stdout
    stored = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert stored["serving"]["client_processes"] == 2
    assert {r["client"] for r in stored["serving"]["requests"]} == {0, 1}

"""``tokbench ab`` over serving endpoints, end to end with real processes on loopback: two versions of the bundled
mock launched fresh for every run (the slower one comes out slower and trips --fail-on regression), an A/A of one
running server (never trips it), clients that fall behind (nothing decided, said why), and bad input.

Only large scripted effects are asserted (×4 per token), and the A/A runs at a 10% minimum effect and alpha 0.001:
what the statistics guarantee at their stated error rates is proven by tests/unit/test_compare_calibration.py;
these tests prove the wiring, whatever the machine's load."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import mock_server_process

from tokbench.results.store import ResultStore
from tokbench.serving.mock import MockScript

VENV_BIN = Path(sys.executable).parent
SERVING_FLAGS = ("--output-tokens", "12", "--input-tokens", "4", "--warmup", "2", "--no-progress")


def _mock_command(script: MockScript) -> str:
    return shlex.join([sys.executable, "-m", "tokbench.serving.mock", "--port", "{port}", "--script", script.to_json()])


def _ab(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "tokbench"), "ab", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})  # fmt: skip


def _runs(path: Path) -> list:
    with ResultStore(path, read_only=True) as store:
        return [store.result(run.run_id) for run in store.runs()]


def test_a_slower_launched_server_version_comes_out_slower_and_trips_the_gate(tmp_path: Path) -> None:
    fast = MockScript(ttft_us=2_000, tpot_us=1_000)
    slow = MockScript(ttft_us=2_000, tpot_us=4_000)
    secret = "sk-ab-serving-NEVER-STORED"
    (tmp_path / "key").write_text(secret)
    done = _ab("--a-launch", _mock_command(fast), "--b-launch", _mock_command(slow), "--b-label", "v2",
               "--concurrency", "2", "--requests", "16", "--min-pairs", "3", "--max-pairs", "4", "--alpha", "0.01",
               "--fail-on", "regression", "--format", "json", "--db", "ab.db", "--api-key-file", "key",
               *SERVING_FLAGS, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]  # EXIT_REGRESSION
    report = json.loads(done.stdout)
    verdicts = {m["metric"]: m["verdict"] for w in report["workloads"] for m in w["metrics"]}
    assert verdicts["tpot_ms"] == "slower" and verdicts["e2e_latency_ms"] == "slower"
    assert report["workloads"][0]["design"] == "paired"
    assert "freshly launched server" in done.stderr and "regression" in done.stderr
    results = _runs(tmp_path / "ab.db")
    ab_id = report["extra"]["ab"]["id"]
    assert {r.launch.sweep_id for r in results} == {f"{ab_id}-a", f"{ab_id}-b"} and len(results) >= 6
    # one process of a side: a fresh server (its own pid) and a fresh client process, every run
    assert len({r.serving.server.pid for r in results}) == len(results)
    assert all(r.serving.server.kind == "launched" and r.serving.client_processes == 1 for r in results)
    assert {r.serving.settings.label for r in results} == {"A", "v2"}
    assert "\"tpot_us\": 4000" in report["extra"]["ab"]["sides"]["b"]["launch"]
    assert secret not in done.stdout + done.stderr + (tmp_path / "ab.db").read_bytes().decode("latin-1")


@pytest.fixture
def one_mock() -> Iterator[str]:
    with mock_server_process(MockScript(ttft_us=2_000, tpot_us=1_000).to_json()) as url:
        yield url


def test_an_a_a_of_one_running_server_does_not_trip_the_gate(one_mock: str, tmp_path: Path) -> None:
    done = _ab("--a-url", one_mock, "--b-url", one_mock, "--rate", "40", "--clients", "2", "--lag-budget-ms", "1000",
               "--requests", "20", "--min-pairs", "3", "--max-pairs", "3", "--min-effect", "0.10", "--alpha", "0.001",
               "--fail-on", "regression", "--format", "json", "--db", "aa.db", *SERVING_FLAGS,
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert not report["regressed"]
    assert all(m["verdict"] != "slower" for w in report["workloads"] for m in w["metrics"])
    assert "the same server process" in done.stderr  # the unit of a URL side, stated
    results = _runs(tmp_path / "aa.db")
    assert len(results) == 6 and all(r.serving.client_processes == 2 for r in results)
    assert all(any("the same server process" in note for note in r.notes) for r in results)


def test_clients_that_fall_behind_decide_nothing_and_say_why(one_mock: str, tmp_path: Path) -> None:
    # a 1 µs lag budget no client keeps: every run is invalid, so no pair is usable and the side stops the A/B
    done = _ab("--a-url", one_mock, "--b-url", one_mock, "--rate", "50", "--lag-budget-ms", "0.001", "--requests",
               "12", "--max-pairs", "5", "--db", "late.db", *SERVING_FLAGS, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 4, done.stderr[-3000:]  # EXIT_FAILED
    assert "failed 3 times in a row: invalid serving run: the client fell behind" in done.stderr
    assert "0 complete pair(s)" in done.stderr
    assert len(_runs(tmp_path / "late.db")) == 6  # every run is stored all the same


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--a-url", "http://127.0.0.1:9"), "--b-url"),  # one side only
        (("--a-url", "http://127.0.0.1:9", "--b-launch", "server --port 8000"), "{port}"),
        (("--a-url", "http://127.0.0.1:9", "--b-url", "http://127.0.0.1:9", "--a-env", "X=1"), "launched server"),
        (("--a-url", "http://127.0.0.1:9", "--b-url", "http://127.0.0.1:9", "--dtype", "float16"), "--dtype"),
        (("--a-url", "http://127.0.0.1:9", "--b-url", "http://127.0.0.1:9", "--b", "dtype=float16"), "--b"),
        (("--a-url", "http://u:p@127.0.0.1:9", "--b-url", "http://127.0.0.1:9"), "credentials"),
        (("--a", "dtype=float16", "--rate", "5"), "--rate"),  # a serving flag on a config A/B: never ignored
        (("--a-url", "http://127.0.0.1:9", "--b-url", "http://127.0.0.1:9", "--rate", "-1"), "--rate"),
    ],
)
def test_bad_serving_ab_input_is_one_line_and_exit_2(args: tuple[str, ...], says: str, tmp_path: Path) -> None:
    done = _ab(*args, "--db", "never.db", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    last = done.stderr.splitlines()[-1]  # argparse's own refusals print the usage first, as for every command
    assert says in last and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 or done.stderr.startswith("usage: tokbench ab")
    assert not (tmp_path / "never.db").exists()

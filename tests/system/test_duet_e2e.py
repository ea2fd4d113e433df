"""`tokbench ab --duet` end to end: the real tiny model, two real worker processes a pair taking turns, a real
store, `tokbench compare` on the stored sides. Plumbing and large effects only (robust to a busy machine); the
statistics are calibrated in tests/unit/test_duet_calibration.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tokbench.results.comparison import duet_problem
from tokbench.results.selectors import SelectedRun
from tokbench.results.store import ResultStore
from tokbench.schema.comparison import ComparisonReport

WORKLOAD = ["--model", "tiny-llama", "--sequence-length", "16", "--new-tokens", "8", "--warmup-iterations", "1",
            "--measurement-iterations", "5", "--device", "cpu", "--no-monitor"]  # fmt: skip
SITECUSTOMIZE = "from tokbench.engine.delay import delay_from_environment\n\ndelay_from_environment()\n"


def tokbench_cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "tokbench", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def delay_flags(folder: Path, waits_ns: dict[str, int]) -> list[str]:
    """Each side's forwards wait this long (engine.delay through a sitecustomize on the side's PYTHONPATH)."""
    (folder / "inject").mkdir()
    (folder / "inject" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    flags = []
    for side, wait_ns in waits_ns.items():
        for variable in (f"PYTHONPATH={folder / 'inject'}", f"TOKBENCH_FORWARD_DELAY_NS={wait_ns}"):
            flags += [f"--{side}-env", variable]
    return flags


@pytest.mark.serial
def test_duet_ab_detects_a_large_slowdown_and_compare_agrees(tmp_path: Path) -> None:
    """Side B's every forward waits 40 ms more (tiny-llama's forward takes 5-40 ms here): four duet pairs, one
    look, the gate trips; every process is stored with its duet record, the rounds are causal in the stored
    timestamps, and `tokbench compare` on the stored sides computes the same duet figures."""
    flags = delay_flags(tmp_path, {"a": 0, "b": 40_000_000})
    done = tokbench_cli("ab", *WORKLOAD, *flags, "--duet", "--min-pairs", "4", "--max-pairs", "4", "--db", "ab.db",
                        "--format", "json", "--fail-on", "regression", "--no-progress", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1, done.stderr
    report = ComparisonReport.from_dict(json.loads(done.stdout))
    (workload,) = report.workloads
    assert workload.design == "duet pairs" and report.sequential is not None and report.sequential.pairs == 4
    metrics = {m.metric: m for m in workload.metrics}
    assert {m.test.method for m in workload.metrics} == {"duet"}
    assert metrics["e2e_latency_ms"].verdict == "slower" and metrics["e2e_latency_ms"].median.ratio > 1.3
    ab_id = report.extra["ab"]["id"]
    with ResultStore(tmp_path / "ab.db") as store:
        runs = {(run.sweep_id[-1], run.repeat_index): store.result(run.run_id) for run in store.runs()}
    assert sorted(runs) == sorted((side, pair) for pair in range(4) for side in "ab")
    for pair in range(4):
        a, b = runs[("a", pair)], runs[("b", pair)]
        assert a.launch.duet is not None and a.launch.duet.rounds == len(a.iterations) == len(b.iterations) == 5
        assert a.launch.duet.partner_pid == b.launch.pid and a.launch.pid != b.launch.pid  # two processes
        assert duet_problem(SelectedRun(a, "a"), SelectedRun(b, "b")) is None  # turns taken, never overlapping
    again = tokbench_cli("compare", f"ab.db:sweep={ab_id}-a", f"ab.db:sweep={ab_id}-b", "--format", "json",
                         "--fail-on", "regression", cwd=tmp_path)  # fmt: skip
    assert again.returncode == 1, again.stderr
    stored = ComparisonReport.from_dict(json.loads(again.stdout))
    assert stored.workloads[0].design == "duet pairs"
    for metric in stored.workloads[0].metrics:
        assert metric.median.ratio == pytest.approx(metrics[metric.metric].median.ratio)
        assert metric.p_value == pytest.approx(metrics[metric.metric].p_value)


def test_duet_side_that_crashes_does_not_hang_and_is_the_one_blamed(tmp_path: Path) -> None:
    """Side B's interpreter exits at once (a crashed side): each pair ends when B is gone, A is told to stop
    (its result says why), and after three pairs the run stops naming side B, not A."""
    started = time.monotonic()
    done = tokbench_cli("ab", *WORKLOAD, "--duet", "--b-python", "/bin/false", "--min-pairs", "2",
                        "--max-pairs", "5", "--db", "ab.db", "--no-progress", cwd=tmp_path, timeout=300)  # fmt: skip
    assert time.monotonic() - started < 240
    assert done.returncode == 4, done.stderr
    assert "side b failed 3 times in a row" in done.stderr
    with ResultStore(tmp_path / "ab.db") as store:
        results = [store.result(run.run_id) for run in store.runs()]
    a_side = [result for result in results if result.launch.sweep_id.endswith("-a")]
    assert len(a_side) == 3 and all(result.status == "failed" for result in results)
    assert all("the paired process ended (side b ended)" in result.phases.measurement.stop_reason for result in a_side)


def test_duet_side_past_its_timeout_is_ended_and_the_other_stops(tmp_path: Path) -> None:
    """Side B's forwards take 3 s each: its validation call alone outlives --timeout 30. The wait for B ends at its
    timeout, B is ended as timed out, A (waiting for its first turn) is told to stop and writes its result; nothing
    hangs. One pair (--budget 1): the failure streak that stops a run is the crash test's (above), and each further
    pair here would cost another 30 s of waiting."""
    flags = delay_flags(tmp_path, {"a": 0, "b": 3_000_000_000})
    started = time.monotonic()
    done = tokbench_cli("ab", *WORKLOAD, *flags, "--duet", "--timeout", "30", "--budget", "1", "--db", "ab.db",
                        "--no-progress", cwd=tmp_path, timeout=300)  # fmt: skip
    assert time.monotonic() - started < 200
    assert done.returncode == 4 and "budget of 1 s spent" in done.stderr, done.stderr
    assert "no side has an ok result to compare" in done.stderr, done.stderr
    with ResultStore(tmp_path / "ab.db") as store:
        results = [store.result(run.run_id) for run in store.runs()]
    b_side = [result for result in results if result.launch.sweep_id.endswith("-b")]
    assert len(results) == 2 and len(b_side) == 1 and b_side[0].reason.startswith("timed out after 30 s")
    (a_side,) = [result for result in results if result.launch.sweep_id.endswith("-a")]
    assert a_side.status == "failed" and a_side.phases.measurement is not None
    assert "side b ran past its timeout" in a_side.phases.measurement.stop_reason  # A was told why


def test_duet_ctrl_c_ends_both_processes_and_keeps_the_stored_pairs(tmp_path: Path) -> None:
    """Ctrl-C while a duet pair runs: exit 130, both of the pair's processes (and the fork servers' children) are
    gone, the pairs finished before are stored (two results a pair: a duet pair is stored once both are back)."""
    import signal
    import uuid

    name = f"duet-int-{uuid.uuid4().hex[:8]}"
    workload = [flag if flag != "5" else "60" for flag in WORKLOAD]  # 60 measured calls: a pair lasts a while
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "tokbench", "ab", *workload, "--name", name, "--duet",
                                "--max-pairs", "20", "--db", "ab.db", "--no-progress"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            if (tmp_path / "ab.db").exists():
                with ResultStore(tmp_path / "ab.db") as store:
                    if store.count() >= 2:
                        break
            time.sleep(0.5)
        time.sleep(2.0)  # into the next pair
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    time.sleep(1.0)
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert name not in listing  # no worker of this run is left
    with ResultStore(tmp_path / "ab.db") as store:
        count = store.count()
    assert count >= 2 and count % 2 == 0


def test_duet_with_a_worker_that_does_not_take_turns_is_refused(tmp_path: Path) -> None:
    """Side B's interpreter runs a worker that never connects (as a tokbench from before duet pairs would, in
    another virtualenv): a clear usage error naming the side and --no-duet, not pairs that never complete."""
    wrapper = tmp_path / "old-python"
    wrapper.write_text(f"#!/bin/sh\nunset TOKBENCH_DUET_SOCKET\nexec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    flags = ["--duet", "--b-python", str(wrapper), "--start-method", "spawn", "--min-pairs", "2", "--max-pairs", "3"]
    done = tokbench_cli("ab", *WORKLOAD, *flags, "--db", "ab.db", "--no-progress", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "side b's worker measured without taking duet turns" in done.stderr and "--no-duet" in done.stderr

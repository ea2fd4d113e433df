"""`tokbench compare` / `regressions` end to end: the real tiny model, real processes, real stores."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import tokbench
from tokbench.analysis.summarize import summarize_traces
from tokbench.config import BenchmarkConfig
from tokbench.engine.delay import ForwardDelay, delayed_forwards
from tokbench.engine.loading import load
from tokbench.results.store import ResultStore
from tokbench.schema.comparison import ComparisonReport, OutputFingerprint
from tokbench.schema.records import GenerationTrace
from tokbench.schema.results import BenchmarkResult, load_result, save_result

WORKLOAD = {
    "model": "tiny-llama",
    "sequence_length": 16,
    "new_tokens": 8,
    "warmup_iterations": 2,
    "measurement_iterations": 10,
    "device": "cpu",
    "monitor": False,
}


def tokbench_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tokbench", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def aa_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The same workload run four times, each in its own process (the sweep's process launcher), into a store."""
    folder = tmp_path_factory.mktemp("aa")
    db = folder / "results.db"
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # one thread per child: two spinning threads on a shared 2-core box crawl
    try:
        outcome = tokbench.run_sweep(dict(WORKLOAD), db=db, repeat=4, progress=False, launcher="process")
    finally:
        if previous is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous
    assert [entry.result.status for entry in outcome.entries if entry.result] == ["ok"] * 4
    pids = {entry.result.launch.pid for entry in outcome.entries if entry.result}
    assert len(pids) == 4  # four separate processes
    return db, outcome.plan.sweep_id


def test_aa_in_separate_processes_finds_no_change_and_passes_the_gate(aa_store: tuple[Path, str]) -> None:
    """Two processes a side, interleaved (runs 1, 3 against 2, 4): the interval resamples processes too.

    One process a side is not enough on a shared machine: there two processes of the same workload differ by
    10-30%, which no amount of calls within a process can show (the report warns about one-process sides).
    """
    db, _ = aa_store
    with ResultStore(db) as store:
        for run_id, side in ((1, "a"), (3, "a"), (2, "b"), (4, "b")):
            (db.parent / side).mkdir(exist_ok=True)
            save_result(store.result(run_id), db.parent / side / f"run{run_id}.json")
    done = tokbench_cli("compare", "a", "b", "--format", "json", "--fail-on", "regression", cwd=db.parent)
    assert done.returncode == 0, done.stderr
    report = ComparisonReport.from_dict(json.loads(done.stdout))
    assert len(report.workloads) == 1 and not report.unmatched
    workload = report.workloads[0]
    assert workload.outputs_changed is False  # same seed, same model: same tokens
    assert [metric.metric for metric in workload.metrics][:4] == ["ttft_ms", "tpot_ms", "itl_ms", "e2e_latency_ms"]
    # A/A: no metric may be called faster or slower. On a quiet machine every verdict is "no significant change";
    # on this shared 2-core box a CI wider than ±2% honestly says "inconclusive".
    for metric in workload.metrics:
        assert metric.verdict in ("no significant change", "inconclusive"), (metric.metric, metric.median)
        assert metric.median.ci_low <= metric.median.ratio <= metric.median.ci_high
        assert metric.baseline_calls == metric.contender_calls == 20
        assert metric.detectable_change > 0 and metric.calls_for_1pct >= 5
    assert report.correction == "holm" and not report.regressed
    # JSON is a faithful, typed round trip
    assert ComparisonReport.from_dict(report.to_dict()) == report


def test_terminal_and_markdown_outputs(aa_store: tuple[Path, str]) -> None:
    db, _ = aa_store
    terminal = tokbench_cli("compare", "run=1", "run=2", "--db", str(db), cwd=db.parent)
    assert terminal.returncode == 0, terminal.stderr
    assert "E2E latency" in terminal.stdout and "95% CI" in terminal.stdout
    assert "outputs identical" in terminal.stdout and "geometric mean" in terminal.stdout
    markdown = tokbench_cli("compare", f"{db}:run=1", f"{db}:run=2", "--format", "markdown", cwd=db.parent)
    assert markdown.returncode == 0
    assert "| metric | unit | baseline | contender | ratio | 95% CI | p (Holm) | verdict |" in markdown.stdout
    assert markdown.stdout.count("| TPOT |") == 1


def test_sweep_baseline_prints_the_comparison(aa_store: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    from tokbench.cli.compare import print_sweep_comparison

    db, sweep_id = aa_store
    assert print_sweep_comparison(f"{db}:run=1", str(db), sweep_id) == 0
    out = capsys.readouterr().out
    assert f"this sweep ({sweep_id})" in out and "contender 4 run(s)" in out  # every repeat pooled


def _first_result(db: Path) -> BenchmarkResult:
    with ResultStore(db) as store:
        return store.result(1)


def test_meaningless_comparisons_are_refused(aa_store: tuple[Path, str], tmp_path: Path) -> None:
    db, _ = aa_store
    real = _first_result(db)
    base = save_result(real, tmp_path / "base.json")
    other_shape = save_result(dataclasses.replace(real, config=real.config.replace(new_tokens=9)), tmp_path / "n9.json")
    done = tokbench_cli("compare", str(base), str(other_shape), cwd=tmp_path)
    assert done.returncode == 2
    assert "different workloads" in done.stderr and "new_tokens 8 vs 9" in done.stderr
    failed = save_result(dataclasses.replace(real, status="failed", reason="boom"), tmp_path / "failed.json")
    done = tokbench_cli("compare", str(base), str(failed), cwd=tmp_path)
    assert done.returncode == 2 and "contender has no ok result" in done.stderr and "boom" in done.stderr
    cuda = dataclasses.replace(real, effective_settings=dataclasses.replace(real.effective_settings, device="cuda:0"))
    done = tokbench_cli("compare", str(base), str(save_result(cuda, tmp_path / "cuda.json")), cwd=tmp_path)
    assert done.returncode == 2 and "different devices (cpu vs cuda)" in done.stderr
    # a setting differs: refused with the fix, compared with --ignore
    fp32 = save_result(dataclasses.replace(real, config=real.config.replace(dtype="float32")), tmp_path / "fp32.json")
    done = tokbench_cli("compare", str(base), str(fp32), cwd=tmp_path)
    assert done.returncode == 2 and "--ignore" in done.stderr
    done = tokbench_cli("compare", str(base), str(fp32), "--ignore", "dtype", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["workloads"][0]["ignored_fields"] == ["dtype 'bfloat16' vs 'float32'"]
    done = tokbench_cli("compare", str(base), str(other_shape), "--ignore", "new_tokens", cwd=tmp_path)
    assert done.returncode == 2 and "never compared" in done.stderr
    for bad in (["missing.json", str(base)], [str(base), f"{tmp_path}/none.db:sweep=x"], [str(base), "sweep=x"]):
        done = tokbench_cli("compare", *bad, cwd=tmp_path)
        assert done.returncode == 2 and done.stderr.startswith("tokbench: ")
        assert not (tmp_path / "none.db").exists()  # reading never creates a store


def test_a_folder_lists_unmatched_workloads_and_changed_outputs(aa_store: tuple[Path, str], tmp_path: Path) -> None:
    db, _ = aa_store
    real = _first_result(db)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    save_result(real, tmp_path / "a" / "one.json")
    save_result(dataclasses.replace(real, config=real.config.replace(batch_size=2)), tmp_path / "a" / "only-a.json")
    (tmp_path / "a" / "notes.json").write_text('{"not": "a result"}')
    changed = dataclasses.replace(real, output_fingerprint=OutputFingerprint.of([1, 2, 3]))
    save_result(changed, tmp_path / "b" / "one.json")
    done = tokbench_cli("compare", "a", "b", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [u["origin"].endswith("only-a.json") for u in report["unmatched"]] == [True]
    assert report["workloads"][0]["outputs_changed"] is True
    assert any("OUTPUTS CHANGED" in warning for warning in report["workloads"][0]["warnings"])


def test_untrusted_names_are_neutralized(aa_store: tuple[Path, str], tmp_path: Path) -> None:
    db, _ = aa_store
    real = _first_result(db)
    evil = "x\x1b[31m|*evil*|<script>\u202e"
    named = dataclasses.replace(real, config=real.config.replace(name=evil))
    base = save_result(named, tmp_path / "a.json")
    terminal = tokbench_cli("compare", str(base), str(base), cwd=tmp_path)
    assert terminal.returncode == 0, terminal.stderr
    assert "\x1b[31m" not in terminal.stdout and "\u202e" not in terminal.stdout
    markdown = tokbench_cli("compare", str(base), str(base), "--format", "markdown", cwd=tmp_path)
    assert "<script>" not in markdown.stdout and "\\|\\*evil\\*\\|" in markdown.stdout


@pytest.fixture
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_ab_injected_slowdown_is_slower_with_the_ci_covering_it(tmp_path: Path, one_thread: None) -> None:
    """Every forward made slower by a known, measured amount → "slower", and the ratio's CI covers it."""
    config = BenchmarkConfig.from_dict(dict(WORKLOAD))
    loaded = load(config)
    (tmp_path / "base").mkdir()
    (tmp_path / "slow").mkdir()
    (tmp_path / "probe").mkdir()

    def run_into(folder: str, index: int, wait_ns: int) -> ForwardDelay:
        with delayed_forwards(loaded.model, wait_ns) as delay:
            result = tokbench.run(config, model=loaded.model, tokenizer=loaded.tokenizer, progress=False,
                              device_warmup_s=0.05)  # fmt: skip
        assert result.ok, result.reason
        save_result(result, tmp_path / folder / f"{index}.json")
        return delay

    # The baseline's forwards wait too, a little: on a machine shared with other work, any wait lets other
    # processes evict this one's caches, which costs the next forward more than the wait itself. Waiting on both
    # sides makes the injected difference the only difference.
    run_into("probe", 0, 0)
    step_ns = int(tokbench.load_result(tmp_path / "probe" / "0.json").summary["tpot_ms"].median * 1e6)
    base_wait_ns, slow_wait_ns = step_ns // 10, step_ns // 10 + step_ns // 2  # + 50% of a step
    base_delays, slow_delays = [], []
    for index in range(4):  # interleaved: base, slow, base, slow...: load drift hits both sides alike
        base_delays.append(run_into("base", index, base_wait_ns))
        slow_delays.append(run_into("slow", index, slow_wait_ns))
    calls_per_run = 1 + WORKLOAD["warmup_iterations"] + WORKLOAD["measurement_iterations"]
    assert all(delay.forwards == calls_per_run * WORKLOAD["new_tokens"] for delay in base_delays + slow_delays)
    done = tokbench_cli("compare", "base", "slow", "--format", "json", "--fail-on", "regression", cwd=tmp_path)
    assert done.returncode == 1, done.stderr  # the CI gate trips
    assert "regression" in done.stderr
    metrics = {m["metric"]: m for m in json.loads(done.stdout)["workloads"][0]["metrics"]}
    tpot, e2e = metrics["tpot_ms"], metrics["e2e_latency_ms"]
    assert tpot["verdict"] == "slower" and e2e["verdict"] == "slower"
    assert metrics["decode_throughput_tok_s"]["verdict"] == "slower"

    # The injected amount, as measured by the hooks: the difference of the mean waits per forward (a sleep
    # overshoots). Each decode step waited that much more, and each call new_tokens forwards' worth.
    def mean_wait_ms(delays: list[ForwardDelay]) -> float:
        waits = [wait / 1e6 for delay in delays for wait in delay.waited_ns]
        return sum(waits) / len(waits)

    wait_ms = mean_wait_ms(slow_delays) - mean_wait_ms(base_delays)
    assert wait_ms > 0
    expected_tpot = (tpot["median"]["baseline"] + wait_ms) / tpot["median"]["baseline"]
    assert tpot["median"]["ci_low"] <= expected_tpot <= tpot["median"]["ci_high"]
    expected_e2e = (e2e["median"]["baseline"] + WORKLOAD["new_tokens"] * wait_ms) / e2e["median"]["baseline"]
    assert e2e["median"]["ci_low"] <= expected_e2e <= e2e["median"]["ci_high"]


def _shifted(result: BenchmarkResult, factor: float, index: int) -> BenchmarkResult:
    """``result`` with every interval stretched by ``factor``, as if run at commit ``index``."""

    def stretch(trace: GenerationTrace) -> GenerationTrace:
        def at(stamp: int) -> int:
            return trace.t0_ns + round((stamp - trace.t0_ns) * factor)

        return dataclasses.replace(
            trace,
            end_ns=at(trace.end_ns),
            token_timestamps_ns=tuple(tuple(at(stamp) for stamp in row) for row in trace.token_timestamps_ns),
        )

    traces = tuple(stretch(trace) for trace in result.iterations)
    environment = {**result.environment.to_dict(), "git": {"commit": f"{index:02d}" + "c" * 38, "dirty": False}}
    return dataclasses.replace(
        result,
        iterations=traces,
        summary=summarize_traces(traces),
        environment=environment,
        started_at=f"2026-11-{index + 1:02d}T10:00:00+00:00",
    )


def test_regressions_finds_the_step_in_a_stored_history(aa_store: tuple[Path, str], tmp_path: Path) -> None:
    db, _ = aa_store
    real = _first_result(db)
    history = tmp_path / "history.db"
    jitter = [1.0, 1.004, 0.997, 1.002, 0.999, 1.003, 1.001, 0.998, 1.002, 0.999, 1.003, 1.0]
    with ResultStore(history) as store:
        for index, wobble in enumerate(jitter):
            store.add(_shifted(real, wobble * (1.10 if index >= 6 else 1.0), index))
    done = tokbench_cli("regressions", "--db", str(history), "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (workload,) = json.loads(done.stdout)["workloads"]
    (change,) = workload["changes"]
    assert change["index"] == 6 and change["direction"] == "slower"
    assert change["relative_change"] == pytest.approx(0.10, abs=0.02)
    assert change["commit_range"] == "05cccccccccc..06cccccccccc"
    table = tokbench_cli("history", "--changes", "--db", str(history), cwd=tmp_path)
    assert table.returncode == 0 and "slower" in table.stdout and "05cccccccccc..06cccccccccc" in table.stdout
    # a flat history has no change point
    flat = tmp_path / "flat.db"
    with ResultStore(flat) as store:
        for index, wobble in enumerate(jitter):
            store.add(_shifted(real, wobble, index))
    done = tokbench_cli("regressions", "--db", str(flat), "--format", "json", cwd=tmp_path)
    assert json.loads(done.stdout)["workloads"][0]["changes"] == []


def test_results_carry_an_output_fingerprint_old_ones_still_load(aa_store: tuple[Path, str], tmp_path: Path) -> None:
    db, _ = aa_store
    real = _first_result(db)
    fingerprint = real.output_fingerprint
    assert fingerprint is not None and len(fingerprint.token_ids) == WORKLOAD["new_tokens"]
    assert fingerprint == OutputFingerprint.of(real.phases.cold_call.sample_token_ids)
    data = real.to_dict()
    del data["output_fingerprint"]  # as written before the field existed
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    assert load_result(path).output_fingerprint is None

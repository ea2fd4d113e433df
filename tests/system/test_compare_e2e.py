"""`tokbench compare` / `regressions` end to end: the real tiny model, real processes, real stores."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tokbench
from tokbench.analysis.summarize import summarize_traces
from tokbench.engine.delay import mean_logged_wait_ms
from tokbench.results.store import ResultStore
from tokbench.schema.comparison import ComparisonReport, OutputFingerprint
from tokbench.schema.records import GenerationTrace
from tokbench.schema.results import BenchmarkResult, load_result, save_result

# The tests on the A/A store are plumbing whatever the load (they share one module fixture, so one worker runs
# them); only the A/B that must find an injected slowdown runs alone (serial), after the parallel part.
pytestmark = pytest.mark.xdist_group("compare_e2e")

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
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "200"}  # tables unwrapped
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


def test_two_processes_a_side_are_compared_process_by_process(aa_store: tuple[Path, str]) -> None:
    """Plumbing, whatever the machine's load: runs 1, 3 against 2, 4 give one value per process and metric, a
    Welch t interval, Holm over four hypotheses, and the gate's exit code says what the report says. Whether
    an A/A comes out "no change" is the calibration suite's business (tests/unit/test_compare_calibration.py):
    a real machine may differ between processes by 10-30%, and a test must not depend on it being quiet."""
    db, _ = aa_store
    with ResultStore(db) as store:
        for run_id, side in ((1, "a"), (3, "a"), (2, "b"), (4, "b")):
            (db.parent / side).mkdir(exist_ok=True)
            save_result(store.result(run_id), db.parent / side / f"run{run_id}.json")
    done = tokbench_cli("compare", "a", "b", "--format", "json", "--fail-on", "regression", cwd=db.parent)
    report = ComparisonReport.from_dict(json.loads(done.stdout))
    assert done.returncode == (1 if report.regressed else 0), done.stderr
    assert len(report.workloads) == 1 and not report.unmatched and report.hypotheses == 4
    workload = report.workloads[0]
    assert workload.outputs_changed is False  # same seed, same model: same tokens
    assert workload.design == "independent" and len(workload.baseline_runs) == 2
    assert [metric.metric for metric in workload.metrics][:4] == ["ttft_ms", "tpot_ms", "itl_ms", "e2e_latency_ms"]
    for metric in workload.metrics:
        assert metric.test is not None and metric.test.method == "welch"
        assert metric.test.baseline_processes == metric.test.contender_processes == 2
        assert metric.median.ci_low <= metric.median.ratio <= metric.median.ci_high
        assert metric.baseline_calls == metric.contender_calls == 20
        assert metric.calls_for_1pct is None and metric.hypothesis
    assert ComparisonReport.from_dict(report.to_dict()) == report  # JSON is a faithful, typed round trip


def test_one_process_a_side_never_decides_nor_fails_the_gate(aa_store: tuple[Path, str], tmp_path: Path) -> None:
    """Run 1 against a copy of itself made 50% slower: one process a side, so no verdict and exit 0 with the
    gate; with a store of repeats of the workload (--db) the stored between-process variance enters."""
    db, sweep_id = aa_store
    real = _first_result(db)
    save_result(real, tmp_path / "one.json")
    save_result(_shifted(real, 1.5, 1), tmp_path / "slow.json")
    done = tokbench_cli("compare", "one.json", "slow.json", "--format", "json", "--fail-on", "regression",
                        cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    metrics = report["workloads"][0]["metrics"]
    assert all(m["verdict"] == "inconclusive" and m["median"]["ci_low"] is None for m in metrics)
    assert all("tokbench ab" in m["verdict_reason"] for m in metrics)
    assert metrics[3]["median"]["ratio"] == pytest.approx(1.5, rel=0.01)
    stored = tokbench_cli("compare", "one.json", "slow.json", "--db", str(db), "--format", "json", cwd=tmp_path)
    assert stored.returncode == 0, stored.stderr
    tests = [m["test"] for m in json.loads(stored.stdout)["workloads"][0]["metrics"]]
    assert all(t["method"] == "stored variance" and sweep_id in t["variance_source"] for t in tests)


def test_terminal_and_markdown_outputs(aa_store: tuple[Path, str]) -> None:
    db, _ = aa_store
    terminal = tokbench_cli("compare", "run=1", "run=2", "--db", str(db), cwd=db.parent)
    assert terminal.returncode == 0, terminal.stderr
    assert "E2E latency" in terminal.stdout and "95% CI" in terminal.stdout
    assert "outputs identical" in terminal.stdout and "geometric mean" in terminal.stdout
    markdown = tokbench_cli("compare", f"{db}:run=1", f"{db}:run=2", "--format", "markdown", cwd=db.parent)
    assert markdown.returncode == 0
    assert "| metric | unit | baseline | contender | ratio | 95% CI | p (Holm) | verdict | test |" in markdown.stdout
    assert markdown.stdout.count("| TPOT |") == 1


def test_sweep_baseline_prints_the_comparison(aa_store: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    from tokbench.cli.compare import print_sweep_comparison

    db, sweep_id = aa_store
    # run 1 is one of this sweep's runs: data compared with itself is refused (issue 24), a distinct baseline is not
    assert print_sweep_comparison(f"{db}:run=1", str(db), sweep_id) == 2
    assert "share 1 measurement(s)" in capsys.readouterr().err
    baseline = _first_result(db)
    earlier = dataclasses.replace(baseline, started_at="2026-01-01T00:00:00+00:00")
    assert print_sweep_comparison(str(save_result(earlier, db.parent / "earlier.json")), str(db), sweep_id) == 0
    out = capsys.readouterr().out
    out = " ".join(out.split())  # the table may wrap at the console's width
    assert f"this sweep ({sweep_id})" in out and "contender 4 process(es)" in out  # every repeat, one value each


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
    other = save_result(dataclasses.replace(named, started_at="2026-01-01T00:00:00+00:00"), tmp_path / "b.json")
    terminal = tokbench_cli("compare", str(base), str(other), cwd=tmp_path)  # distinct: a copy would be refused
    assert terminal.returncode == 0, terminal.stderr
    assert "\x1b[31m" not in terminal.stdout and "\u202e" not in terminal.stdout
    markdown = tokbench_cli("compare", str(base), str(other), "--format", "markdown", cwd=tmp_path)
    assert "<script>" not in markdown.stdout and "\\|\\*evil\\*\\|" in markdown.stdout


SITECUSTOMIZE = "from tokbench.engine.delay import delay_from_environment\n\ndelay_from_environment()\n"


@pytest.mark.serial
def test_ab_detects_a_large_injected_slowdown_and_stores_every_run(tmp_path: Path) -> None:
    """`tokbench ab` end to end with a large effect only (robust to load): side B's every forward spins 40 ms
    (tiny-llama's forward takes 5-40 ms here), injected through B's own environment (PYTHONPATH with a
    sitecustomize, engine.delay); both sides carry the hook, A waits 0. Five pairs, one look: the gate trips."""
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    logs = {side: tmp_path / f"waits-{side}" for side in "ab"}
    flags = []
    for side, wait_ns in (("a", 0), ("b", 40_000_000)):
        logs[side].mkdir()
        for variable in (f"PYTHONPATH={tmp_path / 'inject'}", f"TOKBENCH_FORWARD_DELAY_NS={wait_ns}",
                         f"TOKBENCH_FORWARD_DELAY_LOG={logs[side]}", "OMP_NUM_THREADS=1"):  # fmt: skip
            flags += [f"--{side}-env", variable]
    workload = ["--model", "tiny-llama", "--sequence-length", "16", "--new-tokens", "8", "--warmup-iterations",
                "1", "--measurement-iterations", "5", "--device", "cpu", "--no-monitor"]  # fmt: skip
    done = tokbench_cli("ab", *workload, *flags, "--no-duet", "--min-pairs", "5", "--max-pairs", "5", "--db", "ab.db",
                        "--format", "json", "--fail-on", "regression", "--no-progress", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1, done.stderr  # the gate trips
    report = ComparisonReport.from_dict(json.loads(done.stdout))
    (workload_report,) = report.workloads
    assert workload_report.design == "paired" and report.sequential is not None
    assert report.sequential.pairs == 5 and report.sequential.looks == 1
    metrics = {m.metric: m for m in workload_report.metrics}
    assert metrics["e2e_latency_ms"].verdict == "slower" and metrics["tpot_ms"].verdict == "slower"
    assert metrics["e2e_latency_ms"].test.method == "paired" and metrics["e2e_latency_ms"].median.ratio > 1.3
    assert "env TOKBENCH_FORWARD_DELAY_NS: A 0 | B 40000000" in done.stderr  # the sides' difference, printed
    waited = mean_logged_wait_ms(str(logs["b"]))
    assert waited is not None and waited >= 40.0 and mean_logged_wait_ms(str(logs["a"])) == 0.0
    ab_id = report.extra["ab"]["id"]
    with ResultStore(tmp_path / "ab.db") as store:
        stored = store.runs()
    assert len(stored) == 10 and {run.sweep_id for run in stored} == {f"{ab_id}-a", f"{ab_id}-b"}
    assert sorted(run.repeat_index for run in stored) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    # the stored sides compare again, as pairs, with compare
    again = tokbench_cli("compare", f"ab.db:sweep={ab_id}-a", f"ab.db:sweep={ab_id}-b", "--format", "json",
                         cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0 and json.loads(again.stdout)["workloads"][0]["design"] == "paired"


def test_ab_refuses_sides_of_different_workloads(tmp_path: Path) -> None:
    done = tokbench_cli("ab", "--model", "tiny-llama", "--b", "new_tokens=9", "--db", "x.db", cwd=tmp_path)
    assert done.returncode == 2 and "different workloads" in done.stderr and "new_tokens" in done.stderr
    for bad in (["--a", "nonsense"], ["--b-python", str(tmp_path / "no-python")], ["--a-cwd", str(tmp_path / "no")],
                ["--b", "colour=red"], ["--max-pairs", "1"], ["--min-pairs", "9", "--max-pairs", "5"]):  # fmt: skip
        done = tokbench_cli("ab", "--db", "x.db", *bad, cwd=tmp_path)
        assert (done.returncode == 2 and done.stderr.startswith("tokbench: ")) or "usage:" in done.stderr, bad
    assert not (tmp_path / "x.db").exists() or ResultStore(tmp_path / "x.db").runs() == []


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

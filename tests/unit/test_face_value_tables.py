"""Tables a user reads at face value: a sweep with --repeat shows the median over processes (labelled, with the
range), and every table (sweep, history) shows a busy machine's flag. Built from the stored fixture result."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from rich.console import Console

from tokbench.cli.sweep import sweep_summary_table
from tokbench.hardware.interference import HostReading, assess
from tokbench.report.terminal import history_table
from tokbench.results.store import ResultStore
from tokbench.schema.results import BenchmarkResult, load_result
from tokbench.sweep.plan import PlannedConfig, SweepPlan
from tokbench.sweep.runner import SweepEntry, SweepOutcome

DATA = Path(__file__).resolve().parent.parent / "data"


def with_e2e_median(result: BenchmarkResult, value: float, busy: bool = False) -> BenchmarkResult:
    summary = dict(result.summary)
    summary["e2e_latency_ms"] = dataclasses.replace(summary["e2e_latency_ms"], median=value)
    interference = None
    if busy:
        readings = [HostReading(0, 0.0, 0.0, 0.0), HostReading(2 * 10**9, 4.0, 0.0, 1.0)]  # others: 1.5 of 2 CPUs
        interference = assess(readings, cpus=2)
    return dataclasses.replace(result, summary=summary, interference=interference)


def render(table: object) -> str:
    console = Console(width=400, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def test_repeats_show_the_median_over_processes_with_their_range_not_the_last_repeat() -> None:
    base = load_result(DATA / "result-v2.json")
    repeats = [with_e2e_median(base, 95.6), with_e2e_median(base, 3378.0, busy=True), with_e2e_median(base, 101.0)]
    plan = SweepPlan("s1", (PlannedConfig(base.config, None),), ())
    outcome = SweepOutcome(plan, [SweepEntry(base.config, i, r, i + 1) for i, r in enumerate(repeats)])
    text = render(sweep_summary_table(outcome))
    lines = [line for line in text.splitlines() if "101.0" in line or "[95.60–3,378]" in line]
    assert len(lines) == 2 and "101.0" in lines[0] and "[95.60–3,378]" in lines[1]  # median, then the range below
    assert "3,378 [" not in text  # never the last (or any single) repeat's median alone
    assert "median over processes of each process's median" in text  # labelled
    assert "HOST_BUSY 1/3" in text


def test_a_single_run_sweep_shows_plain_medians_and_a_flags_column() -> None:
    base = load_result(DATA / "result-v2.json")
    plan = SweepPlan("s1", (PlannedConfig(base.config, None),), ())
    outcome = SweepOutcome(plan, [SweepEntry(base.config, 0, with_e2e_median(base, 95.6, busy=True), 1)])
    text = render(sweep_summary_table(outcome))
    assert "95.60" in text and "[" not in text.split("95.60")[1].split()[0]
    assert "HOST_BUSY" in text and "flags" in text


def test_history_lists_run_flags_from_the_store(tmp_path: Path) -> None:
    base = load_result(DATA / "result-v2.json")
    with ResultStore(tmp_path / "r.db") as store:
        store.add(with_e2e_median(base, 95.6, busy=True))
        store.add(base)
    with ResultStore(tmp_path / "r.db", read_only=True) as store:
        runs = store.runs()
    assert "host_busy" in runs[0].flags and "host_busy" not in runs[1].flags
    assert runs[0].to_dict()["flags"].startswith("host_busy") or "host_busy" in runs[0].to_dict()["flags"]
    assert "HOST_BUSY" in render(history_table(runs))


def test_csv_export_has_what_was_measured_and_intervals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import csv
    import io

    from tokbench.cli import main

    base = load_result(DATA / "result-v2.json")
    hostile = dataclasses.replace(base, config=base.config.replace(name="=HYPERLINK(1)", dtype="float32"))
    with ResultStore(tmp_path / "r.db") as store:
        store.add(hostile)
    assert main(["export", "--format", "csv", "--db", str(tmp_path / "r.db")]) == 0
    (row,) = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    config = hostile.config
    assert (row["batch_size"], row["prompt_tokens"], row["new_tokens"]) == (
        str(config.batch_size), str(config.sequence_length), str(config.new_tokens))  # fmt: skip
    assert (row["dtype"], row["attention"], row["compile"], row["quantization"]) == ("float32", "sdpa", "", "")
    interval = hostile.summary["e2e_latency_ms"].median_ci
    assert interval is not None
    assert float(row["e2e_latency_ms_ci_low"]) == interval[0] and float(row["e2e_latency_ms_ci_high"]) == interval[1]
    assert row["name"] == "'=HYPERLINK(1)"  # spreadsheet-safe, as every export cell
    assert list(row).index("e2e_latency_ms_median") + 1 == list(row).index("e2e_latency_ms_ci_low")

"""Reports beyond one run or one sweep: unrelated runs are not a "Sweep", plots that say something, log-scale
ratios with every warning, interval and flag columns, intervals instead of absurd ±%, ordinals."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tokbench.hardware.interference import HostReading, assess
from tokbench.report.data import MonitorData, MonitorSeries, ReportInput, comparison_data, sweep_data
from tokbench.report.figures import comparison_figures, monitor_figures, sweep_figures, to_plotly
from tokbench.report.html import build_report, render_html
from tokbench.report.wording import known_to, ordinal, precision_text
from tokbench.schema.results import BenchmarkResult, load_result

DATA = Path(__file__).resolve().parent.parent / "data"


def variant(result: BenchmarkResult, busy: bool = False, **fields: object) -> BenchmarkResult:
    interference = None
    if busy:
        interference = assess([HostReading(0, 0.0, 0.0, 0.0), HostReading(2 * 10**9, 4.0, 0.0, 1.0)], cpus=2)
    return dataclasses.replace(result, config=result.config.replace(**fields), interference=interference)


def unrelated_runs() -> list[ReportInput]:
    base = load_result(DATA / "result-v2.json")
    configs = [{"attn_implementation": "eager"}, {"dtype": "float32"}, {"new_tokens": 8}, {"sequence_length": 16},
               {"attn_implementation": "eager", "dtype": "float32"}, {"new_tokens": 9}, {"new_tokens": 10},
               {"new_tokens": 11}]  # fmt: skip
    runs = [variant(base, busy=i == 0, **fields) for i, fields in enumerate(configs)]
    return [ReportInput(run, f"run-{i}.json") for i, run in enumerate(runs)]


def test_a_folder_of_unrelated_runs_is_not_titled_sweep_and_has_no_one_point_lines() -> None:
    items = unrelated_runs()
    data = sweep_data(items)
    assert not data.one_sweep
    assert "throughput_vs_batch" not in sweep_figures(data)  # 8 series of one batch size each: no line to draw
    assert "pareto" in sweep_figures(data)  # latency vs throughput still compares them
    report = build_report(items)
    page = next(p for p in report.pages if p.page_id == "sweep")
    assert page.title == "Runs" and "not one sweep" in render_html(report)
    stored = [dataclasses.replace(item, sweep_id="s1") for item in items]
    assert sweep_data(stored).one_sweep


def test_a_legend_of_many_series_goes_beside_the_plot() -> None:
    base = load_result(DATA / "result-v2.json")
    items = [ReportInput(variant(base, new_tokens=n, batch_size=b), f"{n}-{b}.json") for n in range(4, 12)
             for b in (1, 2)]  # fmt: skip
    figure = sweep_figures(sweep_data(items))["throughput_vs_batch"]
    assert len(figure.series) == 8 and figure.legend_beside
    assert to_plotly(figure)["layout"]["legend"]["orientation"] == "v"


def test_sweep_tables_have_interval_and_flag_columns() -> None:
    html = render_html(build_report(unrelated_runs()))
    assert "E2E interval" in html and "(95% CI)" in html
    assert "HOST_BUSY" in html  # the busy run is flagged in the table
    row = sweep_data(unrelated_runs()).rows[0]
    assert row.flags == {"host_busy": 1} and row.e2e_interval is not None


def test_the_comparison_page_plots_ratios_on_a_log_axis_with_the_terminals_warnings() -> None:
    record = {
        "baseline_source": "a", "contender_source": "b", "min_effect": 0.02, "alpha": 0.05,
        "warnings": ["report-level"],
        "workloads": [{"name": "w1", "warnings": ["a side is one process"], "metrics": [{
            "metric": "e2e_latency_ms", "unit": "ms", "verdict": "faster", "p_value": 0.001, "p_adjusted": 0.002,
            "median": {"baseline": 100.0, "contender": 3.0, "ratio": 0.03, "ci_low": 0.02, "ci_high": 0.05}}]}],
        "unmatched": [{"side": "contender", "origin": "x.json", "why": "failed: boom"}],
    }  # fmt: skip
    data = comparison_data(json.loads(json.dumps(record)), "c.json")
    assert data.warnings == ("report-level", "w1: a side is one process",
                             "not compared: contender x.json: failed: boom")  # fmt: skip
    forest = comparison_figures(data)["forest"]
    assert forest.x_log and to_plotly(forest)["layout"]["xaxis"]["type"] == "log"


def test_intervals_too_wide_for_a_plus_minus_read_as_intervals_and_ordinals_are_english() -> None:
    assert precision_text(0.037, (96.0, 104.0)) == "±3.7%"
    assert precision_text(14.209, (80.0, 2940.0)) == "[80.00, 2,940]"
    assert known_to(14.209, (80.0, 2940.0)) == "median E2E only known to lie in [80.00, 2,940] ms"
    assert known_to(0.0093, (99.0, 101.0)) == "median E2E known to ±0.93%"
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]  # fmt: skip
    seconds = tuple(i * 0.05 for i in range(3000))
    monitor = MonitorData(50, 150.0, (), (MonitorSeries("host", "cpu", "%", seconds, (50.0,) * 3000),), ())
    (figure,) = monitor_figures(monitor).values()
    assert "every 2nd sample plotted" in figure.x_title

"""tokbench report: data extraction, escaping, inputs and the CLI, on real tiny-llama results.

The browser checks (plots drawn, no console errors, no requests, numbers equal to the JSON, the hostile
name shown as text) are in test_report_browser.py.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import sqlite3
from pathlib import Path

import pytest

from tokbench import BenchmarkConfig
from tokbench.analysis.metrics import NS_PER_MS
from tokbench.analysis.stats import median
from tokbench.cli import main
from tokbench.engine.runner import run
from tokbench.report.data import (
    ReportInput,
    ReportInputError,
    StoreSelector,
    load_inputs,
    load_sources,
    pareto_front,
    position_latency,
    run_data,
    sweep_data,
)
from tokbench.report.figures import comparison_figures, plotly_text, run_figures, sweep_figures, to_plotly, write_pngs
from tokbench.report.html import build_report, fmt, json_for_script, plotly_js, render_html
from tokbench.results.store import ResultStore
from tokbench.schema.results import BenchmarkResult, save_result

HOSTILE = "<script>alert(1)</script>"


def relabel(result: BenchmarkResult, **fields: object) -> BenchmarkResult:
    """The same measured result under other config fields (the numbers stay real)."""
    return dataclasses.replace(result, config=result.config.replace(**fields))


@pytest.fixture(scope="module")
def real_result(tmp_path_factory: pytest.TempPathFactory) -> BenchmarkResult:
    config = BenchmarkConfig(
        model="tiny-llama", sequence_length=16, new_tokens=8, warmup_iterations=2, measurement_iterations=3,
        device="cpu", monitor_interval_ms=20,
    )  # fmt: skip
    result = run(config, progress=False)
    assert result.ok, result.reason
    return result


@pytest.fixture(scope="module")
def hostile_result(real_result: BenchmarkResult) -> BenchmarkResult:
    return dataclasses.replace(
        relabel(real_result, model=HOSTILE, name=f"{HOSTILE} $x$ run"), notes=(f"note {HOSTILE}",)
    )


def test_summary_and_positions_come_from_the_result(real_result: BenchmarkResult) -> None:
    data = run_data(ReportInput(real_result, "x.json"))
    for row in data.summary:
        summary = real_result.summary[row.metric]
        assert (row.median, row.count, row.p99) == (summary.median, summary.count, summary.p99)
    positions = position_latency(real_result)
    assert positions is not None
    assert positions.positions == tuple(range(2, 9))  # 8 new tokens: gaps before tokens 2..8
    gaps = [(t.token_timestamps_ns[0][1] - t.token_timestamps_ns[0][0]) / NS_PER_MS for t in real_result.iterations]
    assert positions.median_ms[0] == median(gaps)
    assert positions.requests == 3
    assert data.iterations is not None
    assert data.iterations.e2e_ms == tuple(t.e2e_ns / NS_PER_MS for t in real_result.iterations)
    assert data.warmup is not None and len(data.warmup.e2e_ms) == 2
    assert data.monitor is not None and data.monitor.series  # host CPU / RSS samples
    figures = run_figures(data)
    assert {"positions", "dist_ttft_ms", "dist_itl_ms", "dist_e2e_latency_ms", "warmup", "iterations",
            "memory"} <= set(figures)  # fmt: skip
    assert any(key.startswith("monitor_") for key in figures)


def test_json_for_script_cannot_close_the_script_block() -> None:
    value = {"name": f"</script><script>alert(1)</script>{HOSTILE}<!--\u2028&"}
    text = json_for_script(value)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == value


def test_hostile_text_never_appears_raw(hostile_result: BenchmarkResult) -> None:
    page = render_html(build_report([ReportInput(hostile_result, f"{HOSTILE}.json")]))
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the escaped text is there, shown as text
    figure = to_plotly(run_figures(run_data(ReportInput(hostile_result, "x")))["iterations"])
    assert plotly_text(HOSTILE) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert all("<" not in str(trace.get("name", "")) for trace in figure["data"])


def test_page_has_no_external_url_and_a_restrictive_csp(real_result: BenchmarkResult) -> None:
    report = build_report([ReportInput(real_result, "r.json")])
    full_page = render_html(report, plain_js=True)
    assert full_page.count(plotly_js()) == 1  # inlined once
    page = full_page.replace(plotly_js(), "")  # the library's own strings (its docs links) are not ours
    assert "default-src 'none'" in page
    for marker in ('src="http', "src='http", 'href="http', "cdn.plot.ly"):
        assert marker not in page
    assert page.count("<script>") == 2  # plotly.js once, the page script once
    # by default plotly.js is inlined gzipped: exactly the library, a third of the size
    packed = render_html(report)
    blob = packed.split('id="tb-plotly-gz">')[1].split("</script>")[0]
    assert gzip.decompress(base64.b64decode(blob)).decode("utf-8") == plotly_js()
    assert len(packed) < len(full_page) / 2 and packed.count("<script>") == 1


def test_sweep_rows_series_and_pareto(real_result: BenchmarkResult) -> None:
    items = []
    for batch in (1, 2, 4):
        for attention in ("sdpa", "eager"):
            result = relabel(real_result, batch_size=batch, attn_implementation=attention)
            items.append(ReportInput(result, "r"))
    items.append(ReportInput(relabel(items[0].result, seed=1), "repeat"))  # another config
    skipped = dataclasses.replace(
        relabel(real_result, attn_implementation="flash_attention_2"), status="skipped", reason=f"no flash {HOSTILE}",
        iterations=(), summary={},
    )  # fmt: skip
    items.append(ReportInput(skipped, "s"))
    data = sweep_data(items)
    assert "attn_implementation" in data.varying_fields and "batch_size" not in data.varying_fields
    assert {row.status for row in data.rows} == {"ok", "skipped"}
    assert next(r for r in data.rows if r.status == "skipped").reason.startswith("no flash")
    figures = sweep_figures(data)
    lines = figures["throughput_vs_batch"].series
    assert {s.name for s in lines} >= {"attn eager", "attn sdpa"}
    assert all(s.x == tuple(sorted(s.x)) for s in lines)
    assert data.pareto  # at least one config on the front
    page = render_html(build_report(items))
    assert HOSTILE not in page and 'id="configs"' in page


def test_pareto_front_keeps_only_undominated_configs(real_result: BenchmarkResult) -> None:
    base = sweep_data([ReportInput(real_result, "r")]).rows[0]

    def row(key: str, latency: float, throughput: float):  # type: ignore[no-untyped-def]
        medians = {"e2e_latency_ms": latency, "overall_throughput_tok_s": throughput}
        return dataclasses.replace(base, config_hash=key, medians=medians)

    rows = [row("a", 10, 100), row("b", 20, 300), row("c", 15, 90), row("d", 30, 250), row("e", 40, 400)]
    assert pareto_front(rows) == ("a", "b", "e")


def test_repeats_fold_into_one_row_with_between_process_variation(real_result: BenchmarkResult) -> None:
    e2e = real_result.summary["e2e_latency_ms"]
    slower = dataclasses.replace(
        real_result, summary={**real_result.summary, "e2e_latency_ms": dataclasses.replace(e2e, median=e2e.median * 2)}
    )
    data = sweep_data([ReportInput(real_result, "a", repeat_index=0), ReportInput(slower, "b", repeat_index=1)])
    assert len(data.rows) == 1 and data.repeated
    assert data.rows[0].processes == 2 and data.rows[0].between_cv == pytest.approx(0.4714, rel=1e-3)
    assert "repeat_variation" in sweep_figures(data)


def test_fmt_gives_four_significant_digits() -> None:
    assert [fmt(v) for v in (1234.5678, 12.345678, 0.0123456, 3, None, float("nan"))] == [
        "1,235", "12.35", "0.01235", "3", "-", "-"
    ]  # fmt: skip


def test_inputs_file_folder_and_store_read_only(real_result: BenchmarkResult, tmp_path: Path) -> None:
    folder = tmp_path / "results"
    save_result(real_result, folder / "a.json")
    save_result(relabel(real_result, batch_size=2), folder / "b.json")
    assert [i.result.config.batch_size for i in load_inputs([folder])] == [1, 2]
    assert len(load_inputs([folder / "a.json"])) == 1
    db = tmp_path / "store.db"
    with ResultStore(db) as store:
        store.add(real_result, sweep_id="s1")
        store.add(relabel(real_result, batch_size=2), sweep_id="s1")
        store.add(relabel(real_result, batch_size=4), sweep_id="s2")
    before = db.read_bytes()
    assert [i.run_id for i in load_inputs([db], StoreSelector(sweep_id="s1"))] == [1, 2]
    assert [i.run_id for i in load_inputs([db], StoreSelector(run_ids=(3,)))] == [3]
    started = real_result.started_at
    assert len(load_inputs([db], StoreSelector(since=started[:10], until=started[:10]))) == 3
    assert load_inputs([db])[2].sweep_id == "s2"
    with pytest.raises(ReportInputError, match="no stored run"):
        load_inputs([db], StoreSelector(sweep_id="nope"))
    with pytest.raises(ReportInputError, match="pass a store"):
        load_inputs([folder], StoreSelector(sweep_id="s1"))
    with pytest.raises(ReportInputError, match="does not exist"):
        load_inputs([tmp_path / "missing.json"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportInputError, match=r"no result \.json"):
        load_inputs([tmp_path / "empty"])
    assert db.read_bytes() == before  # read commands never write, not even a migration
    # an older store (schema version 0 = no table yet) is not migrated: it is refused
    old = tmp_path / "old.db"
    sqlite3.connect(old).execute("CREATE TABLE other (x)").connection.commit()
    with pytest.raises(Exception, match="not a tokbench results store"):
        load_inputs([old])


def test_cli_report_writes_a_page_and_pngs(
    hostile_result: BenchmarkResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = save_result(hostile_result, tmp_path / "r.json")
    output = tmp_path / "out" / "report.html"
    assert main(["report", str(source), "--output", str(output), "--png", str(tmp_path / "png")]) == 0
    out = capsys.readouterr().out
    assert "report of 1 result(s) written to" in out and output.is_file()
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert {p.name for p in pngs} >= {"run-1-positions.png", "run-1-warmup.png", "run-1-iterations.png"}
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in pngs)
    assert all(HOSTILE not in p.name for p in pngs)
    # an output that is a folder, or a file that is not an HTML page: one line, no traceback, nothing lost
    assert main(["report", str(source), "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tokbench: --output") and "is a folder" in err and "\n" not in err
    before = source.read_bytes()
    assert main(["report", str(source), "--output", str(source)]) == 2
    assert "is an input of this command" in capsys.readouterr().err and source.read_bytes() == before
    assert main(["report", str(source), "--output", str(output)]) == 0  # an earlier report is replaced


def test_cli_report_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    assert main(["report", str(bad), "--output", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tokbench: ") and "not valid JSON" in err and "\n" not in err
    assert not (tmp_path / "r.html").exists()
    assert main(["report", str(tmp_path / "nothing.db"), "--output", str(tmp_path / "r.html")]) == 2
    assert "does not exist" in capsys.readouterr().err
    good = tmp_path / "good.json"
    good.write_text("{}", encoding="utf-8")
    assert main(["report", str(good), "--output", str(tmp_path)]) == 2  # schema_version missing
    assert "schema_version" in capsys.readouterr().err


def test_write_pngs_escape_mathtext(hostile_result: BenchmarkResult, tmp_path: Path) -> None:
    figures = list(run_figures(run_data(ReportInput(hostile_result, "x"))).values())
    assert len(write_pngs(figures, tmp_path)) == len(figures)


def comparison_record(baseline: BenchmarkResult, contender: BenchmarkResult) -> dict[str, object]:
    """A comparison in the JSON shape ``tokbench compare --format json`` writes (ComparisonReport.to_dict),
    with the medians of two real results; the CI and p-values are stand-ins (this test checks display)."""
    metrics = []
    for metric in ("ttft_ms", "e2e_latency_ms"):
        low, high = baseline.summary[metric].median, contender.summary[metric].median
        ratio = high / low
        metrics.append({
            "metric": metric, "unit": "ms", "higher_is_better": False, "baseline_calls": 3, "contender_calls": 3,
            "median": {"statistic": "median", "baseline": low, "contender": high, "ratio": ratio,
                       "ci_low": ratio * 0.9, "ci_high": ratio * 1.1},
            "tails": [], "p_value": 0.2, "p_adjusted": 0.4, "verdict": "inconclusive",
            "verdict_reason": f"CI spans the ±2% band {HOSTILE}", "detectable_change": 0.1, "calls_for_1pct": 900,
        })  # fmt: skip
    workload = {"workload_key": "k", "name": f"{HOSTILE} workload", "device": "cpu", "baseline_runs": ["a"],
                "contender_runs": ["b"], "metrics": metrics, "outputs_changed": False,
                "environment_differences": [], "verdict": "inconclusive"}  # fmt: skip
    return {"baseline_source": "a.json", "contender_source": "b.json", "min_effect": 0.02, "alpha": 0.05,
            "correction": "holm", "resamples": 1000, "seed": 0, "workloads": [workload], "unmatched": [],
            "geometric_means": [], "warnings": [], "schema_version": 1, "regressed": False}  # fmt: skip


def test_comparison_page_from_a_compare_record(real_result: BenchmarkResult, tmp_path: Path) -> None:
    other = relabel(real_result, batch_size=2)
    path = tmp_path / "comparison.json"
    path.write_text(json.dumps(comparison_record(real_result, other)), encoding="utf-8")
    sources = load_sources([path, tmp_path / "comparison.json"])
    assert sources.results == () and len(sources.comparisons) == 2
    comparison = sources.comparisons[0]
    assert [row.metric for row in comparison.rows] == ["ttft_ms", "e2e_latency_ms"]
    assert comparison.rows[1].ratio == other.summary["e2e_latency_ms"].median / real_result.summary[
        "e2e_latency_ms"].median  # fmt: skip
    forest = comparison_figures(comparison)["forest"]
    assert sum(len(s.x) for s in forest.series) == 2 and forest.markers[0].x == 1.0
    page = render_html(build_report([], comparisons=sources.comparisons[:1]))
    assert HOSTILE not in page and 'id="comparison-1-table"' in page
    bad = tmp_path / "bad-comparison.json"
    bad.write_text(json.dumps({"baseline_source": "a", "workloads": [{"metrics": [{}]}]}), encoding="utf-8")
    with pytest.raises(ReportInputError, match="comparison record"):
        load_sources([bad])


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for inner in value.values() for s in _strings(inner)]
    if isinstance(value, list | tuple):
        return [s for inner in value for s in _strings(inner)]
    return []


def test_every_string_of_every_plot_is_escaped(hostile_result: BenchmarkResult, tmp_path: Path) -> None:
    other = relabel(hostile_result, model=f"{HOSTILE}-2", batch_size=2)
    items = [ReportInput(hostile_result, "a"), ReportInput(other, "b")]
    comparison = load_sources_from_record(hostile_result, other, tmp_path)
    report = build_report(items, comparisons=[comparison])
    strings = [s for figure in report.figures() for s in _strings(to_plotly(figure))]
    assert any("&lt;script&gt;" in s for s in strings)  # the hostile names are in the plots...
    assert not any("<script" in s for s in strings)  # ...never as markup


def load_sources_from_record(baseline: BenchmarkResult, contender: BenchmarkResult, folder: Path):  # type: ignore[no-untyped-def]
    path = folder / "comparison.json"
    path.write_text(json.dumps(comparison_record(baseline, contender)), encoding="utf-8")
    return load_sources([path]).comparisons[0]

"""tokbench report pages in a real headless Chromium (Debian's chromium, driven by Playwright).

Checks: every open plot is drawn (plotly's SVG present after the scripts ran), no console error, no
request beyond the file itself, the numbers in the page equal the result JSON's, the plotted values equal
the traces', a hostile model name shows as text and opens no dialog, tables sort, folded run pages draw
when opened. Results come from real tiny-llama runs and a small real inline sweep with a skipped config.
Skips with one message when no browser can be had (``make test`` installs chromium as root).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tokbench import BenchmarkConfig
from tokbench.analysis.metrics import NS_PER_MS
from tokbench.cli import main
from tokbench.report.browser import report_browser, unavailable_reason
from tokbench.report.html import fmt
from tokbench.schema.results import BenchmarkResult, load_result, save_result
from tokbench.sweep.runner import run_sweep

HOSTILE = "<script>alert(1)</script>"
_REASON = unavailable_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=f"browser tests need a headless Chromium: {_REASON}")


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    with report_browser() as opened:
        yield opened


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real sweep (inline: 2 batch sizes × 2 attentions + a skipped flash-attention config) in a store,
    and one run with a hostile model name and notes saved as JSON."""
    folder = tmp_path_factory.mktemp("report-browser")
    sweep = {
        "model": "tiny-llama", "sequence_length": 16, "new_tokens": 8, "warmup_iterations": 2,
        "measurement_iterations": 3, "device": "cpu", "monitor_interval_ms": 20, "batch_size": [1, 2],
        "configs": [{"attn_implementation": ["sdpa", "eager"]}, {"attn_implementation": "flash_attention_2"}],
        "launcher": "inline",
    }  # fmt: skip
    outcome = run_sweep(sweep, db=folder / "store.db", progress=False)
    statuses = sorted(entry.result.status for entry in outcome.entries if entry.result is not None)
    assert statuses.count("ok") == 4 and "skipped" in statuses, statuses
    first = next(e.result for e in outcome.entries if e.result is not None and e.result.ok)
    hostile = dataclasses.replace(
        first, config=first.config.replace(model=HOSTILE, name=f"{HOSTILE} run"), notes=(f"note {HOSTILE}",)
    )
    save_result(hostile, folder / "hostile.json")
    return folder


def _report(tmp: Path, *args: str) -> Path:
    output = tmp / "report.html"
    assert main(["report", *args, "--output", str(output)]) == 0
    return output


def _assert_clean(opened) -> None:  # type: ignore[no-untyped-def]
    assert opened.console_errors == [] and opened.page_errors == []
    assert opened.outside_requests == []
    assert opened.dialogs == []  # nothing ran alert()


def test_single_run_page_renders_and_shows_the_json_numbers(browser, results_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = results_dir / "hostile.json"
    result: BenchmarkResult = load_result(source)
    opened = browser.open(_report(tmp_path, str(source)))
    page = opened.page
    _assert_clean(opened)
    expected_plots = page.evaluate("document.querySelectorAll('script.tb-figure').length")
    assert expected_plots >= 8 and opened.plots_rendered == expected_plots
    assert page.evaluate("document.querySelectorAll('.plot .main-svg').length") >= expected_plots
    # the hostile name is text: in the heading, a table cell, and no <script> element came from it
    assert HOSTILE in page.inner_text("#run-1 > summary")
    assert HOSTILE in page.evaluate("Array.from(document.querySelectorAll('td')).map(td => td.textContent)")
    scripts_with_it = """Array.from(document.scripts)
        .filter(s => !s.classList.contains('tb-figure') && s.textContent.includes('alert(1)')).length"""
    assert page.evaluate(scripts_with_it) == 0  # no executable script carries the hostile text
    # summary medians: displayed and full-precision values equal the JSON's
    data = json.loads(source.read_text(encoding="utf-8"))
    cells = page.evaluate(
        """Array.from(document.querySelectorAll('#run-1-summary tbody tr')).map(tr =>
             [tr.cells[0].textContent, tr.cells[3].textContent, tr.cells[3].dataset.value])"""
    )
    labels = {"TTFT": "ttft_ms", "TPOT": "tpot_ms", "ITL": "itl_ms", "E2E latency": "e2e_latency_ms"}
    checked = 0
    for label, shown, value in cells:
        if label in labels:
            expected = data["summary"][labels[label]]["median"]
            assert float(value) == expected and shown == fmt(expected)
            checked += 1
    assert checked == 4
    # the plotted per-iteration E2E equals the traces'
    plotted = page.evaluate("document.getElementById('plot-run-1-iterations').data[0].y")
    assert plotted == [t.e2e_ns / NS_PER_MS for t in result.iterations]
    rows = page.evaluate(
        "Array.from(document.querySelectorAll('#run-1-iterations tbody tr'))"
        ".map(tr => Number(tr.cells[1].dataset.value))"
    )
    assert rows == plotted
    page.screenshot(path=str(tmp_path / "run.png"), full_page=False)
    assert (tmp_path / "run.png").stat().st_size > 20_000


def test_sweep_page_from_the_store_sorts_and_draws_folded_runs(browser, results_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    opened = browser.open(_report(tmp_path, str(results_dir / "store.db")))
    page = opened.page
    _assert_clean(opened)
    assert page.evaluate("document.querySelectorAll('#sweep .plot .main-svg').length") >= 2
    table = page.evaluate(
        "Array.from(document.querySelectorAll('#configs tbody tr'))"
        ".map(tr => Array.from(tr.cells).map(c => c.textContent))"
    )
    assert len(table) == 6  # 4 ok + 2 skipped flash-attention configs (batch 1, 2)
    headers = page.evaluate("Array.from(document.querySelectorAll('#configs th')).map(th => th.textContent)")
    status, reason = headers.index("status"), headers.index("reason")
    skipped = [row for row in table if row[status] == "skipped"]
    assert len(skipped) == 2 and all("flash" in row[reason] for row in skipped)
    # sort by E2E: ascending numbers, the configs without a number last
    column = headers.index("E2E ms")
    page.click(f"#configs th:nth-child({column + 1})")
    values = page.evaluate(
        f"Array.from(document.querySelectorAll('#configs tbody tr')).map(tr => tr.cells[{column}].dataset.value)"
    )
    numbers = [float(v) for v in values if v is not None]
    assert numbers == sorted(numbers) and values[len(numbers) :] == [None] * (len(values) - len(numbers))
    # run pages start folded; opening one draws its plots
    before = opened.plots_rendered
    page.click("#run-1 > summary")
    browser.wait_for_plots(page)
    assert opened.plots_rendered > before
    assert page.evaluate("document.querySelectorAll('#run-1 .plot .main-svg').length") >= 8
    _assert_clean(opened)


def test_sweep_plots_escape_hostile_names_in_svg(browser, results_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store_results = [results_dir / "hostile.json"]
    second = load_result(store_results[0])
    # another model name: the model becomes a series of the sweep plots, so it is drawn in their legends (a series
    # is drawn when it was run at two batch sizes: each model gets a second one)
    other = dataclasses.replace(second, config=second.config.replace(model=f"{HOSTILE}-2", name=f"{HOSTILE} b2"))
    save_result(other, tmp_path / "in" / "b.json")
    save_result(second, tmp_path / "in" / "a.json")
    for index, result in enumerate((second, other)):
        bigger = result.config.replace(batch_size=result.config.batch_size + 1, name=f"{result.config.name} x")
        save_result(dataclasses.replace(result, config=bigger), tmp_path / "in" / f"c{index}.json")
    opened = browser.open(_report(tmp_path, str(tmp_path / "in")))
    _assert_clean(opened)
    texts = opened.page.evaluate("Array.from(document.querySelectorAll('svg text')).map(t => t.textContent)")
    assert any(f"model {HOSTILE}-2" in text for text in texts)  # drawn as characters in the legend
    assert opened.page.evaluate("document.querySelectorAll('svg script, main script').length") == 0


def test_config_field_change_is_visible(results_dir: Path) -> None:
    # guards the fixture itself: the hostile result really carries the hostile model
    assert load_result(results_dir / "hostile.json").config.model == HOSTILE
    assert BenchmarkConfig(model=HOSTILE).model == HOSTILE


def test_comparison_page_draws_its_forest_plot(browser, results_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from test_report_html import comparison_record

    baseline = load_result(results_dir / "hostile.json")
    contender = dataclasses.replace(baseline, config=baseline.config.replace(batch_size=2))
    record = comparison_record(baseline, contender)
    path = tmp_path / "comparison.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    opened = browser.open(_report(tmp_path, str(path), str(results_dir / "hostile.json")))
    _assert_clean(opened)
    page = opened.page
    assert page.evaluate("document.querySelectorAll('#comparison-1 .js-plotly-plot').length") == 1
    ratios = page.evaluate(
        "Array.from(document.querySelectorAll('#comparison-1-table tbody tr'))"
        ".map(tr => Number(tr.cells[5].dataset.value))"
    )
    assert ratios == [metric["median"]["ratio"] for metric in record["workloads"][0]["metrics"]]
    labels = page.evaluate("Array.from(document.querySelectorAll('#comparison-1 svg text')).map(t => t.textContent)")
    assert any(f"{HOSTILE} workload" in text for text in labels)  # the y-axis label, drawn as characters

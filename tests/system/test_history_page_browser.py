"""`tokbench report STORE --history` in a real headless Chromium: the per-run medians and intervals plotted are the
stored ones, change points are marked with magnitude and commits, the model / metric filters show and draw only
their sections, a hostile model name stays text, and nothing reaches outside the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from history_data import commit_of, write_history_store

from tokbench.cli import main
from tokbench.report.browser import report_browser, unavailable_reason
from tokbench.results.selectors import select_from_store

HOSTILE = "<img src=x onerror=alert(1)>"
_REASON = unavailable_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=f"browser tests need a headless Chromium: {_REASON}")


@pytest.fixture(scope="module")
def history_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("history-page")
    rng = np.random.default_rng(3)
    index = np.arange(24)
    store = write_history_store(folder / "store.db", {
        "model-step": list(1 + 0.005 * rng.normal(size=24) + 0.10 * (index >= 14)),
        HOSTILE: list(1 + 0.005 * rng.normal(size=24)),
    })  # fmt: skip
    output = folder / "history.html"
    assert main(["report", str(store), "--history", "--output", str(output)]) == 0
    return store, output


def test_history_page_draws_the_stored_medians_and_marks_the_change(history_report: tuple[Path, Path]) -> None:
    store, output = history_report
    with report_browser() as browser:
        opened = browser.open(output)
        page = opened.page
        assert opened.console_errors == [] and opened.page_errors == [] and opened.dialogs == []
        assert opened.outside_requests == []
        # the metric filter starts at E2E: one drawn figure per workload, the other metrics hidden and not drawn
        assert page.evaluate("document.querySelector('select[data-tb-filter=metric]').value") == "e2e_latency_ms"
        visible = page.evaluate("Array.from(document.querySelectorAll('#history section')).filter(s => !s.hidden)"
                                ".map(s => JSON.parse(s.dataset.tbTags))")  # fmt: skip
        assert sorted(tag["model"] for tag in visible) == sorted(["model-step", HOSTILE])
        assert {tag["metric"] for tag in visible} == {"e2e_latency_ms"}
        assert opened.plots_rendered == 2
        # plotted medians and intervals are the stored ones, oldest first
        runs = [run for run in select_from_store(store, {"model": "model-step"})]
        runs.sort(key=lambda run: run.result.started_at)
        section = page.evaluate(
            "Array.from(document.querySelectorAll('#history section'))"
            ".findIndex(s => !s.hidden && JSON.parse(s.dataset.tbTags).model === 'model-step')"
        )
        target = page.evaluate(f"document.querySelectorAll('#history section')[{section}].querySelector('.plot').id")
        traces = page.evaluate(f"document.getElementById('{target}').data.map(t => [t.name, t.y])")
        by_name = {name: y for name, y in traces}
        assert by_name["per-run median"] == [run.result.summary["e2e_latency_ms"].median for run in runs]
        lows = [run.result.summary["e2e_latency_ms"].median_ci[0] for run in runs]  # type: ignore[index]
        assert lows in [y for name, y in traces if "interval" in name]
        # the change is marked at run 15 (index 14) with its magnitude and the commits to bisect
        labels = page.evaluate(f"document.getElementById('{target}').layout.annotations.map(a => a.text)")
        assert any(f"slower, bisect {commit_of(13)}..{commit_of(14)}" in label for label in labels)
        shapes = page.evaluate(f"document.getElementById('{target}').layout.shapes.map(s => s.x0)")
        assert 14.5 in shapes
        # filter by model and by metric: only matching sections show, and newly shown ones get drawn
        page.select_option("select[data-tb-filter=model]", "model-step")
        page.select_option("select[data-tb-filter=metric]", "")
        browser.wait_for_plots(page)
        shown = page.evaluate("Array.from(document.querySelectorAll('#history section')).filter(s => !s.hidden)"
                              ".map(s => JSON.parse(s.dataset.tbTags))")  # fmt: skip
        assert len(shown) == 7 and {tag["model"] for tag in shown} == {"model-step"}
        assert opened.plots_rendered == 8  # the first two plus six more metrics of model-step
        # the hostile model name is text in the headings and the plot titles, never markup
        assert page.evaluate("document.querySelectorAll('main img').length") == 0
        page.select_option("select[data-tb-filter=model]", HOSTILE)
        page.select_option("select[data-tb-filter=metric]", "e2e_latency_ms")
        browser.wait_for_plots(page)
        headings = page.evaluate("Array.from(document.querySelectorAll('#history section h3')).map(h => h.textContent)")
        assert any(HOSTILE in heading for heading in headings)
        titles = page.evaluate("Array.from(document.querySelectorAll('#history svg text')).map(t => t.textContent)")
        assert any(HOSTILE in title for title in titles)
        assert opened.dialogs == [] and opened.console_errors == [] and opened.page_errors == []

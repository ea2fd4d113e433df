"""How big the HTML report is and how fast it is built and drawn, for one run and for a 100-config sweep.

The results are real: a small real sweep of tiny-llama (inline, 2 warmup + 3 measured iterations) is run
into a temporary store, unless ``--db`` names a store of a sweep already run. The 100-config sweep is
SYNTHESIZED from those real results: each copy is re-labelled with distinct config fields (batch size,
attention, dtype, seed), so every config hash differs while every number is a real measurement. Build time
is tokbench's (read + extract + render + write); draw time is headless Chromium's, from navigation until
every open plot is drawn (needs the test extra and Debian's chromium).

    python benchmarks/report_render.py [--db STORE] [--configs 100] [--screenshot FILE.png]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import tempfile
import time
from pathlib import Path

from tokbench.fileio import atomic_write_text
from tokbench.report.browser import report_browser, unavailable_reason
from tokbench.report.data import ReportInput, StoreSelector, load_inputs
from tokbench.report.html import build_report, render_html


def real_results(db: Path | None, workdir: Path) -> list[ReportInput]:
    if db is None:
        from tokbench.sweep.runner import run_sweep

        db = workdir / "store.db"
        sweep = {
            "model": "tiny-llama", "sequence_length": 32, "new_tokens": 32, "warmup_iterations": 2,
            "measurement_iterations": 3, "device": "cpu", "batch_size": [1, 2, 4],
            "attn_implementation": ["sdpa", "eager"], "launcher": "inline",
        }  # fmt: skip
        run_sweep(sweep, db=db, progress=False)
    return load_inputs([db], StoreSelector())


def synthesize(items: list[ReportInput], count: int) -> list[ReportInput]:
    """``count`` results with distinct configs, each a real result re-labelled (numbers unchanged)."""
    ok = [item for item in items if item.result.ok]
    labels = itertools.product((1, 2, 4, 8, 16, 32, 64), ("sdpa", "eager"), ("bfloat16", "float32"), range(1000))
    synthesized = []
    for index, (item, (batch, attention, dtype, seed)) in enumerate(zip(itertools.cycle(ok), labels, strict=False)):
        if index >= count:
            break
        config = item.result.config.replace(batch_size=batch, attn_implementation=attention, dtype=dtype, seed=seed)
        synthesized.append(ReportInput(dataclasses.replace(item.result, config=config), f"synthetic {index}",
                                       run_id=index + 1, sweep_id="synthetic"))  # fmt: skip
    return synthesized


def measure(  # type: ignore[no-untyped-def]
    name: str, items: list[ReportInput], output: Path, browser, screenshot: Path | None, plain_js: bool = False
) -> None:
    started = time.perf_counter()
    report = build_report(items)
    text = render_html(report, plain_js=plain_js)
    atomic_write_text(output, text)
    build_s = time.perf_counter() - started
    plots = len(report.figures())
    size = output.stat().st_size
    line = (f"{name}: {len(items)} results, {plots} plots ({sum(p.open for p in report.pages)} pages open), "
            f"page {size / 2**20:.2f} MiB, built in {build_s:.2f} s")  # fmt: skip
    if browser is not None:
        opened = browser.open(output)
        last = opened.last_draw_ms
        line += (
            f", headless Chromium: last plot drawn {last / 1000 if last else float('nan'):.2f} s after navigation, "
            f"{opened.load_s:.2f} s as seen by the driver ({opened.plots_rendered} plots drawn, "
            f"{len(opened.console_errors)} console errors, {len(opened.outside_requests)} outside requests)"
        )
        if screenshot is not None:
            opened.page.screenshot(path=str(screenshot), full_page=False)
            line += f"; screenshot {screenshot}"
        opened.page.close()
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, help="a store of a real sweep (default: run a small one now)")
    parser.add_argument("--configs", type=int, default=100, help="configs of the synthesized sweep (default 100)")
    parser.add_argument("--screenshot", type=Path, help="save a screenshot of the real sweep's page here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tokbench-report-bench-") as temp:
        workdir = Path(temp)
        items = real_results(args.db, workdir)
        print(f"real results: {len(items)} ({sum(i.result.ok for i in items)} ok) from "
              f"{args.db or 'a small sweep run now'}", flush=True)  # fmt: skip
        reason = unavailable_reason()
        if reason is not None:
            print(f"no browser: {reason}; build figures only")
        browser_context = report_browser() if reason is None else None
        browser = browser_context.__enter__() if browser_context is not None else None
        try:
            first_ok = next(i for i in items if i.result.ok)
            measure("one run", [first_ok], workdir / "one.html", browser, None)
            measure("one run (plotly.js as is)", [first_ok], workdir / "one-plain.html", browser, None, plain_js=True)
            measure("real sweep", items, workdir / "sweep.html", browser, args.screenshot)
            synthetic = synthesize(items, args.configs)
            for plain_js in (False, True):
                label = "plotly.js as is" if plain_js else "plotly.js gzipped"
                measure(f"{len(synthetic)}-config sweep (synthesized from real results; {label})", synthetic,
                        workdir / "synthetic.html", browser, None, plain_js=plain_js)  # fmt: skip
        finally:
            if browser_context is not None:
                browser_context.__exit__(None, None, None)


if __name__ == "__main__":
    main()

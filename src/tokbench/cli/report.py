"""``tokbench report INPUT... --output report.html [--png DIR]``: the command line of the HTML report.

The command reads its inputs only (a store is opened read-only) and writes the page
(and PNGs) where it is told.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from tokbench.cli import options
from tokbench.cli.common import EXIT_OK, usage_error
from tokbench.errors import StoreError
from tokbench.report.data import ReportError, StoreSelector
from tokbench.text import terminal_safe

DEFAULT_OUTPUT = Path("tokbench-report.html")

def add_report_parser(commands: Any) -> None:
    from tokbench.report.html import DEFAULT_RUN_PAGES

    report = commands.add_parser(
        "report",
        help="write one self-contained HTML page (plots + tables) of results, a folder, or a store",
        description=(
            "Make one HTML file that works offline (plotly.js inlined, no network): per-token latency by "
            "position, TTFT / ITL / E2E distributions, the warmup curve, the measured iterations, monitoring, "
            "memory and MBU / MFU for each run; for several configs, throughput vs batch size, the "
            "latency–throughput Pareto front and a sortable table of every config. INPUT is a result JSON, a "
            "folder of them, or a results store (.db) with an optional selector."
        ),
    )
    add = report.add_argument
    add("inputs", nargs="+", metavar="INPUT", help="result .json, folder of results, or store .db")
    add("--output", "-o", default=str(DEFAULT_OUTPUT), metavar="FILE.html", help=f"default: {DEFAULT_OUTPUT}")
    add("--png", metavar="DIR", help="also write the plots as PNG files into DIR (needs the png extra: matplotlib)")
    add("--sweep", dest="sweep_id", metavar="SWEEP_ID", help="store: only this sweep's runs")
    add("--run", dest="run_ids", type=options.integer(1, 2**63 - 1), action="append", metavar="RUN_ID",
        help="store: only this run (repeatable)")  # fmt: skip
    add("--since", metavar="TIME", help="store: runs started at or after TIME (ISO 8601, e.g. 2026-11-27T08:00 or "
        "'2026-11-27 08:00+02:00'; UTC unless an offset is given)")  # fmt: skip
    add("--until", metavar="TIME", help="store: runs started at or before TIME (a date alone covers that day)")
    add("--force", action="store_true", help="let --output replace an existing file that is not an earlier report")
    add(
        "--plain-js",
        action="store_true",
        help="inline plotly.js as is (4.6 MiB) instead of gzipped (1.4 MiB, unpacked by browsers from 2023 on)",
    )
    add(
        "--history",
        action="store_true",
        help="instead of run pages: per workload and metric, the per-run medians over time with their intervals "
        "and the change points (as `tokbench regressions --metric all`), filterable by model and metric",
    )
    add(
        "--run-pages",
        type=options.integer(0, 100_000),
        default=DEFAULT_RUN_PAGES,
        metavar="N",
        help=f"at most N runs get a page of their own with every plot (default: {DEFAULT_RUN_PAGES})",
    )
    report.set_defaults(handler=command_report)


def command_report(args: argparse.Namespace) -> int:
    from tokbench.report.data import load_sources
    from tokbench.report.html import write_report
    from tokbench.results.selectors import SelectorError, parse_time_range

    selector = StoreSelector(
        sweep_id=args.sweep_id, run_ids=tuple(args.run_ids or ()), since=args.since, until=args.until
    )
    try:
        for option, text in (("--since", args.since), ("--until", args.until)):
            if text is not None:
                parse_time_range(text, option)  # refused before any input is read
    except SelectorError as error:
        return usage_error(error)
    started = time.perf_counter()
    try:
        sources = load_sources(args.inputs, selector)
        items = sources.results
        if getattr(args, "history", False):
            from tokbench.report.history_page import write_history_report

            path = write_history_report(
                items, args.output, plain_js=args.plain_js, inputs=sources.inputs, force=args.force
            )
            pngs = []
        else:
            path, pngs = write_report(
                items,
                args.output,
                png_dir=args.png,
                run_pages=args.run_pages,
                comparisons=sources.comparisons,
                plain_js=args.plain_js,
                inputs=sources.inputs,
                force=args.force,
            )
    except (ReportError, StoreError) as error:  # PngWriteError too: it says the page was written
        return usage_error(error)
    except OSError as error:  # the output (or --png folder) cannot be written: a path problem, not a crash
        where = args.output + (f" and PNGs into {args.png}" if args.png else "")
        return usage_error(f"cannot write {where}: {error.strerror}; pass another --output / --png")
    elapsed = time.perf_counter() - started
    size = path.stat().st_size
    what = f"{len(items)} result(s)" + (f" and {len(sources.comparisons)} comparison(s)" if sources.comparisons else "")
    print(terminal_safe(f"report of {what} written to {path} ({size / 2**20:.2f} MiB, {elapsed:.2f} s)"))
    if sources.skipped:
        shown = ", ".join(sources.skipped[:3]) + (" ..." if len(sources.skipped) > 3 else "")
        print(terminal_safe(f"note: skipped {len(sources.skipped)} .json file(s) that are not tokbench results "
                            f"({shown})", newlines=False))  # fmt: skip
    if pngs:
        print(terminal_safe(f"{len(pngs)} PNG file(s) written to {args.png}"))
    return EXIT_OK

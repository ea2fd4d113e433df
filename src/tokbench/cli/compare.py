"""``tokbench compare`` and ``tokbench regressions`` (also ``history --changes``); ``sweep --baseline``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tokbench.analysis.compare import DEFAULT_ALPHA, DEFAULT_MIN_EFFECT
from tokbench.cli import options
from tokbench.cli.common import EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, usage_error
from tokbench.errors import TokbenchError

SELECTOR_HELP = (
    "a result JSON, a folder of results, a store (FILE.db: the newest run of each workload), or a store and a "
    "selector FILE.db:KEY=VALUE[,KEY=VALUE] (or KEY=VALUE[,...] with --db) with keys sweep=ID, run=N or N-M, "
    "commit=PREFIX, name=LABEL, model=M, since=ISO, until=ISO, latest"
)


def add_compare_commands(commands: Any, db_default: str) -> None:
    compare = commands.add_parser(
        "compare",
        help="compare two sets of results workload by workload: faster / slower / no change, with CIs",
        description=(
            "Match BASELINE and CONTENDER results by workload key; each result is one process and gives one value "
            "per metric (log of its median over its calls). For every metric: contender ÷ baseline with a t "
            "interval on those values (Welch; paired for the pairs of one `tokbench ab`), a p-value Holm-corrected "
            "over every hypothesis, and a verdict that needs significance and a change beyond --min-effect. A side "
            "of one process gets no verdict unless the store (--db, or the side's store) holds repeats of the "
            "workload on this machine (`sweep --repeat K`, `ab`) that give its between-process variance. "
            f"Exit codes: {EXIT_OK} nothing regressed, {EXIT_REGRESSION} a workload is "
            f"significantly slower (with --fail-on regression), {EXIT_USAGE} usage error or meaningless comparison."
        ),
    )
    _add_compare_arguments(compare, db_default)

    regressions = commands.add_parser(
        "regressions",
        help="change points in the stored history of each workload (E-divisive means, permutation test)",
        description=(
            "For each workload in the store, order its ok runs by start time, find change points in the series "
            "of per-run medians (E-divisive means with a permutation significance test, as Apache Otava / "
            "MongoDB) and print each change with its magnitude, the commits around it and its p-value."
        ),
    )
    add_regressions_arguments(regressions, db_default)
    compare.set_defaults(handler=command_compare)
    regressions.set_defaults(handler=command_regressions)


def _add_compare_arguments(compare: argparse.ArgumentParser, db_default: str) -> None:
    compare.add_argument("baseline", metavar="BASELINE", help=SELECTOR_HELP)
    compare.add_argument("contender", metavar="CONTENDER", help="same forms as BASELINE")
    compare.add_argument("--db", default=None, help=f"store for KEY=VALUE selectors (e.g. {db_default})")
    compare.add_argument("--format", choices=("terminal", "markdown", "json"), default="terminal")
    compare.add_argument(
        "--min-effect",
        type=options.number(0, 1),
        default=DEFAULT_MIN_EFFECT,
        metavar="F",
        help="smallest change that counts, as a fraction (default 0.02 = 2%%)",
    )
    compare.add_argument(
        "--alpha", type=options.number(0, 1, exclusive=True), default=DEFAULT_ALPHA,
        help="family-wise significance level (0.05)",
    )  # fmt: skip
    compare.add_argument(
        "--power-target", type=options.number(0.001, 10), metavar="F",
        help="the change 'processes for X' is computed for (default: 2 × --min-effect)",
    )  # fmt: skip
    # Accepted so older scripts still run: the intervals are t intervals now, nothing is resampled.
    compare.add_argument("--resamples", type=options.integer(1), help=argparse.SUPPRESS)
    compare.add_argument("--seed", type=options.integer(0), help=argparse.SUPPRESS)
    compare.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="FIELD",
        help="match runs that differ in this config field (e.g. dtype, attn_implementation, compile_mode); "
        "repeatable; shape, model and device are never ignored",
    )
    compare.add_argument(
        "--fail-on",
        choices=("never", "regression"),
        default="never",
        help=f"regression: exit {EXIT_REGRESSION} when any workload is significantly slower (the CI gate)",
    )
    compare.add_argument(
        "--output", metavar="FILE", help="also write the report to FILE (in --format; Markdown for terminal)"
    )


def add_regressions_arguments(parser: argparse.ArgumentParser, db_default: str) -> None:
    from tokbench.analysis.metrics import METRIC_UNITS

    parser.add_argument("--db", default=db_default, help="results store")
    parser.add_argument("--metric", choices=tuple(METRIC_UNITS), default=None, help="metric (default e2e_latency_ms)")
    parser.add_argument("--select", metavar="SELECTOR", help="only runs this selector picks (e.g. model=tiny-llama)")
    parser.add_argument("--significance", type=float, default=None, help="permutation p-value cut-off (0.01)")
    parser.add_argument("--permutations", type=int, default=None, help="permutations per test (199)")
    parser.add_argument("--min-size", type=int, default=None, help="runs at least on each side of a change (3)")
    parser.add_argument("--format", dest="changes_format", choices=("terminal", "json"), default=None)


def command_compare(args: argparse.Namespace) -> int:
    from tokbench.results.comparison import compare
    from tokbench.results.repeats import stored_repeats
    from tokbench.results.selectors import select

    try:
        baseline = select(args.baseline, args.db)
        contender = select(args.contender, args.db)
        report = compare(
            baseline,
            contender,
            baseline_source=args.baseline,
            contender_source=args.contender,
            min_effect=args.min_effect,
            alpha=args.alpha,
            ignore=args.ignore,
            stored=stored_repeats(args.db, args.baseline, args.contender),
            power_target=args.power_target,
        )
    except TokbenchError as error:
        return usage_error(str(error))
    emit_report(report, args.format, args.output)
    if args.fail_on == "regression" and report.regressed:
        print("tokbench: regression: a workload is significantly slower beyond --min-effect", file=sys.stderr)
        return EXIT_REGRESSION
    return EXIT_OK


def emit_report(report: Any, output_format: str, output: str | None) -> None:
    """A comparison on stdout in ``output_format`` (terminal, markdown, json), and in ``output`` if given (in
    that format; Markdown for terminal): ``compare`` and ``ab`` print the same way."""
    from tokbench.report.compare_view import render_json, render_markdown, render_terminal
    from tokbench.report.terminal import make_console

    text = None
    if output_format == "json":
        text = render_json(report)
        sys.stdout.write(text)
    elif output_format == "markdown":
        text = render_markdown(report)
        sys.stdout.write(text)
    else:
        make_console().print(render_terminal(report), highlight=False)
    if output:
        from tokbench.fileio import atomic_write_text

        atomic_write_text(output, text if text is not None else render_markdown(report))


def print_sweep_comparison(baseline_spec: str, db: str, sweep_id: str) -> int:
    """``sweep --baseline``: compare the sweep just run with the baseline selection; 0, or 2 if refused."""
    from tokbench.report.compare_view import render_terminal
    from tokbench.report.terminal import make_console
    from tokbench.results.comparison import compare
    from tokbench.results.repeats import stored_repeats
    from tokbench.results.selectors import select, select_from_store

    try:
        report = compare(
            select(baseline_spec, db),
            select_from_store(Path(db), {"sweep": sweep_id}),  # the store's own name may lack a .db suffix
            baseline_source=baseline_spec,
            contender_source=f"this sweep ({sweep_id})",
            stored=stored_repeats(db, baseline_spec),
        )
    except TokbenchError as error:
        return usage_error(f"comparison with --baseline: {error}")
    make_console().print(render_terminal(report), highlight=False)
    return EXIT_OK


def command_regressions(args: argparse.Namespace) -> int:
    from tokbench.analysis.changepoints import (
        DEFAULT_MIN_SIZE,
        DEFAULT_PERMUTATIONS,
        DEFAULT_SIGNIFICANCE,
    )
    from tokbench.report.compare_view import history_changes_table
    from tokbench.report.terminal import make_console
    from tokbench.results.history import find_history_changes
    from tokbench.results.selectors import parse_selector, select_from_store

    metric = getattr(args, "metric", None) or "e2e_latency_ms"
    try:
        selector = {"model": args.model} if getattr(args, "model", None) else {}
        if getattr(args, "select", None):
            selector.update(parse_selector(args.select))
        runs = select_from_store(Path(args.db), selector)
        report = find_history_changes(
            runs,
            metric,
            min_size=getattr(args, "min_size", None) or DEFAULT_MIN_SIZE,
            permutations=getattr(args, "permutations", None) or DEFAULT_PERMUTATIONS,
            significance=getattr(args, "significance", None) or DEFAULT_SIGNIFICANCE,
        )
    except (TokbenchError, ValueError) as error:
        return usage_error(str(error))
    if getattr(args, "changes_format", None) == "json":
        sys.stdout.write(json.dumps(report.to_dict(), indent=1, allow_nan=False) + "\n")
    else:
        console = make_console()
        for renderable in history_changes_table(report):
            console.print(renderable, highlight=False)
    return EXIT_OK

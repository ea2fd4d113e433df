"""``tokbench compare``; ``sweep --baseline`` (``tokbench regressions`` is ``cli.regressions``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tokbench.analysis.thresholds import DEFAULT_ALPHA, DEFAULT_MIN_EFFECT
from tokbench.cli import options
from tokbench.cli.common import EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, emit_rendered, usage_error
from tokbench.errors import TokbenchError
from tokbench.results.outputs import OutputLocationError

MAX_RESAMPLES = 100_000  # beyond it the bootstrap's draws outgrow memory (resamples × calls integers)
MAX_SEED = 2**32 - 1  # numpy's seed range as the option is documented

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
    compare.set_defaults(handler=command_compare)


def _add_compare_arguments(compare: argparse.ArgumentParser, db_default: str) -> None:
    compare.add_argument("baseline", metavar="BASELINE", help=SELECTOR_HELP)
    compare.add_argument("contender", metavar="CONTENDER", help="same forms as BASELINE")
    compare.add_argument("--db", default=None, help=f"store for KEY=VALUE selectors (e.g. {db_default})")
    compare.add_argument("--format", choices=("terminal", "markdown", "json"), default="terminal")
    compare.add_argument(
        "--min-effect",
        type=options.number(0, 0.99),
        default=DEFAULT_MIN_EFFECT,
        metavar="F",
        help="smallest change that counts, as a fraction (default 0.02 = 2%%)",
    )
    compare.add_argument(
        "--alpha", type=options.number(0, 0.5, exclusive=True), default=DEFAULT_ALPHA,
        help="family-wise significance level (0.05)",
    )  # fmt: skip
    compare.add_argument(
        "--power-target", type=options.number(0.001, 10), metavar="F",
        help="the change 'processes for X' is computed for (default: 2 × --min-effect)",
    )  # fmt: skip
    # Accepted so older scripts still run: the intervals are t intervals now, nothing is resampled.
    compare.add_argument("--resamples", type=options.integer(1, MAX_RESAMPLES), help=argparse.SUPPRESS)
    compare.add_argument("--seed", type=options.integer(0, MAX_SEED), help=argparse.SUPPRESS)
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
    compare.add_argument("--force", action="store_true", help="let --output replace an existing plain file")



def command_compare(args: argparse.Namespace) -> int:
    from tokbench.results.comparison import compare
    from tokbench.results.repeats import stored_repeats
    from tokbench.results.selectors import select

    try:
        baseline = select(args.baseline, args.db)
        contender = select(args.contender, args.db)
        output = _check_output(args, [*baseline, *contender])
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
    try:
        emit_report(report, args.format, output)
    except OutputLocationError as error:
        return usage_error(error)
    if args.fail_on == "regression" and report.regressed:
        print("tokbench: regression: a workload is significantly slower beyond --min-effect", file=sys.stderr)
        return EXIT_REGRESSION
    return EXIT_OK


def _check_output(args: argparse.Namespace, runs: list[Any]) -> Path | None:
    """``--output`` under the one output rule: never an input of this comparison, a store or a special file."""
    from tokbench.results.outputs import check_output_file

    if not args.output:
        return None
    return check_output_file(args.output, inputs={run.path for run in runs if run.path}, force=args.force)


def emit_report(report: Any, output_format: str, output: Path | None) -> None:
    """A comparison on stdout and in ``output`` (``cli.common.emit_rendered``); ``compare`` and ``ab`` share it."""
    from tokbench.report.compare_view import render_json, render_markdown, render_terminal
    from tokbench.report.terminal import make_console

    emit_rendered(
        output_format,
        output,
        json_text=lambda: render_json(report),
        markdown_text=lambda: render_markdown(report),
        draw_terminal=lambda: make_console().print(render_terminal(report), highlight=False),
    )


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

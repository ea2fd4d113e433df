"""``tokbench compare``; ``sweep --baseline`` (``tokbench regressions`` is ``cli.regressions``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tokbench.analysis.compare import DEFAULT_ALPHA, DEFAULT_MIN_EFFECT, DEFAULT_RESAMPLES
from tokbench.cli import options
from tokbench.cli.common import EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, usage_error
from tokbench.errors import TokbenchError

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
            "Match BASELINE and CONTENDER results by workload key and, for every metric, report contender ÷ "
            "baseline of the median (and p90 / p99) with a 95% bootstrap CI over whole calls, a Mann-Whitney U "
            "p-value (Holm-corrected over all tests) and a verdict that needs significance and a change beyond "
            f"--min-effect. Exit codes: {EXIT_OK} nothing regressed, {EXIT_REGRESSION} a workload is "
            f"significantly slower (with --fail-on regression), {EXIT_USAGE} usage error or meaningless comparison."
        ),
    )
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
        "--alpha",
        type=options.number(0, 0.5, exclusive=True),
        default=DEFAULT_ALPHA,
        help="family-wise significance level (0.05)",
    )
    compare.add_argument(
        "--resamples", type=options.integer(100, MAX_RESAMPLES), default=DEFAULT_RESAMPLES,
        help=f"bootstrap resamples (2000; 100 to {MAX_RESAMPLES:,})",
    )  # fmt: skip
    compare.add_argument(
        "--seed", type=options.integer(0, MAX_SEED), default=0, help="bootstrap seed (0): same inputs, same intervals"
    )
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

    compare.set_defaults(handler=command_compare)


def command_compare(args: argparse.Namespace) -> int:
    from tokbench.report.compare_view import render_json, render_markdown, render_terminal
    from tokbench.report.terminal import make_console
    from tokbench.results.comparison import compare
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
            resamples=args.resamples,
            seed=args.seed,
            ignore=args.ignore,
        )
    except TokbenchError as error:
        return usage_error(str(error))
    if args.format == "json":
        text = render_json(report)
        sys.stdout.write(text)
    elif args.format == "markdown":
        text = render_markdown(report)
        sys.stdout.write(text)
    else:
        console = make_console()
        console.print(render_terminal(report), highlight=False)
        text = None
    if output is not None:
        from tokbench.results.outputs import OutputLocationError, write_output_text

        try:
            write_output_text(output, text if text is not None else render_markdown(report))
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


def print_sweep_comparison(baseline_spec: str, db: str, sweep_id: str) -> int:
    """``sweep --baseline``: compare the sweep just run with the baseline selection; 0, or 2 if refused."""
    from tokbench.report.compare_view import render_terminal
    from tokbench.report.terminal import make_console
    from tokbench.results.comparison import compare
    from tokbench.results.selectors import select, select_from_store

    try:
        report = compare(
            select(baseline_spec, db),
            select_from_store(Path(db), {"sweep": sweep_id}),  # the store's own name may lack a .db suffix
            baseline_source=baseline_spec,
            contender_source=f"this sweep ({sweep_id})",
        )
    except TokbenchError as error:
        return usage_error(f"comparison with --baseline: {error}")
    make_console().print(render_terminal(report), highlight=False)
    return EXIT_OK

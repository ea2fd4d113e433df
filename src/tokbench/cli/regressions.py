"""``tokbench regressions`` (also ``tokbench history --changes``): change points in each workload's stored history."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tokbench.cli import options
from tokbench.cli.common import EXIT_OK, EXIT_REGRESSION, emit_rendered, usage_error
from tokbench.errors import TokbenchError
from tokbench.text import terminal_safe

METRIC_ALL = "all"


def add_regressions_parser(commands: Any, db_default: str) -> None:
    regressions = commands.add_parser(
        "regressions",
        help="change points in the stored history of each workload (E-divisive means, permutation test)",
        description=(
            "For each workload in the store, order its ok runs by start time, find change points in the series "
            "of per-run medians (E-divisive means over both ends of a changed segment, so a regression that was "
            "later fixed is found too; a permutation test with exact ties; prewhitening when runs drift together) "
            "and print each change with its magnitude, the runs and commits to bisect and its p-value. The "
            "significance is family-wise over every series analysed (Bonferroni). Exit codes: "
            f"{EXIT_OK} done, {EXIT_REGRESSION} the newest level of some series is slower (with --fail-on "
            "regression), 2 usage error or settings that could never find a change."
        ),
    )
    add_regressions_arguments(regressions, db_default)
    regressions.set_defaults(handler=command_regressions)


def add_regressions_arguments(parser: Any, db_default: str | None) -> list[argparse.Action]:
    """The flags of a change-point search on ``parser`` (a parser or an argument group): ``regressions``'s, and
    ``history --changes``'s (which has its own ``--db``: ``db_default`` None). Returns the search's own flags
    (not ``--db``), so ``history`` can tell when one is given without ``--changes``."""
    from tokbench.analysis.metrics import METRIC_UNITS

    if db_default is not None:
        parser.add_argument("--db", default=db_default, help="results store")
    actions: list[argparse.Action] = []

    def add(*flags: str, **settings: Any) -> None:
        actions.append(parser.add_argument(*flags, **settings))

    add("--metric", action="append", choices=(*METRIC_UNITS, METRIC_ALL), default=None,
        help="metric whose per-run median is searched (repeatable; 'all': every metric the store holds a median "
        "for; default e2e_latency_ms)")  # fmt: skip
    add("--select", metavar="SELECTOR", help="only runs this selector picks (e.g. model=tiny-llama)")
    add("--significance", type=options.number(0, 1, exclusive=True), default=None, metavar="A",
        help="chance of any false alarm over every series analysed (default 0.01)")  # fmt: skip
    add("--permutations", type=options.integer(1, 10_000_000), default=None, metavar="P",
        help="permutations per test at most (default: 5 / the per-series level, at least 199)")  # fmt: skip
    add("--min-size", type=options.integer(2, 1000), default=None, metavar="N",
        help="runs at least on each side of a change (3; 2 at the newest end)")  # fmt: skip
    add("--seed", type=options.integer(0), default=0, help="permutation seed (0): same store, same answer")
    add("--format", dest="changes_format", choices=("terminal", "markdown", "json"), default=None)
    add("--output", metavar="FILE", help="also write the report to FILE (in --format; Markdown for terminal)")
    add("--force", action="store_true", help="let --output replace an existing plain file")
    add("--fail-on", choices=("never", "regression"), default="never",
        help=f"regression: exit {EXIT_REGRESSION} when the newest level of some series is slower than the one "
        "before it (the CI gate)")  # fmt: skip
    return actions


def search_flags_given(args: argparse.Namespace, actions: list[argparse.Action]) -> list[str]:
    """Which of the search's flags (``actions``) this command line set, as typed (``--min-size``)."""
    return [action.option_strings[0] for action in actions if getattr(args, action.dest) != action.default]


def _metrics(args: argparse.Namespace, runs: list[Any]) -> tuple[str, ...]:
    from tokbench.results.history import DEFAULT_METRIC, metrics_held

    chosen = getattr(args, "metric", None) or [DEFAULT_METRIC]
    if isinstance(chosen, str):
        chosen = [chosen]
    if METRIC_ALL in chosen:
        return metrics_held(runs) or (DEFAULT_METRIC,)
    return tuple(dict.fromkeys(chosen))


def command_regressions(args: argparse.Namespace) -> int:
    from tokbench.analysis.changepoints import DEFAULT_MIN_SIZE, DEFAULT_SIGNIFICANCE
    from tokbench.results.history import find_history_changes
    from tokbench.results.outputs import OutputLocationError, check_output_file
    from tokbench.results.selectors import parse_selector, select_from_store

    try:
        output = None  # checked before the work, under the one output rule (never the store, a folder, a device)
        if getattr(args, "output", None):
            output = check_output_file(args.output, inputs=[args.db], force=getattr(args, "force", False))
        selector = {"model": args.model} if getattr(args, "model", None) else {}
        if getattr(args, "select", None):
            selector.update(parse_selector(args.select))
        unreadable: list[str] = []  # one damaged run must not hide every other workload's history
        runs = select_from_store(Path(args.db), selector, skipped=unreadable)
        significance = getattr(args, "significance", None)
        min_size = getattr(args, "min_size", None)
        report = find_history_changes(
            runs,
            _metrics(args, runs),
            min_size=DEFAULT_MIN_SIZE if min_size is None else min_size,
            permutations=getattr(args, "permutations", None),
            significance=DEFAULT_SIGNIFICANCE if significance is None else significance,
            seed=getattr(args, "seed", 0),
        )
    except (TokbenchError, ValueError) as error:
        return usage_error(str(error))
    for line in unreadable:
        print(f"tokbench: {terminal_safe(line, newlines=False)}", file=sys.stderr)
    try:
        _print(report, getattr(args, "changes_format", None) or "terminal", output)
    except OutputLocationError as error:
        return usage_error(error)
    if getattr(args, "fail_on", "never") == "regression" and newest_level_slower(report):
        print("tokbench: regression: the newest level of a series is slower than the one before it", file=sys.stderr)
        return EXIT_REGRESSION
    return EXIT_OK


def newest_level_slower(report: Any) -> bool:
    """Is the last change of some series (the level its newest runs are at) a slowdown?"""
    return any(workload.changes and workload.changes[-1].direction == "slower" for workload in report.workloads)


def _print(report: Any, form: str, output: Path | None) -> None:
    from tokbench.report.history_view import history_changes_table, render_json, render_markdown
    from tokbench.report.terminal import make_console

    def draw_terminal() -> None:
        console = make_console()
        for renderable in history_changes_table(report):
            console.print(renderable, highlight=False)

    emit_rendered(
        form,
        output,
        json_text=lambda: render_json(report),
        markdown_text=lambda: render_markdown(report),
        draw_terminal=draw_terminal,
    )

"""``tokbench history``, ``show`` and ``export``: the stored runs, read only; ``recover``: the one writer, which
rolls back a transaction a killed writer left unfinished."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tokbench.cli import options
from tokbench.cli.common import EXIT_OK, db_help, open_store, usage_error
from tokbench.text import spreadsheet_safe, terminal_safe

MAX_RUN_ID = 2**63 - 1  # SQLite's rowid range


def add_store_parsers(commands: Any) -> None:
    from tokbench.results.store import DEFAULT_DB_PATH
    from tokbench.schema.results import STATUSES

    history = commands.add_parser("history", help="list stored runs")
    history.add_argument("--model", help="only runs of this model")
    history.add_argument("--status", choices=STATUSES, help="only runs with this status")
    history.add_argument("--limit", type=options.integer(1), help="only the latest N runs")
    history.add_argument("--db", default=str(DEFAULT_DB_PATH), help=db_help())
    history.add_argument(
        "--changes", action="store_true", help="find change points per workload (as `tokbench regressions`)"
    )
    from tokbench.cli.regressions import add_regressions_arguments

    search = add_regressions_arguments(history.add_argument_group("with --changes, as `tokbench regressions`"), None)
    history.set_defaults(search_actions=search)

    export = commands.add_parser(
        "export",
        help="write stored runs out as JSON (full results) or CSV (index, config and each metric's median with its "
        "95%% interval)",
    )
    export.add_argument("--format", choices=("json", "csv"), default="json")
    export.add_argument("--output", metavar="FILE", help="where to write (default: standard output)")
    export.add_argument("--force", action="store_true", help="let --output replace an existing plain file")
    export.add_argument("--model", help="only runs of this model")
    export.add_argument("--status", choices=STATUSES, help="only runs with this status")
    export.add_argument("--db", default=str(DEFAULT_DB_PATH), help=db_help())

    show = commands.add_parser("show", help="print one stored run")
    show.add_argument("run_id", type=options.integer(1, MAX_RUN_ID), metavar="RUN_ID")
    show.add_argument("--db", default=str(DEFAULT_DB_PATH), help=db_help())
    recover = commands.add_parser(
        "recover",
        help="finish what a stopped writer left: roll back its unfinished transaction (the one writing command "
        "for a store that read commands refuse)",
    )
    recover.add_argument("--db", default=str(DEFAULT_DB_PATH), help=db_help())
    recover.set_defaults(handler=command_recover)
    history.set_defaults(handler=command_history)
    export.set_defaults(handler=command_export)
    show.set_defaults(handler=command_show)


def command_history(args: argparse.Namespace) -> int:
    from tokbench.cli.regressions import command_regressions, search_flags_given
    from tokbench.report.terminal import history_table, make_console

    if args.changes:
        listing_only = [flag for flag, value in (("--status", args.status), ("--limit", args.limit)) if value]
        if listing_only:  # the search reads every ok run of each workload: a status or a count would change that
            return usage_error(f"{', '.join(listing_only)}: only for the listing (the search reads every ok run of "
                               "each workload); with --changes, pick runs with --model or --select")  # fmt: skip
        return command_regressions(args)
    searching = search_flags_given(args, args.search_actions)
    if searching:
        what = "a flag" if len(searching) == 1 else "flags"
        return usage_error(f"{', '.join(searching)}: {what} of the change-point search; add --changes")
    with open_store(args.db, must_exist=True) as store:
        runs = store.runs(model=args.model, status=args.status, limit=args.limit)
    make_console().print(history_table(runs))
    return EXIT_OK


def command_export(args: argparse.Namespace) -> int:
    import csv
    import io

    output = _check_export_output(args) if args.output else None
    with open_store(args.db, must_exist=True) as store:
        runs = store.runs(model=args.model, status=args.status)
        if args.format == "json":
            text = _json_export(store, runs)
        else:
            from tokbench.results.export import csv_rows

            buffer = io.StringIO()
            rows = [{key: spreadsheet_safe(value) for key, value in row.items()}
                    for row in csv_rows(runs, store.result_dicts(runs))]  # fmt: skip
            columns = list(rows[0]) if rows else []
            writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
            if rows:
                writer.writeheader()
                writer.writerows(rows)
            text = buffer.getvalue()
    if output is not None:
        from tokbench.results.outputs import write_output_text

        write_output_text(output, text)
        print(terminal_safe(f"{len(runs)} run(s) written to {args.output}", newlines=False), file=sys.stderr)
    else:
        # A terminal is driven by escape sequences: stored text never reaches one raw (JSON escapes its own).
        sys.stdout.write(terminal_safe(text) if sys.stdout.isatty() else text)
    return EXIT_OK


def _json_export(store: Any, runs: list[Any]) -> str:
    """Every run's stored result as JSON; a stored NaN or infinity (no JSON for it) is named, run and field."""
    import json

    from tokbench.errors import StoreError
    from tokbench.schema.checks import first_non_finite

    records = []
    for run, data in zip(runs, store.result_dicts(runs), strict=True):
        problem = first_non_finite(data)
        if problem is not None:
            raise StoreError(
                f"run {run.run_id} in {store.path} cannot be exported as JSON: {problem} (JSON has no such number); "
                "leave it out (--model / --status) or export --format csv"
            )
        records.append(
            {"run_id": run.run_id, "sweep_id": run.sweep_id, "repeat_index": run.repeat_index, "result": data}
        )
    return json.dumps(records, indent=1, allow_nan=False) + "\n"


def _check_export_output(args: argparse.Namespace) -> Path:
    """``--output`` under the one output rule (``results.outputs``): never the store, never another database."""
    from tokbench.results.outputs import check_output_file

    return check_output_file(args.output, inputs=[args.db], force=args.force)


def command_show(args: argparse.Namespace) -> int:
    from tokbench.report.terminal import launch_lines, make_console, print_result

    with open_store(args.db, must_exist=True) as store:
        result = store.result(args.run_id)
        run = store.run(args.run_id)
    console = make_console()
    console.print(
        f"run {run.run_id}  stored {run.stored_at}"
        + (f"  sweep {run.sweep_id} #{run.repeat_index + 1}" if run.sweep_id else "")
    )
    if result.serving is not None:  # a serving run: its own view (the in-process header would not describe it)
        from tokbench.report.serving_view import render_serving

        console.print(render_serving(result))
    else:
        print_result(result, console)
    for line in launch_lines(result):
        console.print(line, highlight=False, markup=False)
    return EXIT_OK


def command_recover(args: argparse.Namespace) -> int:
    """Open an existing store for writing once: SQLite rolls back a transaction a killed writer left (its hot
    journal); the store is then checked as every open checks it."""
    from tokbench.errors import StoreError
    from tokbench.results.store import ResultStore

    journal = Path(f"{args.db}-journal")
    had_journal = journal.is_file() and journal.stat().st_size > 0
    if not Path(args.db).is_file():
        raise StoreError(f"no results store at {args.db}; pass --db")
    with ResultStore(args.db) as store:
        runs = store.count()
    done = "rolled back the unfinished transaction; " if had_journal else "nothing unfinished; "
    print(terminal_safe(f"{args.db}: {done}{runs} stored run(s), the store is readable", newlines=False))
    return EXIT_OK

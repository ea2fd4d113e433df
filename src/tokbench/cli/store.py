"""``tokbench history``, ``show`` and ``export``: the stored runs, read only."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tokbench.cli.common import EXIT_OK, db_help, open_store
from tokbench.text import spreadsheet_safe, terminal_safe


def add_store_parsers(commands: Any) -> None:
    from tokbench.results.store import DEFAULT_DB_PATH
    from tokbench.schema.results import STATUSES

    history = commands.add_parser("history", help="list stored runs")
    history.add_argument("--model", help="only runs of this model")
    history.add_argument("--status", choices=STATUSES, help="only runs with this status")
    history.add_argument("--limit", type=int, help="only the latest N runs")
    history.add_argument("--db", default=str(DEFAULT_DB_PATH), help=db_help())
    history.add_argument(
        "--changes", action="store_true", help="find change points per workload (as `tokbench regressions`)"
    )

    export = commands.add_parser(
        "export",
        help="write stored runs out as JSON (full results) or CSV (index, config and each metric's median with its "
        "95%% interval)",
    )
    export.add_argument("--format", choices=("json", "csv"), default="json")
    export.add_argument("--output", metavar="FILE", help="where to write (default: standard output)")
    export.add_argument("--model", help="only runs of this model")
    export.add_argument("--status", choices=STATUSES, help="only runs with this status")
    export.add_argument("--db", default=str(DEFAULT_DB_PATH), help=db_help())

    show = commands.add_parser("show", help="print one stored run")
    show.add_argument("run_id", type=int, metavar="RUN_ID")
    show.add_argument("--db", default=str(DEFAULT_DB_PATH), help=db_help())
    history.set_defaults(handler=command_history)
    export.set_defaults(handler=command_export)
    show.set_defaults(handler=command_show)


def command_history(args: argparse.Namespace) -> int:
    from tokbench.report.terminal import history_table, make_console

    if args.changes:
        from tokbench.cli.compare import command_regressions

        return command_regressions(args)
    with open_store(args.db, must_exist=True) as store:
        runs = store.runs(model=args.model, status=args.status, limit=args.limit)
    make_console().print(history_table(runs))
    return EXIT_OK


def command_export(args: argparse.Namespace) -> int:
    import csv
    import io
    import json

    with open_store(args.db, must_exist=True) as store:
        runs = store.runs(model=args.model, status=args.status)
        if args.format == "json":
            records = [
                {"run_id": run.run_id, "sweep_id": run.sweep_id, "repeat_index": run.repeat_index, "result": data}
                for run, data in zip(runs, store.result_dicts(runs), strict=True)
            ]
            text = json.dumps(records, indent=1, allow_nan=False) + "\n"
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
    if args.output:
        _write_export(args.output, args.db, text)
        print(terminal_safe(f"{len(runs)} run(s) written to {args.output}", newlines=False), file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _write_export(output: str, db: str, text: str) -> None:
    """Write an export file; never onto the store itself or any other SQLite database."""
    from tokbench.errors import StoreError
    from tokbench.fileio import atomic_write_text
    from tokbench.results.store import is_sqlite_file

    target, store = Path(output), Path(db)
    if target.exists() and ((store.exists() and target.resolve() == store.resolve()) or is_sqlite_file(target)):
        raise StoreError(f"--output {output} is a results database; exporting would replace it: choose another file")
    try:
        atomic_write_text(target, text)
    except OSError as error:
        raise StoreError(f"could not write the export to {output}: {error.strerror or error}") from error


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
    print_result(result, console)
    for line in launch_lines(result):
        console.print(line, highlight=False, markup=False)
    return EXIT_OK

"""Command line: ``tokbench COMMAND ...``, one module per command group.

``run`` / ``tune`` (``cli.run``), ``sweep`` (``cli.sweep``), ``history`` / ``show`` / ``export`` (``cli.store``),
``compare`` (``cli.compare``), ``regressions`` (``cli.regressions``), ``ab`` (``cli.ab``), ``report``
(``cli.report``), ``serve-bench`` (``cli.serve``); config flags come from the field declarations (``cli.flags``).
Each parser names its handler; ``main`` dispatches and turns a ``TokbenchError`` into one terminal-safe line, and
anything unexpected into one line naming the file that keeps the traceback (exit 70): a crash never exits 1,
which is ``compare --fail-on regression``'s code.
"""

from __future__ import annotations

import argparse
import sys

from tokbench.cli.common import EXIT_FAILED, EXIT_INTERNAL, EXIT_USAGE
from tokbench.cli.flags import count_or_auto, parse_sequence_length
from tokbench.cli.run import config_from_args
from tokbench.errors import TokbenchError, UsageError
from tokbench.text import terminal_safe

__all__ = ["build_parser", "config_from_args", "count_or_auto", "main", "parse_sequence_length"]


def build_parser() -> argparse.ArgumentParser:
    from tokbench import __version__
    from tokbench.cli.ab import add_ab_parser
    from tokbench.cli.compare import add_compare_commands
    from tokbench.cli.regressions import add_regressions_parser
    from tokbench.cli.report import add_report_parser
    from tokbench.cli.run import add_run_parsers
    from tokbench.cli.serve import add_serve_parser
    from tokbench.cli.store import add_store_parsers
    from tokbench.cli.sweep import add_sweep_parser
    from tokbench.results.store import DEFAULT_DB_PATH

    parser = argparse.ArgumentParser(
        prog="tokbench",
        description="Measure how fast a transformers causal LM generates text, with a timestamp for every token.",
    )
    parser.add_argument("--version", action="version", version=f"tokbench {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_run_parsers(commands)
    add_sweep_parser(commands)
    add_store_parsers(commands)
    add_report_parser(commands)
    add_compare_commands(commands, str(DEFAULT_DB_PATH))
    add_regressions_parser(commands, str(DEFAULT_DB_PATH))
    add_serve_parser(commands)
    add_ab_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.handler(args))
    except TokbenchError as error:
        print(f"tokbench: {terminal_safe(error, newlines=False)}", file=sys.stderr)
        return EXIT_USAGE if isinstance(error, UsageError) else EXIT_FAILED
    except KeyboardInterrupt as interrupt:  # stopped outside a stage that keeps a result: no traceback
        from tokbench.interrupts import signal_of

        print("tokbench: interrupted", file=sys.stderr)
        return 128 + signal_of(interrupt)
    except Exception as error:  # a bug: one line and the saved traceback, never a traceback on the terminal
        print(f"tokbench: {terminal_safe(internal_error_line(error), newlines=False)}", file=sys.stderr)
        return EXIT_INTERNAL


def internal_error_line(error: BaseException) -> str:
    """Save the traceback of an unexpected error and say where, in one line."""
    import traceback
    from datetime import datetime, timezone

    from tokbench.fileio import keep_text_somewhere

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    text = "".join(traceback.format_exception(error))
    kept, _ = keep_text_somewhere("crash-reports", f"tokbench-crash-{stamp}", ".txt", text)
    summary = f"{type(error).__name__}: {error}"
    summary = summary if len(summary) <= 200 else summary[:197] + "..."
    where = f"the traceback is in {kept}" if kept else "the traceback could not be saved"
    return f"internal error ({summary}); this is a bug in tokbench: {where}; please report it with that file"

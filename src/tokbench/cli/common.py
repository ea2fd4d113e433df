"""What every command shares: exit codes, the one way to print a usage error, and opening a store."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tokbench.text import terminal_safe

EXIT_OK = 0
EXIT_REGRESSION = 1  # compare --fail-on regression
EXIT_USAGE = 2
EXIT_SKIPPED = 3
EXIT_FAILED = 4
EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug in tokbench (the traceback is saved to a file), never 1 or 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT; SIGTERM gives 143 (interrupts.exit_code)


def usage_error(message: object) -> int:
    """Print one terminal-safe ``tokbench: ...`` line and return the usage exit code."""
    print(f"tokbench: {terminal_safe(message, newlines=False)}", file=sys.stderr)
    return EXIT_USAGE


def db_help() -> str:
    from tokbench.results.store import DEFAULT_DB_PATH

    return f"results store (SQLite file; default: {DEFAULT_DB_PATH} in the working directory)"


def open_store(path: str, must_exist: bool) -> Any:
    from tokbench.errors import StoreError
    from tokbench.fileio import file_kind
    from tokbench.results.store import ResultStore

    if must_exist and file_kind(path) == "missing":
        raise StoreError(f"no results store at {path}; `tokbench run` or `tokbench sweep` fill one, or pass --db")
    # Reading commands (must_exist) open it read-only: they never add tables, migrate or write anything.
    return ResultStore(path, read_only=must_exist)


def emit_rendered(
    form: str,
    output: Path | None,
    *,
    json_text: Callable[[], str],
    markdown_text: Callable[[], str],
    draw_terminal: Callable[[], None],
) -> None:
    """A report on stdout in ``form`` (terminal, markdown, json) and, if ``output`` is given (already checked by
    the one output rule, before the work), in that file: in that format, Markdown for terminal. ``compare``,
    ``ab`` and ``regressions`` print this way; a write that fails now raises ``OutputLocationError``."""
    from tokbench.results.outputs import write_output_text

    text = json_text() if form == "json" else markdown_text() if form == "markdown" else None
    if text is None:
        draw_terminal()
    else:
        sys.stdout.write(text)
    if output is not None:
        write_output_text(output, text if text is not None else markdown_text())

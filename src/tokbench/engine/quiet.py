"""Library output kept off the terminal: tokbench's own lines, and warnings about the measured model, reach the user.

torch, torchao, bitsandbytes, optimum-quanto, accelerate, Ray and the Hugging Face hub log and warn about things
the reader of a benchmark does not need: transformers imports torchao whenever it is installed, and torchao logs
"Failed to load ..._C_mxfp8..." on a machine without the GPU it was built for; torch's pytree warns that torchao
registers enums the old way; bitsandbytes logs one ``MatMul8bitLt`` line per forward pass; the profiler prints
``USDT`` lines from C++. ``libraries_quiet()`` routes all of it into a ``HeldBack`` collector for as long as a
command (``tokbench run`` / ``tune`` / ``sweep``), a sweep worker or a fork server runs:

- logging: every logger of ``HELD_LOGGERS`` (and its children) gets the collector's handler instead of the
  library's own stream handlers, and stops propagating; torch is imported first, since torch installs its
  handlers when it is imported;
- warnings: a deprecation (``DeprecationWarning``, ``PendingDeprecationWarning``, ``FutureWarning``) from any
  library, and any warning raised from a held library's own code, is collected instead of printed;
- progress bars: transformers' and huggingface_hub's bars are switched off (the weights come from a local save);
- C-level output: ``fd_output_held`` captures file descriptor 2 around a call that prints there (the profiler's
  start and stop) and turns each line into a log record of the library that printed it.

What passes: tokbench's own output (it prints, or warns from its own code), transformers' warnings that are not
deprecations (they concern the model being loaded and run: a generation setting, an attention fallback), and
any warning from code outside the held libraries (the user's). Nothing is lost: the distinct messages, with how
often each came, are kept in the result (``BenchmarkResult.library_output``), and the warnings held back while a
config ran become notes of its result (``runner.run``), since they may concern the measurement
(bitsandbytes casting bf16 inputs to fp16). ``TOKBENCH_LIBRARY_OUTPUT=show`` turns all of this off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from tokbench.schema.records import LibraryMessage

SHOW_VARIABLE = "TOKBENCH_LIBRARY_OUTPUT"
# Libraries whose logging is held back (each with every child logger: "torch" holds "torch._dynamo" too).
HELD_LOGGERS = (
    "torch",
    "torchao",
    "bitsandbytes",
    "optimum",
    "accelerate",
    "ray",
    "huggingface_hub",
    "filelock",
    "urllib3",
    "fsspec",
    "triton",
)
_DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
_NOTE_TEXT_CHARS = 300
# Distinct messages kept per block; later new ones are only counted (one line per origin and level).
MAX_DISTINCT_MESSAGES = 500
_OVERFLOW_TEXT = f"(further distinct messages after the first {MAX_DISTINCT_MESSAGES}, counted but not kept)"
# The level of a line C or C++ code printed (``fd_output_held``): output, not a warning, so never a note.
_PRINTED = "output"
_PRINTED_MARK = "tokbench_printed"


class HeldBack(logging.Handler):
    """What the libraries said while it was installed: each distinct message once, with how often it came.

    A ``logging.Handler`` so that it can stand in for the libraries' own stream handlers; warnings and C-level
    lines are added with ``add``. Several may be installed at once (a run inside a command): each collects.
    """

    def __init__(self, echo: TextIO | None = None) -> None:
        super().__init__(logging.DEBUG)
        self._counts: dict[tuple[str, str, str], int] = {}
        self._running: dict[tuple[str, str, str], int] = {}  # what came while no library was being imported
        self._echo = echo

    def add(self, origin: str, level: str, text: str) -> None:
        """Count one message (from any thread: the continuous-batching and monitor threads log too)."""
        key = (origin, level, " ".join(text.split()))
        importing = _importing()
        with self.lock:  # logging.Handler's own RLock, which ``handle`` already holds around ``emit``
            if key not in self._counts and len(self._counts) >= MAX_DISTINCT_MESSAGES:
                key = (origin, level, _OVERFLOW_TEXT)  # a library printing a new text every call: counted, not kept
            if key not in self._counts and self._echo is not None:
                with contextlib.suppress(Exception):  # a closed log must not break the run
                    self._echo.write(f"{origin} {level}: {key[2]}\n")
                    self._echo.flush()
            self._counts[key] = self._counts.get(key, 0) + 1
            if not importing:
                self._running[key] = self._running.get(key, 0) + 1

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception as error:  # a library's bad format string must not break the run
            text = f"{record.msg!r} (unformattable: {type(error).__name__})"
        level = _PRINTED if getattr(record, _PRINTED_MARK, False) else record.levelname.lower()
        self.add(record.name.split(".")[0], level, text)

    def messages(self) -> tuple[LibraryMessage, ...]:
        """Every distinct message held back so far, first seen first."""
        return tuple(
            LibraryMessage(origin=origin, level=level, text=text, count=count)
            for (origin, level, text), count in self._counts.items()
        )

    def warning_notes(self) -> tuple[str, ...]:
        """The warnings (and worse) held back, one note each with its count: what a reader of the result should
        still see. What a library said while it was being imported (a kernel it could not load on this machine)
        says nothing about the run, and is left out."""
        return tuple(
            f"{origin} {level}: {text[:_NOTE_TEXT_CHARS]}" + (f" (x{count})" if count > 1 else "")
            for (origin, level, text), count in self._running.items()
            if level in ("warning", "error", "critical")
        )


def showing_everything() -> bool:
    """Whether the user asked to see the libraries' own output (``TOKBENCH_LIBRARY_OUTPUT=show``)."""
    return os.environ.get(SHOW_VARIABLE, "").strip().lower() == "show"


@contextlib.contextmanager
def libraries_quiet(*, engine: bool = True, echo: TextIO | None = None) -> Iterator[HeldBack]:
    """Hold the libraries' logging, warnings and progress bars back until the block ends (see the module).

    ``engine``: the block will load and run models, so torch is imported first (torch sets its logging up when it
    is imported: it must be there to be taken over); False for a process that never does (a sweep's parent).
    ``echo``: a stream that no user reads as it happens (a sweep worker's log, whose tail a failed config keeps)
    gets each distinct message once, as it first comes: what a library said before a crash is not lost with it.
    """
    held = HeldBack(echo)
    if showing_everything():
        yield held
        return
    if engine:
        import torch  # noqa: F401
    with _loggers_held(held), _warnings_held(held), _progress_bars_off(engine):
        yield held


def _importing() -> bool:
    """Whether a module is being imported further up this thread's stack."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib._bootstrap"):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def merged(*parts: tuple[LibraryMessage, ...]) -> tuple[LibraryMessage, ...]:
    """Messages of several collectors as one list: a message both saw counts once, at the larger count."""
    counts: dict[tuple[str, str, str], int] = {}
    for messages in parts:
        for message in messages:
            key = (message.origin, message.level, message.text)
            counts[key] = max(counts.get(key, 0), message.count)
    return tuple(LibraryMessage(origin, level, text, count) for (origin, level, text), count in counts.items())


@contextlib.contextmanager
def fd_output_held(origin: str) -> Iterator[None]:
    """Capture what C or C++ code writes to file descriptor 2 during the block, as log records of ``origin``.

    Python's own ``sys.stderr`` is flushed first and so stays in order; lines written while the block runs go
    to a temporary file, then to ``logging.getLogger(origin)`` (which ``libraries_quiet`` holds back).
    """
    if showing_everything():
        yield
        return
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        try:
            os.dup2(captured.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", errors="replace").splitlines()
    logger = logging.getLogger(origin)
    for line in lines:
        if line.strip():  # at warning level so that no library's level setting drops it
            logger.warning("%s", line.strip(), extra={_PRINTED_MARK: True})


# --- logging ----------------------------------------------------------------------------------------------


def _held_logger(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in HELD_LOGGERS)


@contextlib.contextmanager
def _loggers_held(held: HeldBack) -> Iterator[None]:
    """Every held library logger that prints (its own handlers, or no propagation) prints into ``held`` instead.

    The top-level loggers always get ``held`` (their children propagate to them); a child that does not
    propagate (torch's registered loggers: ``torch._dynamo``, ``torch._inductor``...) gets it too. Handlers and
    propagation come back as they were when the block ends.
    """
    manager = logging.root.manager
    existing = [name for name, item in list(manager.loggerDict.items()) if isinstance(item, logging.Logger)]
    names = [name for name in existing if _held_logger(name) and name not in HELD_LOGGERS]
    saved: list[tuple[logging.Logger, list[logging.Handler], bool]] = []
    for name in (*HELD_LOGGERS, *names):
        logger = logging.getLogger(name)
        if name not in HELD_LOGGERS and logger.propagate and not logger.handlers:
            continue  # reaches its held parent anyway
        saved.append((logger, list(logger.handlers), logger.propagate))
        for handler in list(logger.handlers):
            if not isinstance(handler, HeldBack):  # an enclosing block's collector keeps collecting
                logger.removeHandler(handler)
        logger.addHandler(held)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, handlers, propagate in reversed(saved):
            logger.removeHandler(held)
            for handler in handlers:
                if handler not in logger.handlers:
                    logger.addHandler(handler)
            logger.propagate = propagate


# --- warnings ---------------------------------------------------------------------------------------------

_LIBRARY_FOLDERS = tuple(f"{os.sep}{name.split('.')[0]}{os.sep}" for name in HELD_LOGGERS)
_OWN_FOLDER = str(Path(__file__).resolve().parents[1]) + os.sep


def warning_origin(category: type[Warning], filename: str) -> str | None:
    """The library a warning is held back as, or None when it reaches the user.

    tokbench's own warnings always reach the user; deprecations from anywhere else never do; any other
    warning is held back when it was raised from a held library's own code (transformers' are about the model).
    """
    path = str(filename)
    if path.startswith(_OWN_FOLDER):
        return None
    package = _package_of(path)
    if issubclass(category, _DEPRECATIONS):
        return package or "python"
    return package if package in {name.split(".")[0] for name in HELD_LOGGERS} else None


def _package_of(path: str) -> str | None:
    marker = f"{os.sep}site-packages{os.sep}"
    if marker in path:
        return path.split(marker, 1)[1].split(os.sep, 1)[0].removesuffix(".py")
    for folder in _LIBRARY_FOLDERS:
        if folder in path:
            return folder.strip(os.sep)
    return None


@contextlib.contextmanager
def _warnings_held(held: HeldBack) -> Iterator[None]:
    previous = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: object = None,
        line: str | None = None,
    ) -> None:
        origin = warning_origin(category, filename)
        if origin is None:
            previous(message, category, filename, lineno, file, line)  # type: ignore[arg-type]
        else:
            held.add(origin, "warning", f"{category.__name__}: {message}")

    warnings.showwarning = show
    try:
        yield
    finally:
        if warnings.showwarning is show:
            warnings.showwarning = previous


# --- progress bars ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _progress_bars_off(engine: bool) -> Iterator[None]:
    """transformers' and huggingface_hub's download-style bars off (a quantized load reads a local save)."""
    if not engine:
        yield
        return
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as transformers_logging

    hub_was_on = not are_progress_bars_disabled()
    transformers_was_on = transformers_logging.is_progress_bar_enabled()
    disable_progress_bars()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if transformers_was_on:
            transformers_logging.enable_progress_bar()
        if hub_was_on:
            enable_progress_bars()


__all__ = [
    "HELD_LOGGERS",
    "SHOW_VARIABLE",
    "HeldBack",
    "fd_output_held",
    "libraries_quiet",
    "merged",
    "showing_everything",
    "warning_origin",
]

"""Interruption: SIGINT (Ctrl-C) and SIGTERM (a CI job cancelled, ``kill``) end a command the same way.

``interruptible()`` turns both signals into ``Interrupted`` (a ``KeyboardInterrupt``, so every
``finally`` and every ``except KeyboardInterrupt`` that already handles Ctrl-C handles SIGTERM too)
carrying the signal's number, which gives the exit code 128 + N (130, 143). Only the first signal
raises: a second one while the command saves what it measured is noted, not raised, so the save is
never cut in half.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; ``signal_number`` says which (SIGINT for a plain Ctrl-C)."""

    def __init__(self, signal_number: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signal_number


def signal_of(interrupt: BaseException) -> int:
    """The signal behind a ``KeyboardInterrupt``: its own for ``Interrupted``, SIGINT for Python's default."""
    return interrupt.signal_number if isinstance(interrupt, Interrupted) else signal.SIGINT


@contextmanager
def interruptible() -> Iterator[list[int]]:
    """Within the block, SIGINT and SIGTERM raise ``Interrupted`` once; handlers are restored after.

    Yields the list of signals that stopped the block (empty, or the first one), for the exit code.
    Outside the main thread (where Python cannot install handlers) the block runs unchanged.
    """
    raised: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield raised
        return

    def handler(number: int, _frame: Any) -> None:
        if raised:  # already stopping: let the cleanup and the save finish
            return
        raised.append(number)
        raise Interrupted(number)

    previous = {number: signal.signal(number, handler) for number in HANDLED_SIGNALS}
    try:
        yield raised
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def exit_code(raised: list[int]) -> int:
    """128 + the signal that stopped a command (SIGINT when Python's own Ctrl-C handling stopped it)."""
    return 128 + (raised[0] if raised else signal.SIGINT)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM off for the block (a commit that must not be cut), then deliver the first one
    that arrived to the handler that was in place before: ``Interrupted`` under ``interruptible``, Python's
    ``KeyboardInterrupt`` for a plain SIGINT, the default ending for a plain SIGTERM.
    Outside the main thread the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {number: signal.signal(number, lambda n, _f: received.append(n)) for number in HANDLED_SIGNALS}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
    if received:
        signal.raise_signal(received[0])

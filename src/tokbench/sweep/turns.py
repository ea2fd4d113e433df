"""The duet child's side (``tokbench ab --duet``, ``sweep.duet``): the measuring loop's gate that takes turns.

``TurnGate`` is a ``policy.MeasurementGate`` over a Unix socket to the parent (``sweep.duet``'s conductor): before
each measured call it says ``ready`` and blocks (not spinning) until the parent says ``go`` or ``stop REASON``;
after the call it says ``done T0 END WISH``, WISH being ``-``, ``met REASON`` (its policy's target reached) or
``bound REASON`` (a fixed count, max iterations, budget). The parent decides when the pair stops; a closed
channel stops the measurement. On connecting, the parent's first line is ``partner PID`` (the other process, whose
CPU between our calls is no interference: ``hardware.interference``). Kept apart from ``sweep.duet`` so the
worker imports no launcher.
"""

from __future__ import annotations

import contextlib
import os
import socket

from tokbench.engine.policy import OwnStop
from tokbench.schema.records import GenerationTrace

DUET_SOCKET_ENV = "TOKBENCH_DUET_SOCKET"
STOP_PARTNER_ENDED = "duet: the paired process ended"
STOP_PAIR = "duet: the pair stopped"


class TurnGate:
    """The measuring loop's gate in a duet child: blocks before each call until the parent gives the turn."""

    def __init__(self, path: str) -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.connect(path)
        self._reader = self._socket.makefile("r", encoding="utf-8")
        # The parent's first line names the partner process: its CPU between our calls is by design.
        first = self._reader.readline().split()
        self.companion_pids: tuple[int, ...] = (int(first[1]),) if first[:1] == ["partner"] and first[1:2] else ()

    def _say(self, line: str) -> bool:
        try:
            self._socket.sendall(f"{line}\n".encode())
        except OSError:
            return False
        return True

    def before_call(self, index: int) -> str | None:
        if not self._say(f"ready {index}"):
            return STOP_PAIR + " (the parent closed the channel)"
        answer = self._reader.readline().strip()  # blocks: the other side is measuring
        if answer == "go":
            return None
        return answer.removeprefix("stop ").strip() or STOP_PAIR + " (the parent closed the channel)"

    def after_call(self, trace: GenerationTrace, own: OwnStop | None) -> str | None:
        wish = "-" if own is None else f"{'bound' if own.bound else 'met'} {own.reason}"
        self._say(f"done {trace.t0_ns} {trace.end_ns} {wish}")
        return None  # the parent decides at the next turn: both sides measure the same number of calls

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._reader.close()
            self._socket.close()


def gate_from_environment() -> TurnGate | None:
    """The duet gate when the parent asked for one (``DUET_SOCKET_ENV``); connects at once, so a child that dies
    before measuring is seen by the parent as a closed channel."""
    path = os.environ.get(DUET_SOCKET_ENV)
    return TurnGate(path) if path else None

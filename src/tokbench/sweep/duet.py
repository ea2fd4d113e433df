"""Duet pairs for ``tokbench ab --duet``: both processes of a pair alive at once, taking turns call by call.

Why (Bulej et al., "Duet Benchmarking", ICPE 2020): on a shared machine the load from other users changes from
minute to minute, so two processes run one after the other see different machines and differ by 10-30%. In a
duet pair, A's measured call i and B's measured call i run back to back (which goes first drawn per round,
seeded), so both see the load of the same seconds; the one not measuring waits blocked on a socket (not
spinning), so the two never measure at the same time on the machine's few cores.

How: each side's child is a fresh worker started by its side's ``ProcessLauncher`` (same isolation, timeout and
crash handling as any run), told through ``DUET_SOCKET_ENV`` where to connect. In the child, ``turns.TurnGate`` is the
measuring loop's ``policy.MeasurementGate``: before each measured call it says ``ready`` and blocks until the
parent says ``go`` (or ``stop``); after the call it says ``done`` with its policy's own wish to stop (a target
met, or a bound: fixed count, max iterations, budget). Warmup runs in each child as always, before its first
``ready``. The parent (``conduct``) lets each side measure one call per round, in the round's order, and waits
for the side to be blocked again before the other's turn. Stopping rule of the pair: both sides measure the same
number of calls; the pair stops when either side reaches a bound (no side measures beyond its own limits) or
when both sides' targets are met (neither side stops short of the precision it asked for). A side that crashes,
exits or runs past its timeout ends the pair: the other is told to stop (it keeps what it measured; the pair is
left out of the analysis, as a sequential pair with a failed side is), and no wait is unbounded.

Each child is still one result, stored as before under the ab id; its launch record's ``duet`` says who went
first in each round, so ``results.comparison`` can rebuild the rounds from the stored call timestamps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import selectors
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tokbench.config import BenchmarkConfig
from tokbench.errors import LaunchError
from tokbench.schema.records import DuetRecord
from tokbench.schema.results import BenchmarkResult
from tokbench.sweep.launchers import ProcessLauncher, RunningConfig
from tokbench.sweep.turns import DUET_SOCKET_ENV, STOP_PAIR, STOP_PARTNER_ENDED

# How often the parent looks whether a child that has not connected yet is still alive.
_CONNECT_POLL_S = 0.5
# A side told to stop because its partner failed gets this long past its own timeout to reach its next turn (its
# warmup may still run) and write its result.
STOP_GRACE_S = 30.0


# --- the parent's side ------------------------------------------------------------------------------------


@dataclass
class _Channel:
    """The parent's end of one child's turns."""

    name: str
    running: RunningConfig
    listener: socket.socket
    connection: socket.socket | None = None
    buffer: bytes = b""
    gone: bool = False
    ready: bool = False  # blocked before its next call, waiting for the turn
    wish: str = "-"  # the child's last "-", "met REASON" or "bound REASON"

    def send(self, line: str) -> None:
        self.ready = False
        if self.connection is None or self.gone:
            return
        try:
            self.connection.sendall(f"{line}\n".encode())
        except OSError:
            self.gone = True

    def take_line(self) -> str | None:
        if b"\n" not in self.buffer:
            return None
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode("utf-8", errors="replace").strip()

    def close(self) -> None:
        for end in (self.connection, self.listener):
            if end is not None:
                with contextlib.suppress(OSError):
                    end.close()


@dataclass
class DuetLog:
    """What the conductor did: who went first in each round, why the pair stopped, who ran past its timeout."""

    first: list[str] = field(default_factory=list)
    ended: str = ""
    timed_out: set[str] = field(default_factory=set)

    @property
    def rounds(self) -> int:
        return len(self.first)


class _Conductor:
    """The parent's loop over one pair's turns (``conduct``)."""

    def __init__(self, channels: dict[str, _Channel], order: random.Random, clock: Callable[[], int]) -> None:
        self.channels = channels
        self.order = order
        self.clock = clock
        self.log = DuetLog()
        self.selector = selectors.DefaultSelector()
        for channel in channels.values():
            self.selector.register(channel.listener, selectors.EVENT_READ, channel)

    def _pump(self, channel: _Channel) -> bool:
        """Read what the children say, for at most a poll interval (blocked in select, not spinning); False when
        ``channel``, the side waited on, ran past its timeout (recorded in the log)."""
        seconds = channel.running.seconds_left(self.clock())
        if seconds is not None and seconds <= 0:
            self.log.timed_out.add(channel.name)
            return False
        wait_s = _CONNECT_POLL_S if seconds is None else min(_CONNECT_POLL_S, seconds)
        for key, _ in self.selector.select(wait_s):
            talker: _Channel = key.data
            if key.fileobj is talker.listener:
                talker.connection, _ = talker.listener.accept()
                partner = next(other.running.pid for other in self.channels.values() if other is not talker)
                talker.send(f"partner {partner}")
                self.selector.unregister(talker.listener)
                self.selector.register(talker.connection, selectors.EVENT_READ, talker)
                continue
            data = b""
            with contextlib.suppress(OSError):
                data = talker.connection.recv(65536)  # type: ignore[union-attr]
            if not data:
                talker.gone = True  # it exited (or crashed): the kernel closed its end
                self.selector.unregister(key.fileobj)
            talker.buffer += data
        if channel.connection is None and channel.running.exited():
            channel.gone = True  # it ended before it connected
        return True

    def _await(self, channel: _Channel, what: str) -> bool:
        """Read ``channel`` until a line starting with ``what``; False if it ended or ran out of time first."""
        while True:
            line = channel.take_line()
            while line is not None:
                if line.startswith("done"):
                    parts = line.split(" ", 3)
                    channel.wish = parts[3] if len(parts) == 4 else "-"
                if line.startswith(what):
                    channel.ready = what == "ready"
                    return True
                line = channel.take_line()
            if channel.gone or not self._pump(channel):
                return False

    def _stop_all(self, reason: str) -> DuetLog:
        self.log.ended = reason
        for channel in self.channels.values():
            channel.send(f"stop {reason}")
        return self.log

    def _ended(self, name: str) -> DuetLog:
        why = "ran past its timeout" if name in self.log.timed_out else "ended"
        return self._stop_all(f"{STOP_PARTNER_ENDED} (side {name} {why})")

    def run(self) -> DuetLog:
        names = sorted(self.channels)
        while True:
            for name in names:  # every side blocked before its next call (its warmup done), or the pair ends
                if not self.channels[name].ready and not self._await(self.channels[name], "ready"):
                    return self._ended(name)
            wishes = [self.channels[name].wish for name in names]
            bound = [wish for wish in wishes if wish.startswith("bound")]
            if bound:  # no side measures beyond its own limits
                return self._stop_all(f"{STOP_PAIR}: {bound[0].removeprefix('bound ')}")
            if all(wish.startswith("met") for wish in wishes):  # both sides reached what they asked for
                return self._stop_all(f"{STOP_PAIR}: {wishes[0].removeprefix('met ')} on both sides")
            order = list(names)
            self.order.shuffle(order)
            self.log.first.append(order[0])
            for position, name in enumerate(order):
                channel = self.channels[name]
                channel.send("go")
                if not self._await(channel, "done"):
                    return self._ended(name)
                # The next side measures only once this one is blocked again (its bookkeeping done).
                if position < len(order) - 1 and not self._await(channel, "ready"):
                    return self._ended(name)


def conduct(
    running: Mapping[str, RunningConfig],
    listeners: Mapping[str, socket.socket],
    order: random.Random,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> tuple[DuetLog, list[_Channel]]:
    """Take the children through their measured calls in turns (see the module doc): what happened, and the
    channels (the caller closes them once the children are collected). Every wait is bounded by the waited-on
    child's timeout."""
    channels = {name: _Channel(name, running[name], listeners[name]) for name in running}
    conductor = _Conductor(channels, order, clock)
    try:
        return conductor.run(), list(channels.values())
    except BaseException:
        for channel in channels.values():
            channel.close()
        raise
    finally:
        conductor.selector.close()


def _socket_folder() -> Path:
    """A folder for the pair's sockets; a Unix socket's path must stay short (about 100 bytes)."""
    base = tempfile.gettempdir()
    return Path(tempfile.mkdtemp(prefix="tbduet-", dir=base if len(base) < 60 else "/tmp"))


class DuetPairRunner:
    """Runs duet pairs of two config sides, each side's processes started by its own ``ProcessLauncher`` (its
    interpreter, environment, folder, fork server)."""

    def __init__(
        self,
        configs: Mapping[str, BenchmarkConfig],
        launchers: Mapping[str, ProcessLauncher],
        clock: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        self.configs = dict(configs)
        self.launchers = dict(launchers)
        self.clock = clock

    def run_pair(self, order: random.Random, timeout_s: float | None) -> dict[str, BenchmarkResult]:
        """One pair: both children started, their measured calls in turns (who goes first in a round drawn
        from ``order``), both collected; one result per side (a failure is a failed result)."""
        folder = _socket_folder()
        running: dict[str, RunningConfig] = {}
        listeners: dict[str, socket.socket] = {}
        channels: list[_Channel] = []
        try:
            for name in self.configs:
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                listener.bind(str(folder / f"{name}.sock"))
                listener.listen(1)
                listeners[name] = listener
            for name, config in self.configs.items():
                running[name] = self.launchers[name].start(config, timeout_s,
                                                           {DUET_SOCKET_ENV: str(folder / f"{name}.sock")})  # fmt: skip
            log, channels = conduct(running, listeners, order, self.clock)
            pids = {name: run.pid for name, run in running.items()}
            results = {}
            for name in sorted(running, key=lambda name: name not in log.timed_out):  # the late one first
                run = running.pop(name)
                if name not in log.timed_out:  # told to stop when its partner failed: time to write its result
                    run.grace_s = STOP_GRACE_S
                results[name] = self.launchers[name].collect(run)
        finally:
            for name, run in running.items():  # not collected (Ctrl-C, a launcher error): never left running
                self.launchers[name].abandon(run)
            for channel in channels:
                channel.close()
            for listener in listeners.values():
                with contextlib.suppress(OSError):
                    listener.close()
            shutil.rmtree(folder, ignore_errors=True)
        silent = [channel.name for channel in channels if channel.connection is None and results[channel.name].ok]
        if silent:  # it measured on its own: a worker that does not know the duet protocol
            raise LaunchError(
                f"side {silent[0]}'s worker measured without taking duet turns (its tokbench predates duet pairs?): "
                "install this tokbench in that environment, or run with --no-duet"
            )
        return {name: _with_duet(results[name], name, log, pids) for name in self.configs}

    def close(self) -> None:
        for launcher in self.launchers.values():
            launcher.close()


def _with_duet(result: BenchmarkResult, name: str, log: DuetLog, pids: Mapping[str, int]) -> BenchmarkResult:
    partner = next((pid for other, pid in pids.items() if other != name), None)
    record = DuetRecord(side=name, rounds=log.rounds, first="".join(log.first), ended=log.ended, partner_pid=partner)
    return dataclasses.replace(result, launch=dataclasses.replace(result.launch, duet=record))

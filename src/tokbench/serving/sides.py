"""A side of an A/B over serving endpoints (``tokbench ab --a-url / --a-launch``): what one "process" of it is.

One process of a serving side is one complete serve-bench run (pre-flight, warmup, the measured requests) whose
requests come from fresh client processes (``serving.clients``), and, for a side given as a command, against a
server launched fresh for that run and stopped after it:

- **The server is what is measured**, so its process is the unit, as a fresh worker is for in-process sides.
  What differs between two starts of one server (allocator and cache layout, compiled kernels, threads' cores,
  a warm-up that went differently) is variance between processes; runs against one long-lived server sample none
  of it, and a paired test on them would call a difference between those two server processes a difference
  between the two versions. Launching per run also means only one side's server is up at a time: two versions
  that need the same accelerator memory or port never compete.
- **The client is part of the instrument**, so it starts fresh too: no heap, GC generation, connection or event
  loop state carries from a run of one side into the next run of the other, a per-run ``--timeout`` can end it,
  and its start-up is never measured (the clients say ready after their warmup; the schedule starts after).
- **A server given by URL** runs outside tokbench and cannot be restarted: each run is one serve-bench run against
  that same server process. The result's notes say so: a verdict then covers those two server processes.

``ServingSideRunner`` is what ``sweep.ab.AbRunner`` calls (its ``SideRunner`` protocol, met structurally: this layer
cannot import ``sweep``); the CLI composes the two.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tokbench.errors import LaunchError
from tokbench.schema.results import BenchmarkResult
from tokbench.schema.serving import ServerRecord
from tokbench.serving.launch import launch_command, launched
from tokbench.serving.runner import ServingRun, failed_run, run_serving

UNIT_LAUNCHED = "one run against a freshly launched server (stopped after it), requests from fresh client processes"
UNIT_URL = ("one run against the server already running at the URL, requests from fresh client processes: every "
            "run of this side measures the same server process, so a verdict covers that process, not its version "
            "(launch it per run with --a-launch / --b-launch to sample server starts)")  # fmt: skip


@dataclass(frozen=True)
class ServingSide:
    """A server by URL (``launch`` None) or a command launched per run (``{port}`` in it: a free loopback port)."""

    name: str
    run: ServingRun
    launch: str | None = None
    environment: dict[str, str] = field(default_factory=dict)  # a launched server's extra variables
    cwd: str | None = None  # a launched server's working directory
    launch_timeout_s: float = 300.0

    @property
    def unit(self) -> str:
        return UNIT_LAUNCHED if self.launch else UNIT_URL

    def describe(self) -> dict[str, Any]:
        """What tells this side apart, as ``tokbench ab`` stores and prints it (never the API key)."""
        where: dict[str, Any] = {"launch": self.launch} if self.launch else {"url": self.run.url}
        if self.launch:
            where.update(environment=dict(self.environment), cwd=self.cwd)
        return {**where, "label": self.run.settings.label, "clients": self.run.clients, "unit": self.unit}


class ServingSideRunner:
    """Runs one process (see the module's docstring) of a ``ServingSide`` per ``run_once``."""

    def __init__(self, side: ServingSide, api_key: str | None = None) -> None:
        self.side = side
        self._api_key = api_key

    def run_once(self, timeout_s: float | None) -> BenchmarkResult:
        side = self.side
        run = replace(side.run, deadline_s=timeout_s, notes=(*side.run.notes, f"tokbench ab unit: {side.unit}"))
        if side.launch is None:
            return run_serving(run, self._api_key)
        command, url = launch_command(side.launch)
        run = replace(run, url=url)
        with tempfile.TemporaryDirectory(prefix="tokbench-ab-server-") as folder:
            try:
                with launched(command, url, timeout_s=side.launch_timeout_s, env=side.environment, cwd=side.cwd,
                              log_dir=Path(folder)) as server:  # fmt: skip
                    result = run_serving(replace(run, server=server.record()), self._api_key)
            except LaunchError as error:
                server_record = ServerRecord(kind="launched", command=tuple(command))
                return failed_run(replace(run, server=server_record), f"the server did not start: {error}")
            if result.serving is not None:  # after the stop: the server's exit code and the tail of its log
                result = replace(result, serving=replace(result.serving, server=server.record()))
        return result

    def close(self) -> None:
        """Nothing outlives a run: each run's server and clients are stopped with it."""

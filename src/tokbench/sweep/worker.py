"""Child entry point of the process launcher: ``python -m tokbench.sweep.worker --config C.json --result R.json``.

Reads one config as JSON, runs it with ``runner.run`` (which never raises for a config) and writes the
result as JSON, atomically, to the path the parent gave. The parent reads it back; nothing is pickled.
Exit codes: 0 a result was written (whatever its status), 2 the config file could not be read.
The fork server's children (``tokbench.sweep.forkserver``) run the same ``run_config_file``.

A load group (``{"group": [config, ...]}`` instead of one config) is measured on one model load
(``engine.shared_load``): before config i starts the worker creates ``RESULT.i.started``, and writes
config i's result to ``RESULT.i`` as soon as it exists, so the parent knows which config a worker that
died was on and keeps every result written before.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import os
import select
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

_PARENT_POLL_S = 0.5
EXIT_BAD_CONFIG = 2
EXIT_ORPHANED = 3


def _exit_when_orphaned(parent_pid: int) -> None:
    """If the parent dies (even by SIGKILL), nobody will read our result: stop instead of running on."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_PARENT_POLL_S)
        _orphaned(parent_pid)

    threading.Thread(target=watch, name="tokbench-parent-watch", daemon=True).start()


def exit_when_gone(launcher_pid: int) -> None:
    """Like ``_exit_when_orphaned``, for a process that is not our parent (the fork server is): exit once
    ``launcher_pid`` has ended. A pidfd says so without polling and cannot mistake a reused pid."""
    try:
        pidfd = os.pidfd_open(launcher_pid)
    except ProcessLookupError:
        _orphaned(launcher_pid)
    except (AttributeError, OSError):  # no pidfd (old kernel or Python): poll the pid instead
        pidfd = None

    def watch() -> None:
        if pidfd is not None:
            select.select([pidfd], [], [])
        else:
            while _alive(launcher_pid):
                time.sleep(_PARENT_POLL_S)
        _orphaned(launcher_pid)

    threading.Thread(target=watch, name="tokbench-launcher-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _orphaned(pid: int) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"tokbench.sweep.worker: parent process {pid} is gone; exiting", file=sys.stderr, flush=True)
    os._exit(EXIT_ORPHANED)


def run_config_file(config_path: str, result_path: str) -> int:
    """Config JSON in, result JSON out; returns the exit code."""
    from tokbench.config import BenchmarkConfig
    from tokbench.errors import ConfigError

    _apply_thread_policy()
    try:
        with open(config_path, encoding="utf-8") as stream:
            data = json.load(stream)
        is_group = isinstance(data, dict) and "group" in data
        configs = [BenchmarkConfig.from_dict(item) for item in data["group"]] if is_group else []
        config = None if is_group else BenchmarkConfig.from_dict(data)
    except (OSError, json.JSONDecodeError, ConfigError, TypeError) as error:
        print(f"tokbench.sweep.worker: cannot read the config {config_path}: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG

    from tokbench.engine.quiet import libraries_quiet
    from tokbench.engine.runner import run, with_library_output
    from tokbench.schema.results import save_result

    # The libraries' output goes into each result, and each distinct message once into this worker's log (its
    # stderr, which no terminal shows: a failed config keeps its tail, with what a library said before a crash).
    with libraries_quiet(echo=sys.stderr) as held:
        if config is None:
            for index, result in enumerate(_run_group(configs, result_path)):
                save_result(with_library_output(result, held, notes=False), group_result_path(result_path, index))
            return 0
        _say_started(config, 0, 1)
        from tokbench.sweep.turns import gate_from_environment

        gate = gate_from_environment()  # a duet pair's child (``tokbench ab --duet``): its calls take turns
        try:
            result = run(config, progress=False, gate=gate)
        finally:
            if gate is not None:
                gate.close()
        save_result(with_library_output(result, held, notes=False), result_path)
    return 0


def _apply_thread_policy() -> None:
    """The torch thread count the executor gave this child (sweep.threads), before anything is loaded."""
    from tokbench.sweep.threads import apply_from_environment

    apply_from_environment()
def _say_started(config: Any, index: int, count: int) -> None:
    """One line in the worker's log per config: the tail of a worker that died says which config it was on."""
    from tokbench.text import terminal_safe

    where = f" {index + 1}/{count}" if count > 1 else ""
    print(terminal_safe(f"tokbench.sweep.worker: config{where} {config.name} started", newlines=False),
          file=sys.stderr, flush=True)  # fmt: skip


def group_result_path(result_path: str, index: int) -> str:
    return f"{result_path}.{index}"


def group_started_path(result_path: str, index: int) -> str:
    return f"{result_path}.{index}.started"


def _run_group(configs: list[Any], result_path: str) -> Iterator[Any]:
    """The group's results in order, measured on one load; config i's start is marked before it starts."""
    from tokbench.engine.shared_load import measure_group

    def started(index: int) -> None:
        with open(group_started_path(result_path, index), "w", encoding="utf-8"):
            pass
        _say_started(configs[index], index, len(configs))

    return measure_group(configs, on_start=started, progress=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tokbench.sweep.worker", description=__doc__)
    parser.add_argument("--config", required=True, help="config JSON written by the parent")
    parser.add_argument("--result", required=True, help="where to write the result JSON")
    parser.add_argument("--parent-pid", type=int, help="exit when this process is no longer our parent")
    parser.add_argument("--name", help="the config's name (for ps / top; not used otherwise)")
    args = parser.parse_args(argv)
    faulthandler.enable()  # a segfault prints the Python stack to stderr, which the parent keeps
    if args.parent_pid is not None:
        _exit_when_orphaned(args.parent_pid)
    return run_config_file(args.config, args.result)


if __name__ == "__main__":
    sys.exit(main())

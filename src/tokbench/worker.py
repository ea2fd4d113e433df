"""Child entry point of the process launcher: ``python -m tokbench.worker --config C.json --result R.json``.

Reads one config as JSON, runs it with ``runner.run`` (which never raises for a config) and writes the
result as JSON, atomically, to the path the parent gave. The parent reads it back; nothing is pickled.
Exit codes: 0 a result was written (whatever its status), 2 the config file could not be read.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import sys
import threading
import time

_PARENT_POLL_S = 0.5


def _exit_when_orphaned(parent_pid: int) -> None:
    """If the parent dies (even by SIGKILL), nobody will read our result: stop instead of running on."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_PARENT_POLL_S)
        print(f"tokbench.worker: parent process {parent_pid} is gone; exiting", file=sys.stderr, flush=True)
        os._exit(3)

    threading.Thread(target=watch, name="tokbench-parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tokbench.worker", description=__doc__)
    parser.add_argument("--config", required=True, help="config JSON written by the parent")
    parser.add_argument("--result", required=True, help="where to write the result JSON")
    parser.add_argument("--parent-pid", type=int, help="exit when this process is no longer our parent")
    parser.add_argument("--name", help="the config's name (for ps / top; not used otherwise)")
    args = parser.parse_args(argv)
    faulthandler.enable()  # a segfault prints the Python stack to stderr, which the parent keeps
    if args.parent_pid is not None:
        _exit_when_orphaned(args.parent_pid)

    from tokbench.config import BenchmarkConfig
    from tokbench.errors import ConfigError

    try:
        with open(args.config, encoding="utf-8") as stream:
            config = BenchmarkConfig.from_dict(json.load(stream))
    except (OSError, json.JSONDecodeError, ConfigError, TypeError) as error:
        print(f"tokbench.worker: cannot read the config {args.config}: {error}", file=sys.stderr)
        return 2

    from tokbench.results import save_result
    from tokbench.runner import run

    result = run(config, progress=False)
    save_result(result, args.result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How long does a command take to start? Every command builds the whole parser, so one heavy import at the top of
a command module is paid by all of them (tests/unit/test_startup.py keeps scipy.stats and torch out of it; this
prints the times). For each command: the median wall time of a few runs in a fresh folder (a read command on an
empty store), and the five slowest top-level imports of one of them (python -X importtime).

    python benchmarks/cli_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = (["--help"], ["history"], ["compare", "--help"], ["ab", "--help"], ["report", "--help"], ["run", "--help"])


def wall_s(argv: list[str], folder: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tokbench", *argv], cwd=folder, capture_output=True, check=False)
    return time.perf_counter() - started


def slowest_imports(argv: list[str], folder: str, count: int = 5) -> list[tuple[float, str]]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "tokbench", *argv], cwd=folder,
                          capture_output=True, text=True, check=False)  # fmt: skip
    found = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        if not name.startswith("  "):  # top level only: nested imports are inside these
            found.append((int(cumulative) / 1e6, name.strip()))
    return sorted(found, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; median of {args.runs} runs")
    with tempfile.TemporaryDirectory() as folder:
        for argv in COMMANDS:
            times = [wall_s(argv, folder) for _ in range(args.runs)]
            print(f"  tokbench {' '.join(argv):<16} {statistics.median(times):6.2f} s")
        print("slowest top-level imports of `tokbench history`:")
        for seconds, name in slowest_imports(["history"], folder):
            print(f"  {seconds:6.3f} s  {name}")


if __name__ == "__main__":
    main()

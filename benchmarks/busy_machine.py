"""What a busy machine does to a run, and whether tokbench says so: the same config measured with 0, 1, ... CPU hogs.

For each hog count, starts that many busy-looping processes (ended by pid afterwards), runs one tiny-llama config in
this process and prints the median E2E with its 95% CI, what the interference watch saw (this run's CPUs, other
processes' CPUs, the share of the measured time above the threshold, load average) and the run flags. Expected:
the figures move with the hogs, and every run with a hog carries host_busy. Whether the run without hogs is quiet
depends on the machine (a shared one may be busy already, and is flagged so).

    python benchmarks/busy_machine.py [--hogs 0 1 2] [--sequence-length 32] [--new-tokens 32] [--iterations 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from tokbench.config import BenchmarkConfig
from tokbench.engine.runner import run

HOG = "import time\nend = time.monotonic() + 900\nwhile time.monotonic() < end:\n    pass\n"


def measure(hogs: int, config: BenchmarkConfig) -> str:
    processes = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(hogs)]
    try:
        time.sleep(0.5 if hogs else 0.0)
        result = run(config)
    finally:
        for process in processes:
            process.kill()
            process.wait()
    e2e = result.summary.get("e2e_latency_ms")
    record = result.interference
    if not result.ok or e2e is None or record is None:
        return f"{hogs} hog(s): {result.status} {result.reason}"
    low, high = e2e.median_ci or (float("nan"), float("nan"))
    load = f"{record.load_average_end:.1f}" if record.load_average_end is not None else "-"
    return (
        f"{hogs} hog(s): median E2E {e2e.median:,.1f} ms [{low:,.1f}, {high:,.1f}]; this run {record.own_cpu:.2f} "
        f"CPUs, others {record.other_cpu:.2f} of {record.cpus}, above {record.other_cpu_threshold:.2f} during "
        f"{record.busy_share:.0%} of the time, load average {load}; flags: {', '.join(result.flags) or 'none'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hogs", type=int, nargs="+", default=[0, 1, os.cpu_count() or 1])
    parser.add_argument("--sequence-length", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=10)
    args = parser.parse_args()
    config = BenchmarkConfig(
        model="tiny-llama", sequence_length=args.sequence_length, new_tokens=args.new_tokens, device="cpu",
        warmup_iterations=2, measurement_iterations=args.iterations, monitor=False,
    )  # fmt: skip
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for hogs in args.hogs:
        print(measure(hogs, config), flush=True)


if __name__ == "__main__":
    main()

"""How long does summarizing pooled ITL gaps take? Target: 400,000 gaps well under a second.

"after": ``analysis.summarize.summarize_samples`` (every statistic of the metric: percentiles, the
95% cluster-bootstrap CIs of the median / p90 / p95 / p99 over 1000 resamples of whole calls, CV,
IQR, outliers, the trend over per-call medians) on synthetic traces of CALLS calls x GAPS gaps, each
call at its own level (gaps of one call are correlated, as on a real machine); also the whole
``summarize_traces`` (every metric, samples built from the raw stamps). Median of --repeats runs.

"before": the pure-Python implementation this replaced, read from git (``git show REF:src/tokbench/
analysis/stats.py``, REF = --old-ref, default ``fa54975``, the last commit before the rewrite): its
percentiles, mean, std and ``bootstrap_intervals`` of the same four quantiles (the bulk of its
summarize; its trend and outlier tests are left out, so "before" is if anything too fast). It takes
minutes at 400,000, so it is timed at smaller n and extrapolated to 400,000 as n log n from the
largest n timed (each resample sorts n values), which the printout says.

    python benchmarks/stats_speed.py [--calls 500] [--gaps 800] [--repeats 5] [--old-sizes 2000,5000,10000]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tokbench.analysis.samples import metric_samples
from tokbench.analysis.stats import median
from tokbench.analysis.summarize import summarize_samples, summarize_traces
from tokbench.schema.records import GenerationTrace

NS_PER_MS = 1_000_000
QUANTILES = (50.0, 90.0, 95.0, 99.0)
OLD_STATS_PATH = "src/tokbench/analysis/stats.py"


def synthetic_traces(calls: int, gaps: int, seed: int = 0) -> list[GenerationTrace]:
    """Plain-path calls of one request: each call's gaps scatter around its own level (4 ms ± 5%)."""
    rng = np.random.default_rng(seed)
    traces, start = [], 0
    for level_ms in rng.normal(4.0, 0.2, size=calls):
        gap_ns = np.round((level_ms + rng.gamma(2.0, 0.05, size=gaps)) * NS_PER_MS).astype(np.int64)
        first = start + 10 * NS_PER_MS
        stamps = tuple(int(t) for t in first + np.concatenate([[0], np.cumsum(gap_ns)]))
        end = stamps[-1] + NS_PER_MS
        traces.append(GenerationTrace(start, end, (stamps,), (16,), (gaps + 1,), (1, 17 + gaps)))
        start = end + NS_PER_MS
    return traces


def timed_s(work: Callable[[], object], repeats: int = 1) -> tuple[float, float]:
    """Median wall time and median CPU time (s, all threads of this process) of ``repeats`` calls.

    On a shared, loaded machine the wall time includes waiting for a core; the CPU time does not.
    """
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter_ns(), time.process_time_ns()
        work()
        walls.append((time.perf_counter_ns() - wall) / 1e9)
        cpus.append((time.process_time_ns() - cpu) / 1e9)
    return median(walls), median(cpus)


def old_stats_module(ref: str) -> types.ModuleType | None:
    """The replaced pure-Python stats module, loaded from git; None when git cannot provide it."""
    root = Path(__file__).resolve().parent.parent
    try:
        source = subprocess.run(
            ["git", "show", f"{ref}:{OLD_STATS_PATH}"], cwd=root, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"before: cannot read {OLD_STATS_PATH} at {ref} from git ({type(error).__name__}); skipped")
        return None
    module = types.ModuleType("tokbench_old_stats")
    sys.modules[module.__name__] = module  # dataclasses look their module up while the class is built
    exec(compile(source, f"{ref}:{OLD_STATS_PATH}", "exec"), module.__dict__)  # our own file, from git
    return module


def old_summary(old: types.ModuleType, values: list[float]) -> None:
    for q in QUANTILES:
        old.percentile(values, q)
    old.mean(values)
    old.sample_std(values)
    old.bootstrap_intervals(values, QUANTILES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--gaps", type=int, default=800, help="ITL gaps per call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--old-ref", default="fa54975")
    parser.add_argument("--old-sizes", default="2000,5000,10000", help="n at which the old code is timed")
    args = parser.parse_args()

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (figures scale with machine load)")
    traces = synthetic_traces(args.calls, args.gaps)
    itl = metric_samples(traces)["itl_ms"]
    n = len(itl)
    print(f"pooled ITL gaps: {n:,} ({args.calls} calls x {args.gaps} gaps)")

    after_itl, after_itl_cpu = timed_s(lambda: summarize_samples(itl), args.repeats)
    after_all, after_all_cpu = timed_s(lambda: summarize_traces(traces), args.repeats)
    summary = summarize_samples(itl)
    print(
        f"after: ITL summary (cluster bootstrap, 1000 resamples): {after_itl:.3f} s wall, {after_itl_cpu:.3f} s CPU "
        f"(median of {args.repeats})"
    )
    print(
        f"after: summarize_traces, all 7 metrics from raw stamps: {after_all:.3f} s wall, {after_all_cpu:.3f} s CPU "
        f"(median of {args.repeats})"
    )
    low, high = summary.median_ci or (math.nan, math.nan)
    print(f"       ITL median {summary.median:.4f} ms, 95% CI {low:.4f} .. {high:.4f} ms")

    old = old_stats_module(args.old_ref)
    if old is None:
        return
    values = itl.values.tolist()
    sizes = [int(size) for size in args.old_sizes.split(",")]
    for size in sizes:
        before, before_cpu = timed_s(lambda size=size: old_summary(old, values[:size]))
        print(f"before: pure-Python summary statistics at n = {size:,}: {before:.2f} s wall, {before_cpu:.2f} s CPU")
    largest = sizes[-1]
    scale = n * math.log(n) / (largest * math.log(largest))
    print(
        f"before: at n = {n:,}: ~{before * scale:.0f} s wall, ~{before_cpu * scale:.0f} s CPU "
        f"(extrapolated as n log n from n = {largest:,}, not measured)"
    )
    print(f"speed-up at n = {n:,}: ~{before_cpu * scale / after_itl_cpu:,.0f}x in CPU time")


if __name__ == "__main__":
    main()

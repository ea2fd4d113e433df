"""Auto warmup + measurement vs the seeds' fixed 5 + 20: wall time and the precision each reaches.

For each preset (tiny, small) and each mode (eager, compiled on CPU), runs one config twice in this
process: once with ``warmup_iterations=auto, measurement_iterations=auto`` (the defaults: target ±1%
on the median E2E at 95% confidence, within the default bounds and budgets), once with 5 + 20.
Prints the wall time of warmup + measurement (the part the policies decide; loading and the cold
compile are the same for both), the iterations each ran, why auto stopped, and the half-width of
the 95% bootstrap CI of the median E2E latency each reached. Target: auto reaches ±1%, or says it
cannot, in no more wall time than the fixed plan.

    python benchmarks/auto_vs_fixed.py [--presets tiny-llama small-llama] [--modes eager compiled]
                                       [--sequence-length 64] [--new-tokens 32]
"""

from __future__ import annotations

import argparse
import time

from tokbench.config import BenchmarkConfig
from tokbench.engine.runner import run
from tokbench.schema.results import BenchmarkResult

NS_PER_S = 1e9


def policy_wall_s(result: BenchmarkResult) -> float:
    warmup, measurement = result.phases.warmup, result.phases.measurement
    assert warmup is not None and measurement is not None
    return (warmup.elapsed_ns + measurement.elapsed_ns) / NS_PER_S


def describe(label: str, result: BenchmarkResult, total_s: float) -> str:
    if not result.ok:
        return f"  {label:<6} {result.status}: {result.reason}"
    warmup, measurement = result.phases.warmup, result.phases.measurement
    assert warmup is not None and measurement is not None
    precision = measurement.relative_precision
    steady = {True: "steady", False: "NOT steady", None: "untested"}[warmup.steady_state]
    return (
        f"  {label:<6} warmup {warmup.iterations:>3} ({steady}, {warmup.stop_reason})  "
        f"measure {measurement.iterations:>3} ({measurement.stop_reason})  "
        f"CI ±{(precision or float('nan')):.2%}  policy wall {policy_wall_s(result):6.1f} s  (run {total_s:5.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny-llama", "small-llama"])
    parser.add_argument("--modes", nargs="+", choices=["eager", "compiled"], default=["eager", "compiled"])
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args()
    print("auto = warmup auto + measurement auto (config defaults); fixed = 5 + 20")
    for preset in args.presets:
        for mode in args.modes:
            base = BenchmarkConfig(
                model=preset,
                device="cpu",
                sequence_length=args.sequence_length,
                new_tokens=args.new_tokens,
                compile_mode="default" if mode == "compiled" else None,
            )
            print(f"{preset} {mode} (s{args.sequence_length} n{args.new_tokens})")
            for label, config in (
                ("auto", base),
                ("fixed", base.replace(warmup_iterations=5, measurement_iterations=20)),
            ):
                start = time.perf_counter()
                result = run(config, progress=False)
                print(describe(label, result, time.perf_counter() - start), flush=True)


if __name__ == "__main__":
    main()

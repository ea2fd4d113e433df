"""How much slower is the first (validation) call than the calls after it, with and without torch.compile?

The test suite checks that the validation call is the one that compiles (dynamo's graph counts); how much slower
it is is a timing, which a shared machine changes, so it is printed here instead. For each mode, one real run of
the tiny preset: the cold call, the median of the warmup and measured calls after it, and their ratio.

    python benchmarks/cold_call.py [--model tiny-llama] [--new-tokens 6] [--batch-size 2]
"""

from __future__ import annotations

import argparse
import os
import statistics

import tokbench
from tokbench.config import BenchmarkConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--sequence-length", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for compile_mode in (None, "default"):
        config = BenchmarkConfig(
            model=args.model,
            sequence_length=args.sequence_length,
            new_tokens=args.new_tokens,
            batch_size=args.batch_size,
            device=args.device,
            compile_mode=compile_mode,
            warmup_iterations=5,
            measurement_iterations=5,
            monitor=False,
        )
        result = tokbench.run(config, progress=False)
        if not result.ok or result.phases.cold_call_ns is None:
            print(f"compile {compile_mode or 'off'}: {result.status}: {result.reason}")
            continue
        later = [*result.phases.warmup_curve_ns, *(trace.e2e_ns for trace in result.iterations)]
        cold_ms, later_ms = result.phases.cold_call_ns / 1e6, statistics.median(later) / 1e6
        print(
            f"compile {compile_mode or 'off'}: cold call {cold_ms:,.1f} ms, median later call {later_ms:,.1f} ms "
            f"({len(later)} calls), ratio {cold_ms / later_ms:,.1f}x"
        )


if __name__ == "__main__":
    main()

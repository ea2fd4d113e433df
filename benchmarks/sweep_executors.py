"""Sweep wall times by executor and load sharing; prints figures, asserts nothing.

1. shared load vs one load per config: 8 small-llama configs (batch 1/2/4/8 × plain/continuous batching),
   local executor, process launcher; the same sweep with ``share_load`` on (batch size and continuous
   batching need no reload: one load group of 8) and off (8 loads).
2. Ray vs the local process launcher: the same N tiny-llama configs, one load each, spawned children on
   both sides; Ray runs them one at a time (each task reserves the local cluster's 2 CPUs) on a local
   cluster started before the clock starts. Per-config overhead = (Ray wall − local wall) / N, relative to
   the local wall per config (goal: ≤ 5%).
3. ``--parallel 2`` vs 1: N tiny-llama configs, one load each, on this machine.

Each sweep writes a fresh store in a temporary folder. The order alternates over ``--rounds``; the figure
is the median of the rounds.

    python benchmarks/sweep_executors.py [--rounds 1] [--tiny-configs 4] [--skip ray]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tokbench.sweep.runner import run_sweep

SMALL = {
    "model": "small-llama",
    "sequence_length": 32,
    "new_tokens": 16,
    "warmup_iterations": 2,
    "measurement_iterations": 3,
    "device": "cpu",
    "monitor": False,
    "batch_size": [1, 2, 4, 8],
    "continuous_batching": [False, True],
}


def tiny(configs: int) -> dict[str, Any]:
    return {
        "model": "tiny-llama",
        "sequence_length": 32,
        "new_tokens": 16,
        "warmup_iterations": 2,
        "measurement_iterations": 3,
        "device": "cpu",
        "monitor": False,
        "batch_size": list(range(1, configs + 1)),
    }


def timed_sweep(spec: dict[str, Any], **options: Any) -> float:
    with tempfile.TemporaryDirectory(prefix="tokbench-bench-") as folder:
        start = time.perf_counter()
        outcome = run_sweep(spec, db=Path(folder) / "results.db", progress=False, **options)
        elapsed = time.perf_counter() - start
    results = [entry.result for entry in outcome.entries if entry.result is not None]
    failed = [result.reason for result in results if not result.ok]
    if failed:
        raise SystemExit(f"a benchmark config failed: {failed[0]}")
    # Distinct loads: a shared load is reported by every config of its worker, count it once.
    loads: dict[Any, int] = {}
    for index, result in enumerate(results):
        load = result.phases.load
        key = ("worker", result.launch.pid) if load.shared else index
        loads[key] = (load.tokenizer_ns or 0) + (load.weights_ns or 0) + (load.to_device_ns or 0)
    print(
        f"    [{', '.join(f'{key}={value}' for key, value in options.items())}] {elapsed:.2f} s wall, "
        f"{len(loads)} load(s) taking {sum(loads.values()) / 1e9:.2f} s in all",
        flush=True,
    )
    return elapsed


def compare(rounds: int, first: Callable[[], float], second: Callable[[], float]) -> tuple[float, float]:
    times: tuple[list[float], list[float]] = ([], [])
    for round_index in range(rounds):
        order = (0, 1) if round_index % 2 == 0 else (1, 0)
        for side in order:
            times[side].append((first, second)[side]())
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--tiny-configs", type=int, default=4)
    parser.add_argument("--skip", action="append", default=[], choices=("shared", "ray", "parallel"))
    args = parser.parse_args()

    if "shared" not in args.skip:
        shared, alone = compare(
            args.rounds,
            lambda: timed_sweep(SMALL, share_load=True),
            lambda: timed_sweep(SMALL, share_load=False),
        )
        print("8 small-llama configs (batch 1/2/4/8 x plain/continuous), local executor, forkserver children:")
        print(f"  shared load (1 group of 8): {shared:8.2f} s")
        print(f"  one load per config:        {alone:8.2f} s   ({(alone - shared) / alone:+.1%} saved by sharing)")

    tiny_spec = tiny(args.tiny_configs)
    n = args.tiny_configs
    if "ray" not in args.skip:
        import ray

        ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False, object_store_memory=100 << 20)
        try:
            local, on_ray = compare(
                args.rounds,
                lambda: timed_sweep(tiny_spec, share_load=False, start_method="spawn"),
                lambda: timed_sweep(tiny_spec, share_load=False, executor="ray", cpus_per_config=2),
            )
        finally:
            ray.shutdown()
        overhead = (on_ray - local) / n
        print(f"{n} tiny-llama configs, one load each, spawned children, one at a time:")
        print(f"  local process launcher: {local:7.1f} s ({local / n:.2f} s per config)")
        print(f"  ray executor:           {on_ray:7.1f} s ({on_ray / n:.2f} s per config)")
        print(f"  ray overhead per config: {overhead:+.2f} s = {overhead / (local / n):+.1%} of a config (goal <= 5%)")

    if "parallel" not in args.skip:
        one, two = compare(
            args.rounds,
            lambda: timed_sweep(tiny_spec, share_load=False),
            lambda: timed_sweep(tiny_spec, share_load=False, parallel=2),
        )
        print(f"{n} tiny-llama configs, one load each, forkserver children:")
        print(f"  --parallel 1: {one:7.1f} s")
        print(f"  --parallel 2: {two:7.1f} s   (speed-up x{one / two:.2f})")


if __name__ == "__main__":
    main()

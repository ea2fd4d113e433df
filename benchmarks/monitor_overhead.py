"""What does hardware monitoring cost the measurement? Target: decode tok/s with monitoring >= 0.99 x without.

Same model, inputs and process. Each round makes two ``time_generate`` calls in alternating order:
- monitored: the runner's monitoring exactly (``Sampler.for_device`` sampling on its thread at the given
  interval, ``PeakMemoryTracker`` resetting and reading the peak around the call);
- bare: the same call with no sampler and no tracker.
Decode tok/s comes from each call's own token stamps, so the sampler's start and stop (outside the
call) do not count, exactly as in a run, where it starts once before the measured loop.

Also printed: the cost of one sample, timed directly, as a fraction of the interval (the share of
one core the sampler thread takes).

    python benchmarks/monitor_overhead.py [--model small-llama] [--rounds 20] [--interval-ms 50]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from tokbench.analysis.metrics import decode_throughput
from tokbench.analysis.stats import bootstrap_intervals, median
from tokbench.config import BenchmarkConfig
from tokbench.engine.generation import time_generate
from tokbench.engine.loading import benchmark_mode, load
from tokbench.hardware.monitor import DEFAULT_INTERVAL_MS, HostBackend, PeakMemoryTracker, Sampler
from tokbench.schema.records import GenerationTrace


def sample_cost_ns(samples: int = 2000) -> float:
    backend = HostBackend()
    backend.open()
    start = time.perf_counter_ns()
    for _ in range(samples):
        backend.read()
    return (time.perf_counter_ns() - start) / samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="small-llama")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--interval-ms", type=int, default=DEFAULT_INTERVAL_MS)
    args = parser.parse_args()

    config = BenchmarkConfig(
        model=args.model,
        batch_size=args.batch_size,
        sequence_length=args.sequence_length,
        new_tokens=args.new_tokens,
        device="auto",
    )
    loaded = load(config)

    def generate_once() -> GenerationTrace:
        inputs = loaded.inputs
        return time_generate(
            loaded.model, inputs.input_ids, inputs.attention_mask, loaded.generation_config, config.new_tokens
        )

    monitored: list[float] = []
    bare: list[float] = []
    samples_per_call: list[int] = []

    def monitored_call() -> None:
        sampler = Sampler.for_device(loaded.device, args.interval_ms)
        tracker = PeakMemoryTracker(loaded.device)
        with sampler:
            trace = tracker.wrap(generate_once)()
        assert sampler.record is not None
        host = sampler.record.get("host")
        samples_per_call.append(len(host.timestamps_ns) if host is not None else 0)
        monitored.append(decode_throughput(trace))

    def bare_call() -> None:
        bare.append(decode_throughput(generate_once()))

    calls: list[Callable[[], None]] = [monitored_call, bare_call]
    with benchmark_mode(loaded.model):
        for call in calls * 2:  # warm both paths
            call()
        for sample in (monitored, bare, samples_per_call):
            sample.clear()
        for round_index in range(args.rounds):
            order = calls if round_index % 2 == 0 else calls[::-1]
            for call in order:
                call()

    paired = [m / b for m, b in zip(monitored, bare, strict=True)]
    low, high = bootstrap_intervals(paired, [50.0])[0]  # 95% CI of the median
    ratio = median(monitored) / median(bare)
    cost_ns = sample_cost_ns()
    print(
        f"model {config.model} on {loaded.device}, batch {config.batch_size}, prompt {config.sequence_length}, "
        f"new tokens {config.new_tokens}, {args.rounds} interleaved rounds, interval {args.interval_ms} ms, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(
        f"decode tok/s (median): monitored {median(monitored):9.1f}  bare {median(bare):9.1f}  "
        f"ratio {ratio:.4f}"
    )
    print(
        f"decode tok/s ratio, paired per round: median {median(paired):.4f}, "
        f"95% bootstrap CI [{low:.4f}, {high:.4f}]"
    )
    print(f"samples per monitored call (median): {median(samples_per_call):.0f}")
    print(
        f"one host sample costs {cost_ns / 1000:.1f} µs = {cost_ns / (args.interval_ms * 1e6):.2e} of the interval "
        "(the sampler thread's share of one core)"
    )
    # Judged on the paired ratio: both calls of a round share the machine's state, so drift between rounds
    # (±20% here) cancels; the ratio of the two medians does not cancel it.
    paired_median = median(paired)
    verdict = "met" if paired_median >= 0.99 else "NOT met"
    if low >= 0.99:
        certainty = "the CI's lower bound is above 0.99: shown"
    elif high < 0.99:
        certainty = "the whole CI is below 0.99: monitoring costs more than 1%"
    else:
        certainty = "the CI straddles 0.99: this machine's noise is wider than the effect; more rounds tighten it"
    print(f"target paired ratio >= 0.99: {verdict} ({certainty})")


if __name__ == "__main__":
    main()

"""How much does tokbench's per-token timing cost? Target: tokbench decode tok/s >= 0.99 x a bare loop.

Same model, inputs, generation settings and process. Each round makes three calls in a rotating
order, so drift and the ±20% block-to-block noise of a shared 2-core machine hit all sides alike:
- tokbench: ``time_generate`` exactly as the runner calls it (streamer, a stamp per token);
- bare N: ``model.generate`` of N new tokens, timed by hand with ``perf_counter_ns``;
- bare 1: the same with 1 new token.
A hand-timed loop has no per-token stamps, so its decode rate is B*(N-1) / (median E2E(N) -
median E2E(1)); overall tok/s (B*N / E2E) needs no such subtraction and is compared too.

    python benchmarks/overhead.py [--model tiny-llama] [--rounds 40] [--new-tokens 128]
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch

from tokbench.analysis.metrics import decode_throughput
from tokbench.analysis.stats import bootstrap_intervals, median
from tokbench.config import BenchmarkConfig
from tokbench.engine.generation import TimestampStreamer, time_generate
from tokbench.engine.loading import LoadedModel, benchmark_mode, load


def bare_call(loaded: LoadedModel, generation_config: object) -> int:
    start = time.perf_counter_ns()
    loaded.model.generate(
        input_ids=loaded.inputs.input_ids,
        attention_mask=loaded.inputs.attention_mask,
        generation_config=generation_config,
    )
    return time.perf_counter_ns() - start


def streamer_cost_ns(calls: int = 100_000) -> float:
    """What tokbench adds per generated token, timed directly: one ``put`` of a ``[batch]`` tensor."""
    streamer = TimestampStreamer()
    step_tokens = torch.zeros(1, dtype=torch.long)
    streamer.put(torch.zeros(1, 8, dtype=torch.long))  # the prompt
    start = time.perf_counter_ns()
    for _ in range(calls):
        streamer.put(step_tokens)
    return (time.perf_counter_ns() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()

    config = BenchmarkConfig(
        model=args.model,
        batch_size=args.batch_size,
        sequence_length=args.sequence_length,
        new_tokens=args.new_tokens,
        device="auto",
    )
    loaded = load(config)
    one_token = copy.deepcopy(loaded.generation_config)
    one_token.max_new_tokens = 1

    tokbench_decode: list[float] = []
    tokbench_e2e: list[int] = []
    bare_n: list[int] = []
    bare_1: list[int] = []

    def tokbench_call() -> None:
        trace = time_generate(
            loaded.model,
            loaded.inputs.input_ids,
            loaded.inputs.attention_mask,
            loaded.generation_config,
            config.new_tokens,
        )
        tokbench_decode.append(decode_throughput(trace))
        tokbench_e2e.append(trace.e2e_ns)

    calls: list[Callable[[], None]] = [
        tokbench_call,
        lambda: bare_n.append(bare_call(loaded, loaded.generation_config)),
        lambda: bare_1.append(bare_call(loaded, one_token)),
    ]
    # Both sides run under the same neutral generation settings tokbench measures with.
    with benchmark_mode(loaded.model):
        for call in calls * 3:  # warm every path
            call()
        for sample in (tokbench_decode, tokbench_e2e, bare_n, bare_1):
            sample.clear()
        for round_index in range(args.rounds):
            shift = round_index % len(calls)
            for call in calls[shift:] + calls[:shift]:
                call()

    batch, new = config.batch_size, config.new_tokens
    # Paired per round: the tokbench call and the bare N-token call of the same round.
    paired_ratios = [bare / timed for timed, bare in zip(tokbench_e2e, bare_n, strict=True)]
    low, high = bootstrap_intervals(paired_ratios, [50.0])[0]  # 95% CI of the median
    put_ns = streamer_cost_ns()
    bare_decode = batch * (new - 1) * 1e9 / (median(bare_n) - median(bare_1))
    tokbench_decode_median = median(tokbench_decode)
    bare_overall = batch * new * 1e9 / median(bare_n)
    tokbench_overall = batch * new * 1e9 / median(tokbench_e2e)
    decode_ratio = tokbench_decode_median / bare_decode
    overall_ratio = tokbench_overall / bare_overall
    print(
        f"model {config.model} on {loaded.device}, batch {batch}, prompt {config.sequence_length}, "
        f"new tokens {new}, {args.rounds} interleaved rounds, torch threads {torch.get_num_threads()}"
    )
    print(f"decode  tok/s (median): tokbench {tokbench_decode_median:9.1f}  bare {bare_decode:9.1f}  "
          f"ratio {decode_ratio:.4f}")  # fmt: skip
    print(f"overall tok/s (median): tokbench {tokbench_overall:9.1f}  bare {bare_overall:9.1f}  "
          f"ratio {overall_ratio:.4f}")  # fmt: skip
    print(f"overall tok/s ratio, paired per round: median {median(paired_ratios):.4f}, "
          f"95% bootstrap CI [{low:.4f}, {high:.4f}]")  # fmt: skip
    tpot_ns = (median(bare_n) - median(bare_1)) / (new - 1)
    print(f"streamer cost: {put_ns:.0f} ns per token = {put_ns / tpot_ns:.2e} of a {tpot_ns / 1e6:.2f} ms decode "
          f"step: the ratio this adds is {1 - put_ns / tpot_ns:.5f}")  # fmt: skip
    print(f"target decode ratio >= 0.99: {'met' if decode_ratio >= 0.99 else 'NOT met'}"
          f"{'' if low <= 1 <= high else ' (paired CI excludes 1.0)'}")  # fmt: skip


if __name__ == "__main__":
    main()

"""How much faster are generate calls under torch.inference_mode than under no_grad (tokbench's old mode)?

Same model, inputs, generation settings and process; each round makes one call per mode through
``time_generate`` (exactly as the runner calls it), alternating which goes first, so drift and the
block-to-block noise of a shared machine hit both alike. Prints the median E2E and decode tok/s per mode
and the per-round paired ratio no_grad E2E / inference_mode E2E (> 1: inference_mode is faster) with the
95% bootstrap CI of its median. The default (dynamic) cache is made afresh each call, so the two modes can
share one model; a static cache or compile would need one model per mode.

    python benchmarks/grad_mode.py [--model tiny-llama] [--rounds 40] [--new-tokens 64] [--batch-size 1]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from tokbench.analysis.metrics import decode_throughput
from tokbench.analysis.stats import bootstrap_intervals
from tokbench.config import GRAD_MODES, BenchmarkConfig
from tokbench.engine.generation import time_generate
from tokbench.engine.loading import benchmark_mode, load
from tokbench.schema.records import GenerationTrace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    config = BenchmarkConfig(
        model=args.model,
        batch_size=args.batch_size,
        sequence_length=args.sequence_length,
        new_tokens=args.new_tokens,
        dtype=args.dtype,
        device=args.device,
    )
    loaded = load(config)
    traces: dict[str, list[GenerationTrace]] = {mode: [] for mode in GRAD_MODES}

    def call(mode: str) -> GenerationTrace:
        inputs = loaded.inputs
        return time_generate(
            loaded.model,
            inputs.input_ids,
            inputs.attention_mask,
            loaded.generation_config,
            config.new_tokens,
            grad_mode=mode,
        )

    with benchmark_mode(loaded.model):
        for _ in range(3):  # warm both paths
            for mode in GRAD_MODES:
                call(mode)
        for round_index in range(args.rounds):
            order = GRAD_MODES if round_index % 2 == 0 else GRAD_MODES[::-1]
            for mode in order:
                traces[mode].append(call(mode))

    inference, no_grad = (traces[mode] for mode in GRAD_MODES)
    ratios = [slow.e2e_ns / fast.e2e_ns for fast, slow in zip(inference, no_grad, strict=True)]
    low, high = bootstrap_intervals(ratios, [50.0])[0]  # 95% CI of the median
    print(
        f"model {config.model} on {loaded.device}, {config.dtype}, batch {config.batch_size}, "
        f"prompt {config.sequence_length}, new tokens {config.new_tokens}, {args.rounds} interleaved rounds, "
        f"torch threads {torch.get_num_threads()}"
    )
    for mode in GRAD_MODES:
        e2e_ms = statistics.median(trace.e2e_ns for trace in traces[mode]) / 1e6
        decode = statistics.median(decode_throughput(trace) for trace in traces[mode])
        print(f"{mode:>15}: median E2E {e2e_ms:9.2f} ms, median decode {decode:9.1f} tok/s")
    print(
        f"per-call ratio no_grad E2E / inference_mode E2E, paired per round: median {statistics.median(ratios):.4f}, "
        f"95% bootstrap CI [{low:.4f}, {high:.4f}]"
        + ("" if low <= 1 <= high else (" (inference_mode faster)" if low > 1 else " (no_grad faster)"))
    )


if __name__ == "__main__":
    main()

"""Plain generate vs continuous batching on the same workload: R requests of mixed prompt lengths.

Both runs go through ``tokbench.run`` with the same config except ``continuous_batching``: the plain
path left-pads the requests into one lockstep batch, the continuous-batching path submits them to a
manager built once outside the timed region. Prints each path's median overall / decode tok/s,
TTFT and E2E, and the manager's one-time setup (which is in no iteration).

    python benchmarks/continuous_batching.py [--model tiny-llama] [--requests 8] [--min 4] [--max 24]
                                             [--new-tokens 32] [--iterations 10] [--threads N]
"""

from __future__ import annotations

import argparse

import torch

import tokbench
from tokbench.analysis.metrics import NS_PER_MS
from tokbench.config import BenchmarkConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--min", type=int, default=4, help="shortest prompt")
    parser.add_argument("--max", type=int, default=24, help="longest prompt")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    base = BenchmarkConfig(
        model=args.model,
        batch_size=args.requests,
        sequence_length={"distribution": "uniform", "min": args.min, "max": args.max, "seed": 0},
        new_tokens=args.new_tokens,
        dtype=args.dtype,
        device=args.device,
        warmup_iterations=args.warmup,
        measurement_iterations=args.iterations,
        monitor=False,
    )
    print(f"{args.requests} requests, prompt lengths {base.prompt_lengths}, {args.new_tokens} new tokens each")
    print(f"torch threads {torch.get_num_threads()}, {args.iterations} measured iterations after {args.warmup} warmup")
    header = f"{'path':<22}{'overall tok/s':>15}{'decode tok/s':>14}{'TTFT ms':>10}{'E2E ms':>10}  setup"
    print(header)
    for label, continuous in (("plain generate", False), ("continuous batching", True)):
        result = tokbench.run(base.replace(continuous_batching=continuous), progress=False)
        if not result.ok:
            print(f"{label:<22}{result.status}: {result.reason}")
            continue
        summary = result.summary
        setup = result.phases.continuous_batching_setup
        setup_text = f"{setup.elapsed_ns / NS_PER_MS:.1f} ms (not in any iteration)" if setup else "-"
        print(
            f"{label:<22}{summary['overall_throughput_tok_s'].median:>15,.1f}"
            f"{summary['decode_throughput_tok_s'].median:>14,.1f}{summary['ttft_ms'].median:>10.2f}"
            f"{summary['e2e_latency_ms'].median:>10.2f}  {setup_text}"
        )


if __name__ == "__main__":
    main()

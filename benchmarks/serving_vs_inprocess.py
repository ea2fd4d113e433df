"""The same tiny model measured in-process (``tokbench run``) and over HTTP (``transformers serve`` on loopback),
one request at a time, same prompt and output lengths, same definitions: what the server and HTTP add.

In-process and HTTP runs alternate for a few rounds (the server idles while the in-process run measures), so a
drift of the machine's load falls on both. The served copy is the preset with the same seeded weights (its output
rows of unprintable ids zeroed, which changes no shape and so no timing: ``serving.launch.save_preset``), float32
on the CPU, greedy, exactly N tokens.

    .venv/bin/python benchmarks/serving_vs_inprocess.py [--input 32] [--output 32] [--requests 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from tokbench import BenchmarkConfig, run
from tokbench.schema.serving import LengthSpec, ServingSettings
from tokbench.serving.launch import transformers_serve_preset
from tokbench.serving.runner import ServingRun, run_serving

METRICS = (("ttft_ms", "TTFT ms"), ("tpot_ms", "TPOT ms"), ("itl_ms", "ITL ms"), ("e2e_latency_ms", "E2E ms"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny-llama")
    parser.add_argument("--input", type=int, default=32)
    parser.add_argument("--output", type=int, default=32)
    parser.add_argument("--requests", type=int, default=8, help="per round and side")
    parser.add_argument("--rounds", type=int, default=3, help="in-process and HTTP alternate, so load drifts hit both")
    parser.add_argument("--continuous-batching", action="store_true")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}, {os.cpu_count()} CPUs")
    config = BenchmarkConfig(model=args.preset, batch_size=1, sequence_length=args.input, new_tokens=args.output,
                             dtype="float32", device="cpu", warmup_iterations=2,
                             measurement_iterations=args.requests, monitor=False)  # fmt: skip
    served_name = "transformers serve" + (" --continuous-batching" if args.continuous_batching else "")
    medians: dict[str, dict[str, list[float]]] = {"in-process": {}, served_name: {}}
    with transformers_serve_preset(args.preset, continuous_batching=args.continuous_batching) as (server, folder):
        settings = ServingSettings(api="completions", model=args.preset, load="concurrency", concurrency=1,
                                   requests=args.requests, warmup_requests=2,
                                   input_tokens=LengthSpec("fixed", value=args.input),
                                   output_tokens=LengthSpec("fixed", value=args.output))  # fmt: skip
        for _ in range(args.rounds):  # the server sits idle while the in-process run measures, and the reverse
            local = run(config)
            served = run_serving(ServingRun(server.url, settings, served_model=str(folder), tokenizer=str(folder)))
            assert local.ok and served.ok, (local.reason, served.reason)
            for name, result in (("in-process", local), (served_name, served)):
                for metric, _ in METRICS:
                    medians[name].setdefault(metric, []).append(result.summary[metric].median)
    print(f"{args.preset}, prompt {args.input} tokens, {args.output} new tokens, one request at a time, "
          f"{args.rounds} alternating rounds of {args.requests}; median of the rounds' medians [min, max]:")
    print(f"{'':40s}" + "".join(f"{label:>26s}" for _, label in METRICS))
    for name, per_metric in medians.items():
        cells = [f"{statistics.median(v):9.3f} [{min(v):.3g}, {max(v):.3g}]" for v in per_metric.values()]
        print(f"{name:40s}" + "".join(f"{cell:>26s}" for cell in cells))
    base, other = medians["in-process"], medians[served_name]
    first = statistics.median(b - a for a, b in zip(base["ttft_ms"], other["ttft_ms"], strict=True))
    token = statistics.median(b - a for a, b in zip(base["tpot_ms"], other["tpot_ms"], strict=True))
    print(f"{served_name} adds {first:.2f} ms to the first token and {token:.3f} ms per later token "
          "(median of the per-round differences)")
    print(f"load average after {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

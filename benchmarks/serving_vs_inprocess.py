"""The same tiny model measured in-process (``tokbench run``) and over HTTP (``transformers serve`` on loopback),
one request at a time, same prompt and output lengths, same definitions: what the server and HTTP add.

The served copy is the preset with the same seeded weights (its output rows of unprintable ids zeroed, which
changes no shape and so no timing: ``serving.launch.save_preset``), float32 on the CPU, greedy, exactly N tokens.

    .venv/bin/python benchmarks/serving_vs_inprocess.py [--input 32] [--output 32] [--requests 20]
"""

from __future__ import annotations

import argparse
import os
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
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}, {os.cpu_count()} CPUs")
    config = BenchmarkConfig(model=args.preset, batch_size=1, sequence_length=args.input, new_tokens=args.output,
                             dtype="float32", device="cpu", warmup_iterations=3,
                             measurement_iterations=args.requests, monitor=False)  # fmt: skip
    local = run(config)
    rows = {"in-process": local.summary}
    for cb in (False, True):
        with transformers_serve_preset(args.preset, continuous_batching=cb) as (server, folder):
            settings = ServingSettings(api="completions", model=args.preset, load="concurrency", concurrency=1,
                                       requests=args.requests, warmup_requests=3,
                                       input_tokens=LengthSpec("fixed", value=args.input),
                                       output_tokens=LengthSpec("fixed", value=args.output))  # fmt: skip
            served = run_serving(ServingRun(server.url, settings, served_model=str(folder), tokenizer=str(folder)))
            assert served.ok, served.reason
            rows["transformers serve" + (" --continuous-batching" if cb else "")] = served.summary
    print(f"{args.preset}, prompt {args.input} tokens, {args.output} new tokens, one request at a time, medians "
          f"(95% CI half-width):")  # fmt: skip
    print(f"{'':40s}" + "".join(f"{label:>20s}" for _, label in METRICS))
    for name, summary in rows.items():
        cells = []
        for metric, _ in METRICS:
            s = summary[metric]
            precision = s.median_relative_precision
            cells.append(f"{s.median:10.3f} ±{precision:5.1%}" if precision is not None else f"{s.median:10.3f}")
        print(f"{name:40s}" + "".join(f"{cell:>20s}" for cell in cells))
    base = rows["in-process"]
    for name, summary in list(rows.items())[1:]:
        extra_first = summary["ttft_ms"].median - base["ttft_ms"].median
        extra_token = summary["tpot_ms"].median - base["tpot_ms"].median
        print(f"{name}: adds {extra_first:.2f} ms to the first token and {extra_token:.3f} ms per later token")
    return 0


if __name__ == "__main__":
    sys.exit(main())

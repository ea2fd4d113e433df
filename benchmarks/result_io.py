"""How long do saving and loading a large result take? The generic serializer checks every value's type.

Builds one synthetic result (every iteration a full batch of raw token stamps, no model needed), then
times ``save_result`` and ``load_result`` (median of a few repeats) and prints the figures. Run it on
another tokbench tree with PYTHONPATH=that/src to compare.

    python benchmarks/result_io.py [--iterations 200] [--batch 8] [--tokens 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tokbench.config import BenchmarkConfig
from tokbench.schema.records import GenerationTrace
from tokbench.schema.results import BenchmarkResult, load_result, save_result


def synthetic_result(iterations: int, batch: int, tokens: int) -> BenchmarkResult:
    start = 10**15
    traces = []
    for i in range(iterations):
        t0 = start + i * 10**9
        rows = tuple(tuple(t0 + 1_000_000 + 3_000 * k + r for k in range(tokens)) for r in range(batch))
        traces.append(
            GenerationTrace(
                t0_ns=t0,
                end_ns=rows[-1][-1] + 1,
                token_timestamps_ns=rows,
                prompt_tokens=(128,) * batch,
                generated_tokens=(tokens,) * batch,
                output_shape=(batch, 128 + tokens),
            )
        )
    config = BenchmarkConfig(batch_size=batch, new_tokens=tokens)
    return BenchmarkResult(config=config, status="ok", iterations=tuple(traces))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    result = synthetic_result(args.iterations, args.batch, args.tokens)
    stamps = args.iterations * args.batch * args.tokens
    save_s, load_s = [], []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "result.json"
        for _ in range(args.repeats):
            start = time.perf_counter()
            save_result(result, path)
            save_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            loaded = load_result(path)
            load_s.append(time.perf_counter() - start)
        size = path.stat().st_size
    assert loaded == result
    print(f"result: {args.iterations} iterations x {args.batch} rows x {args.tokens} tokens = {stamps:,} stamps, "
          f"{size / 2**20:.1f} MiB JSON")
    print(f"save_result median {statistics.median(save_s) * 1e3:.0f} ms, load_result median "
          f"{statistics.median(load_s) * 1e3:.0f} ms ({args.repeats} repeats)")


if __name__ == "__main__":
    main()

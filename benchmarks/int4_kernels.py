"""Int4 kernels vs a dense bfloat16 matmul on this machine, and how good the tuner's pick is.

    python benchmarks/int4_kernels.py [--quick]

For layer shapes 4096x11008 and 4096x4096 (in x out), bfloat16 activations, M = 1 (decode) and
M = 512 (prefill), it prints the dense time, every int4 kernel's time (an exhaustive, careful
round-robin timing of all candidates together with dense), the tuner's choice (a separate, normal
tuning run with a fresh cache), and checks the issue's targets:

* tuned int4 decode (M = 1) at least 3.7x faster than dense bf16;
* tuned int4 prefill (M = 512) at most 1.2x slower than dense bf16;
* the tuner's pick within 3 % of the best candidate of the exhaustive timing.

Times are medians of interleaved rounds (IQR shown); the pick is judged on the exhaustive timing, not
on the tuner's own (shorter) measurement.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn

from tokbench.hardware.warmup import device_warmup
from tokbench.quant import KernelChoice, QuantizedLinear, candidate_choices, run_kernel
from tokbench.quant.tune import ClockTimer, HighDispersionWarning, candidate_timing, measure_round_robin, tune_model
from tokbench.schema.quant import CandidateTiming

SHAPES = ((4096, 11008), (4096, 4096))
MS = (1, 512)
DECODE_TARGET = 3.7  # dense / int4 at M = 1, at least
PREFILL_TARGET = 1.2  # int4 / dense at M = 512, at most
PICK_TARGET = 0.03  # pick's median over the best median, minus 1, at most
# Larger than any last-level cache this is likely to run on (this host: 32 MiB L3): a 4096x4096 bf16
# weight is 32 MiB and would otherwise be partly served from cache between calls, unlike in a model.
FLUSH_BYTES = 128 * 1024 * 1024


def _loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def _ms(ns: float) -> str:
    return f"{ns / 1e6:9.3f} ms"


def _cache_flusher(flush: bool) -> Callable[[], object] | None:
    """Overwrite a buffer twice the size of the last-level cache before each timed call (untimed)."""
    if not flush:
        return None
    buffer = torch.empty(FLUSH_BYTES, dtype=torch.uint8)
    return lambda: buffer.fill_(1)


def _careful(
    calls: dict[str, Callable[[], object]], budget_s: float, min_rounds: int, timer: ClockTimer
) -> dict[str, CandidateTiming]:
    names = list(calls)
    samples, _ = measure_round_robin(
        [calls[n] for n in names], timer, int(budget_s * 1e9), min_rounds=min_rounds, max_rounds=2000
    )
    return {n: candidate_timing(KernelChoice(n), s) for n, s in zip(names, samples, strict=True)}


def run(quick: bool, threads: int | None, flush: bool) -> int:
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    device = torch.device("cpu")
    dtype = torch.bfloat16
    budget_scale = 0.25 if quick else 1.0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bfloat16, group size 128")
    print(
        f"caches {'flushed (128 MiB written, untimed)' if flush else 'NOT flushed'} before each timed call, "
        "in the exhaustive timings and in the tuner alike (its pick is compared with them)"
    )
    # One timer for both, so the tuner's medians and the exhaustive ones are measured the same way.
    timer = ClockTimer(device, before_call=_cache_flusher(flush))
    print(f"load average at start: {_loadavg()} (other processes on these cores distort every timing)")
    warmup = device_warmup(device, 1.0)
    print(f"device warmup: {warmup.matmuls} matmuls in {warmup.elapsed_ns / 1e9:.2f} s\n")
    all_met = True
    for in_features, out_features in SHAPES:
        linear = nn.Linear(in_features, out_features, bias=False)
        with torch.no_grad():
            linear.weight.normal_(0.0, 0.02)
        linear = linear.to(dtype)
        dense_weight_t = linear.weight.detach().t()
        layer = QuantizedLinear.from_linear(linear, 128)
        for m in MS:
            title = f"{in_features} x {out_features}, M = {m}"
            print(f"=== {title} ===")
            x = torch.randn(m, in_features).to(dtype)
            choices = candidate_choices(layer, device, dtype)
            calls: dict[str, Callable[[], object]] = {"dense": lambda x=x, w=dense_weight_t: torch.matmul(x, w)}
            for choice in choices:
                calls[choice.label] = lambda x=x, c=choice, q=layer: run_kernel(q, x, c)
            with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", HighDispersionWarning)
                budget = (4.0 if m == 1 else 16.0) * budget_scale
                exhaustive = _careful(calls, budget, min_rounds=5 if quick else 7, timer=timer)
                reference = _careful(
                    {"reference": lambda x=x, q=layer: run_kernel(q, x, KernelChoice("reference"))}, 0.0, 3, timer
                )["reference"]
                layer.dispatch = {}
                with tempfile.TemporaryDirectory() as cache_dir:
                    start = time.perf_counter_ns()
                    report = tune_model(
                        nn.Sequential(layer),
                        m,
                        1,
                        device=device,
                        cache_dir=cache_dir,
                        budget_s_per_shape=(1.0 if m == 1 else 6.0) * budget_scale,
                        warmup_s=0.0,
                        timer=timer,
                    )
                    tuning_s = (time.perf_counter_ns() - start) / 1e9
            entry = report.entries[0]
            dense = exhaustive["dense"]
            print(f"  {'dense bf16':<12}{_ms(dense.median_ns)}  IQR {_ms(dense.iqr_ns)}")
            print(f"  {'reference':<12}{_ms(reference.median_ns)}  (float32 oracle, {len(reference.samples)} runs)")
            int4 = {label: t for label, t in exhaustive.items() if label != "dense"}
            for label, timing in sorted(int4.items(), key=lambda item: item[1].median_ns):
                ratio = dense.median_ns / timing.median_ns
                noisy = "  noisy" if timing.dispersion > 0.1 else ""
                print(
                    f"  {label:<12}{_ms(timing.median_ns)}  IQR {_ms(timing.iqr_ns)}  dense/int4 = {ratio:5.2f}x{noisy}"
                )
            best_label = min(int4, key=lambda label: int4[label].median_ns)
            pick = entry.winner.label
            pick_timing = int4[pick]
            gap = pick_timing.median_ns / int4[best_label].median_ns - 1.0
            tie = " (near-tie -> simpler)" if entry.tie_break else ""
            print(
                f"  tuner picked {pick}{tie} in {tuning_s:.1f} s; exhaustive best is {best_label}; "
                f"pick is {gap * 100:+.1f} % from best"
            )
            if m == 1:
                speedup = dense.median_ns / pick_timing.median_ns
                met = speedup >= DECODE_TARGET
                print(
                    f"  TARGET decode: tuned int4 {speedup:.2f}x faster than dense (>= {DECODE_TARGET}x): "
                    f"{'MET' if met else 'NOT MET'}"
                )
            else:
                slowdown = pick_timing.median_ns / dense.median_ns
                met = slowdown <= PREFILL_TARGET
                print(
                    f"  TARGET prefill: tuned int4 {slowdown:.2f}x dense time (<= {PREFILL_TARGET}x): "
                    f"{'MET' if met else 'NOT MET'}"
                )
            pick_met = gap <= PICK_TARGET
            print(
                f"  TARGET pick within {PICK_TARGET * 100:.0f} % of exhaustive best: {'MET' if pick_met else 'NOT MET'}"
            )
            if caught:
                print(f"  ({len(caught)} high-dispersion warnings while timing)")
            all_met = all_met and met and pick_met
            print()
    print(f"load average at end: {_loadavg()}")
    print(f"all targets met: {all_met}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a quarter of the timing budget")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's choice). On a shared host, fewer threads than cores "
        "avoids OpenMP barriers waiting a whole scheduler slice for a descheduled thread",
    )
    parser.add_argument(
        "--no-flush",
        action="store_true",
        help="do not evict the caches before each timed call (weights may then be served from L3)",
    )
    args = parser.parse_args(argv)
    return run(args.quick, args.threads, not args.no_flush)


if __name__ == "__main__":
    sys.exit(main())

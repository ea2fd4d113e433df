"""How honest is `tokbench compare`? Prints the A/A false-positive rate and the A/B detection rate.

A/A: the same workload run 2×K×PAIRS times, each run in its own process (the sweep's process launcher); each pair
compares one process against the next, and then K interleaved processes against K (pooled: the bootstrap resamples
processes, then calls); a pair where any metric comes out "faster" or "slower" is a false positive.
A/B: in one process, a run of the model, then a run of the same model with every forward delayed by SLOWDOWN × the
first run's median TPOT (a spin wait: an exact, known amount); detected when TPOT and E2E come out "slower", and
the report says how often the ratio's 95% CI covered the injected slowdown.

    python benchmarks/compare_honesty.py --pairs 5 --ab-pairs 5 --slowdown 0.05
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import tokbench
from tokbench.config import BenchmarkConfig
from tokbench.engine.delay import delayed_forwards
from tokbench.engine.loading import load
from tokbench.results.comparison import compare
from tokbench.results.selectors import SelectedRun, select_from_store
from tokbench.schema.comparison import ComparisonReport
from tokbench.schema.results import BenchmarkResult

DECIDED = ("faster", "slower")


def workload(args: argparse.Namespace) -> dict[str, object]:
    return {
        "model": args.model,
        "sequence_length": args.sequence_length,
        "new_tokens": args.new_tokens,
        "warmup_iterations": args.warmup_iterations,
        "measurement_iterations": args.measurement_iterations,
        "device": "cpu",
        "monitor": False,
    }


def verdicts(report: ComparisonReport) -> dict[str, tuple[str, float, float, float]]:
    return {
        m.metric: (m.verdict, m.median.ratio, m.median.ci_low, m.median.ci_high)
        for w in report.workloads
        for m in w.metrics
    }


def aa(args: argparse.Namespace, folder: Path) -> None:
    db = folder / "aa.db"
    per_side = args.runs_per_side
    tokbench.run_sweep(workload(args), db=db, repeat=2 * per_side * args.pairs, progress=False, launcher="process")
    runs = [run for run in select_from_store(db, {}) if run.result.ok]
    for label, size in (("one process a side", 1), (f"{per_side} processes a side, pooled", per_side)):
        false_positive, per_metric, detectable, pairs = 0, Counter(), [], 0
        for start in range(0, len(runs) - 2 * per_side + 1, 2 * per_side):
            chunk = runs[start : start + 2 * per_side]
            # interleaved: A B A B ... so load drift over time hits both sides alike
            first, second = chunk[0::2][:size], chunk[1::2][:size]
            report = compare(first, second)
            found = verdicts(report)
            pairs += 1
            per_metric.update(f"{metric}: {verdict}" for metric, (verdict, *_) in found.items())
            tpot = next(m for m in report.workloads[0].metrics if m.metric == "tpot_ms")
            detectable.append(tpot.detectable_change)
            flagged = [f"{metric} {verdict} ×{ratio:.3f}" for metric, (verdict, ratio, *_) in found.items()
                       if verdict in DECIDED]  # fmt: skip
            false_positive += bool(flagged)
            ids = f"{[run.run_id for run in first]} vs {[run.run_id for run in second]}"
            print(f"A/A ({label}) runs {ids}: " + (", ".join(flagged) or "no metric faster/slower"))
        print(f"A/A ({label}): {false_positive}/{pairs} pairs with any metric called faster/slower "
              f"(false-positive rate {false_positive / max(pairs, 1):.0%}); separate processes")  # fmt: skip
        print("  verdicts per metric: " + "; ".join(f"{key} ×{count}" for key, count in sorted(per_metric.items())))
        if detectable:
            print(f"  TPOT change detectable at 80% power: {min(detectable):.1%} .. {max(detectable):.1%}")


def ab(args: argparse.Namespace, folder: Path) -> None:
    config = BenchmarkConfig.from_dict(workload(args))
    loaded = load(config)
    detected, covered, metrics_seen = 0, 0, Counter()

    def timed_run(wait_ns: int) -> tuple[BenchmarkResult, float]:
        with delayed_forwards(loaded.model, wait_ns) as delay:
            result = tokbench.run(
                config, model=loaded.model, tokenizer=loaded.tokenizer, progress=False, device_warmup_s=0.05
            )
        return result, sum(delay.waited_ns) / max(len(delay.waited_ns), 1) / 1e6

    probe, _ = timed_run(0)
    step_ns = int(probe.summary["tpot_ms"].median * 1e6)
    # the baseline waits a little too (a placebo): on a shared machine any wait costs cache refills
    base_wait_ns, slow_wait_ns = step_ns // 10, step_ns // 10 + int(step_ns * args.slowdown)
    for pair in range(args.ab_pairs):
        base, base_wait_ms = timed_run(base_wait_ns)
        slow, slow_wait_ms = timed_run(slow_wait_ns)
        added_ms = slow_wait_ms - base_wait_ms
        report = compare([SelectedRun(base, f"base {pair}")], [SelectedRun(slow, f"slow {pair}")])
        found = verdicts(report)
        tpot_verdict, tpot_ratio, low, high = found["tpot_ms"]
        e2e_verdict = found["e2e_latency_ms"][0]
        tpot = next(m for m in report.workloads[0].metrics if m.metric == "tpot_ms")
        expected = (tpot.median.baseline + added_ms) / tpot.median.baseline
        hit = tpot_verdict == "slower" and e2e_verdict == "slower"
        detected += hit
        covered += low <= expected <= high
        metrics_seen.update(f"{metric}: {verdict}" for metric, (verdict, *_) in found.items())
        print(
            f"A/B pair {pair}: injected {added_ms:.3f} ms/forward (TPOT ×{expected:.3f} expected); "
            f"TPOT {tpot_verdict} ×{tpot_ratio:.3f} [{low:.3f}, {high:.3f}], E2E {e2e_verdict}; "
            f"detectable ≥{tpot.detectable_change:.1%}"
        )
    print(f"A/B: {detected}/{args.ab_pairs} pairs detected as slower on TPOT and E2E (detection rate "
          f"{detected / max(args.ab_pairs, 1):.0%}) for an injected {args.slowdown:.0%} per-forward slowdown; "
          f"the TPOT ratio CI covered the injected ratio in {covered}/{args.ab_pairs}")  # fmt: skip
    print("A/B verdicts per metric: " + "; ".join(f"{key} ×{count}" for key, count in sorted(metrics_seen.items())))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5, help="A/A pairs")
    parser.add_argument("--runs-per-side", type=int, default=2, help="A/A processes a side for the pooled pairs")
    parser.add_argument("--ab-pairs", type=int, default=5)
    parser.add_argument("--slowdown", type=float, default=0.05, help="injected per-forward delay, × median TPOT")
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--sequence-length", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--warmup-iterations", type=int, default=3)
    parser.add_argument("--measurement-iterations", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tokbench-honesty-") as folder:
        if args.pairs:
            aa(args, Path(folder))
        if args.ab_pairs:
            ab(args, Path(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())

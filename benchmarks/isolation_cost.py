"""What does running each config in its own process cost? Target: <= 10% of the config's own time.

Per round, the same config runs once with the inline launcher (this process, model loaded again,
tokenizer cached, torch already imported) and once with the process launcher (a fresh interpreter that
imports torch and transformers, loads tokenizer and model, writes its result JSON, which the parent
reads back), in alternating order so drift hits both alike. The overhead of a round is process wall
time minus inline wall time, each measured by the launcher around the whole launch; the figure is its
median over rounds, relative to the median inline wall time (the config's time). An untimed inline
launch first takes this process's one-time imports out of the inline side.

    python benchmarks/isolation_cost.py [--rounds 5] [--new-tokens 128] [--measurement-iterations 20]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time

from tokbench.config import BenchmarkConfig
from tokbench.launchers import InlineLauncher, ProcessLauncher

NS_PER_S = 1e9


def bootstrap_median_ci(values: list[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    generator = random.Random(seed)
    medians = sorted(statistics.median(generator.choices(values, k=len(values))) for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def interpreter_start_s() -> float:
    """A fresh interpreter importing what a child needs, and nothing else: the floor of the overhead."""
    start = time.perf_counter_ns()
    subprocess.run([sys.executable, "-c", "import tokbench.runner"], check=True)
    return (time.perf_counter_ns() - start) / NS_PER_S


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--warmup-iterations", type=int, default=5)
    parser.add_argument("--measurement-iterations", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    config = BenchmarkConfig(
        model=args.model,
        sequence_length=args.sequence_length,
        new_tokens=args.new_tokens,
        warmup_iterations=args.warmup_iterations,
        measurement_iterations=args.measurement_iterations,
        device=args.device,
        monitor=False,
    )
    print(f"config: {config.name} (warmup {config.warmup_iterations}, measured {config.measurement_iterations})")
    inline, process = InlineLauncher(), ProcessLauncher()
    first = inline.launch(config)
    assert first.ok, first.reason
    inline_s: list[float] = []
    process_s: list[float] = []
    for round_index in range(args.rounds):
        order = (inline, process) if round_index % 2 == 0 else (process, inline)
        walls = {}
        for launcher in order:
            result = launcher.launch(config)
            if not result.ok:
                raise SystemExit(f"{launcher.name} launch failed: {result.reason}")
            walls[launcher.name] = result.launch["wall_ns"] / NS_PER_S
        inline_s.append(walls["inline"])
        process_s.append(walls["process"])
        print(
            f"round {round_index + 1}: inline {walls['inline']:.2f} s, process {walls['process']:.2f} s, "
            f"overhead {walls['process'] - walls['inline']:+.2f} s"
        )
    overheads = [p - i for p, i in zip(process_s, inline_s, strict=True)]
    config_s = statistics.median(inline_s)
    overhead_s = statistics.median(overheads)
    low, high = bootstrap_median_ci(overheads)
    print(f"config time (inline, median): {config_s:.2f} s")
    print(f"process launcher overhead per config (median of paired differences): {overhead_s:.2f} s")
    print(f"  = {overhead_s / config_s:.1%} of the config's time (target <= 10%); 95% CI {low:.2f} .. {high:.2f} s")
    print(f"fresh interpreter + `import tokbench.runner` alone: {interpreter_start_s():.2f} s")


if __name__ == "__main__":
    main()

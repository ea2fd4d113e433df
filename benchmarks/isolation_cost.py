"""What does running each config in its own process cost? Target: <= 10% of the config's own time.

Per round, the same config runs once with the inline launcher (this process, model loaded again,
tokenizer cached, torch already imported), once with the process launcher started by ``spawn`` (a
fresh interpreter that imports torch and transformers, loads tokenizer and model, writes its result
JSON, which the parent reads back) and once with the process launcher's ``forkserver`` (a child
forked from a server that imported torch once; the rest as with spawn), in a rotating order so drift
hits all alike. The overhead of a round is a launcher's wall time minus inline wall time, each
measured by the launcher around the whole launch; the figure is its median over rounds, relative to
the median inline wall time (the config's time). Untimed launches first take this process's one-time
imports out of the inline side and the fork server's one-time start out of the forkserver side (that
start is printed separately: once per sweep, not per config).

    python benchmarks/isolation_cost.py [--rounds 5] [--new-tokens 128] [--measurement-iterations 20]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from tokbench.analysis.stats import bootstrap_intervals, median
from tokbench.config import BenchmarkConfig
from tokbench.sweep.launchers import InlineLauncher, ProcessLauncher

NS_PER_S = 1e9


def interpreter_start_s() -> float:
    """A fresh interpreter importing what a child needs, and nothing else: the floor of the overhead."""
    start = time.perf_counter_ns()
    subprocess.run([sys.executable, "-c", "import tokbench.engine.runner"], check=True)
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
    inline = InlineLauncher()
    launchers: dict[str, InlineLauncher | ProcessLauncher] = {
        "inline": inline,
        "spawn": ProcessLauncher(start_method="spawn"),
        "forkserver": ProcessLauncher(start_method="forkserver"),
    }
    for name in ("inline", "forkserver"):  # the untimed warm-up launches
        first = launchers[name].launch(config)
        assert first.ok, first.reason
        if name == "forkserver":
            print(
                f"fork server start (once per sweep, untimed here): {first.launch.forkserver_start_s or 0:.2f} s"
            )
    names = list(launchers)
    walls: dict[str, list[float]] = {name: [] for name in names}
    try:
        for round_index in range(args.rounds):
            order = names[round_index % len(names) :] + names[: round_index % len(names)]
            for name in order:
                result = launchers[name].launch(config)
                if not result.ok:
                    raise SystemExit(f"{name} launch failed: {result.reason}")
                walls[name].append(result.launch.wall_ns / NS_PER_S)
            print(
                f"round {round_index + 1}: "
                + ", ".join(f"{name} {walls[name][-1]:.2f} s" for name in names)
                + "".join(f", {name} overhead {walls[name][-1] - walls['inline'][-1]:+.2f} s" for name in names[1:])
            )
    finally:
        for launcher in launchers.values():
            launcher.close()
    config_s = median(walls["inline"])
    print(f"config time (inline, median): {config_s:.2f} s")
    for name in names[1:]:
        overheads = [p - i for p, i in zip(walls[name], walls["inline"], strict=True)]
        overhead_s = median(overheads)
        low, high = bootstrap_intervals(overheads, [50.0])[0]  # 95% CI of the median
        print(f"process launcher ({name}) overhead per config (median of paired differences): {overhead_s:.2f} s")
        print(f"  = {overhead_s / config_s:.1%} of the config's time (target <= 10%); 95% CI {low:.2f} .. {high:.2f} s")
    print(f"fresh interpreter + `import tokbench.engine.runner` alone: {interpreter_start_s():.2f} s")


if __name__ == "__main__":
    main()

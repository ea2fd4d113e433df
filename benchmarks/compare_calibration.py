"""The comparison's calibration figures, printed: what tests/unit/test_compare_calibration.py asserts, in numbers.

Uses the suite's own generator and steps (hierarchical synthetic runs through ``results.comparison``'s steps);
seeded, so the figures are those the suite checks. Torch-free; ~30 s on one core.

    python benchmarks/compare_calibration.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))

import test_compare_calibration as suite

from tokbench.analysis import compare as stats
from tokbench.analysis.sequential import plan_looks


def aa_table() -> None:
    print(f"A/A faster/slower rate per process sd {suite.PROCESS_SDS}, {suite.REPS_AA} reps a cell; coverage")
    for processes in (1, 2, 4, 8):
        cells = [suite.aa_cell(processes, sd) for sd in suite.PROCESS_SDS]
        covered = [hit for _, hits in cells for hit in hits]
        coverage = f"; coverage {sum(covered) / len(covered):.1%} of {len(covered)}" if covered else ""
        print(f"  {processes} a side: " + " / ".join(f"{rate:.1%}" for rate, _ in cells) + coverage)


def stored() -> None:
    rng = np.random.default_rng(7)
    reps = 300
    base, cont = suite.simulate(rng, reps, 1, 0.10), suite.simulate(rng, reps, 1, 0.10)
    repeats = suite.simulate(rng, reps, 5, 0.10)
    false = covered = 0
    for first, second, known in zip(base, cont, repeats, strict=True):
        outcome = suite.decide_workload(first, second, stored=suite.Repeats(known))
        false += suite.any_verdict(outcome)
        covered += suite.covers(outcome.tests["e2e_latency_ms"], 1.0)
    print(f"one process a side + 5 stored repeats (sd 10%): A/A {false / reps:.1%}, coverage {covered / reps:.1%}")


def power() -> None:
    for name, design, seed in (("Welch 4+4", suite._welch, 11), ("paired 8", suite._paired, 12),
                               ("stored 1+1", suite._stored, 13)):  # fmt: skip
        change, simulated = suite._detects_and_power(design, 250, seed)
        print(f"{name}: reported detects {change:.1%} -> simulated power {simulated:.1%} (claimed 80%)")


def sequential() -> None:
    plan = plan_looks(4, 20, 0.05)
    for slowdown, sd, seed, reps in ((1.0, 0.05, 31, 200), (1.05, 0.02, 32, 100)):
        runs = suite.paired_runs(seed, reps, sd, slowdown)
        outcomes = [suite.run_looks(first, second, plan) for first, second in runs]
        slower = sum(stats.VERDICT_SLOWER in verdicts for verdicts, _ in outcomes) / reps
        faster = sum(stats.VERDICT_FASTER in verdicts for verdicts, _ in outcomes) / reps
        pairs = np.median([used for _, used in outcomes])
        print(f"ab looks {plan.pairs}, true ratio {slowdown}: slower {slower:.1%}, faster {faster:.1%}, "
              f"median pairs {pairs:.0f} ({reps} reps)")


if __name__ == "__main__":
    aa_table()
    stored()
    power()
    sequential()

"""Calibration of the duet statistic (``tokbench ab --duet``) by seeded simulation, calling the real code.

Model of a duet A/B on a shared machine: every process draws its own effect (log scale, sd 0-5%: it does not
cancel within a pair); the machine's load is common to both processes of a pair in the same round, with a level
per pair (sd 20%: the minute-to-minute change that makes sequential pairs noisy) and a random walk within the pair
(3% a round); every call has its own noise (5%) and, with probability 10%, a burst of other work that hits that
call alone (exponential, mean 30%); token gaps an AR(1) noise as in test_compare_calibration. Each pair's calls
go through ``results.comparison.Side`` → ``measure_metric(duet=True)`` (per pair the median over rounds of
log(B call ÷ A call), a t over pairs) → ``holm_over_hypotheses`` → ``analysis.compare.decide``, at the planned
looks of ``analysis.sequential`` with each look's alpha, as ``sweep.ab`` runs them.

Monte-Carlo error: a rate near 5% from R replications has a standard error √(0.05·0.95/R) (1.5 points at 200,
0.7 at 1,000); a power near 90% √(0.09/R) (2.7 points at 120). Every figure is seeded.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from tokbench.analysis import compare as stats
from tokbench.analysis.sequential import LookPlan, plan_looks
from tokbench.results.comparison import Side, holm_over_hypotheses, measure_metric

ROUNDS = 10  # measured calls per process (rounds per pair)
GAPS = 15
PAIRS = 20
PRIMARY = ("ttft_ms", "tpot_ms", "itl_ms", "e2e_latency_ms")


def duet_sides(
    rng: np.random.Generator, pairs: int, process_sd: float, slowdown: float = 1.0, level_sd: float = 0.20
) -> tuple[Side, Side]:
    """One synthetic duet A/B of ``pairs`` pairs: side A's and side B's processes in pair order."""
    level = rng.normal(0, level_sd, (pairs, 1)) + np.cumsum(rng.normal(0, 0.03, (pairs, ROUNDS)), axis=1)
    sides = []
    for factor in (1.0, slowdown):
        effect = rng.normal(0, process_sd, (pairs, 1))
        bursts = (rng.random((pairs, ROUNDS)) < 0.10) * rng.exponential(0.30, (pairs, ROUNDS))
        call = effect + level + np.log1p(bursts) + rng.normal(0, 0.05, (pairs, ROUNDS))
        noise = np.empty((pairs, ROUNDS, GAPS))
        noise[..., 0] = rng.normal(0, 0.10, noise.shape[:-1])
        for index in range(1, GAPS):
            noise[..., index] = 0.5 * noise[..., index - 1] + rng.normal(0, 0.10 * math.sqrt(0.75), noise.shape[:-1])
        gaps = 10.0 * factor * np.exp(call[..., None] + noise)
        ttft = 20.0 * factor * np.exp(call + rng.normal(0, 0.10, call.shape))
        per_call = {"ttft_ms": ttft, "tpot_ms": gaps.mean(axis=-1), "e2e_latency_ms": ttft + gaps.sum(axis=-1)}
        processes = []
        for pair in range(pairs):
            metrics = {name: list(values[pair][:, None]) for name, values in per_call.items()}
            metrics["itl_ms"] = list(gaps[pair])
            processes.append(metrics)
        sides.append(Side(tuple(processes), tuple(f"p{pair}" for pair in range(pairs)), "machine"))
    return sides[0], sides[1]


def head(side: Side, pairs: int) -> Side:
    return Side(side.calls[:pairs], side.identities[:pairs], side.machine)


def verdicts_at(first: Side, second: Side, alpha: float, *, duet: bool) -> dict[str, tuple[str, stats.ProcessTest]]:
    """Every primary metric's verdict and test, as compare() decides them for these pairs."""
    measured = [measure_metric("w", name, first, second, paired=True, stored=None, tails=False, duet=duet)
                for name in PRIMARY]  # fmt: skip
    p_values, _ = holm_over_hypotheses(measured)
    out = {}
    for entry in measured:
        verdict, _ = stats.decide(entry.test, p_values[("w", entry.metric)][1], False, alpha=alpha)
        out[entry.metric] = (verdict, entry.test)
    return out


def run_looks(first: Side, second: Side, plan: LookPlan, *, duet: bool = True) -> tuple[list[str], int]:
    """tokbench ab's stopping rule: at each planned look, stop at a faster / slower verdict or when every
    hypothesis is decided; the verdicts where it stopped and the pairs used."""
    verdicts: list[str] = []
    for pairs, alpha in zip(plan.pairs, plan.alphas, strict=True):
        outcome = verdicts_at(head(first, pairs), head(second, pairs), alpha, duet=duet)
        verdicts = [verdict for verdict, _ in outcome.values()]
        if stats.VERDICT_SLOWER in verdicts or stats.VERDICT_FASTER in verdicts:
            return verdicts, pairs
        if all(stats.decided(v, t, min_effect=0.02, alpha=alpha) for v, t in outcome.values()):
            return verdicts, pairs
    return verdicts, plan.pairs[-1]


def false_rate(seed: int, reps: int, process_sd: float) -> float:
    rng = np.random.default_rng(seed)
    plan = plan_looks(4, PAIRS, 0.05)
    outcomes = [run_looks(*duet_sides(rng, PAIRS, process_sd), plan)[0] for _ in range(reps)]
    return sum(stats.VERDICT_SLOWER in v or stats.VERDICT_FASTER in v for v in outcomes) / reps


@pytest.mark.parametrize(("process_sd", "seed", "reps"), [(0.02, 2, 160), (0.05, 3, 240)])
def test_duet_aa_false_verdicts_at_most_five_percent(process_sd: float, seed: int, reps: int) -> None:
    """A/A duet pairs through every planned look: any faster / slower is a false verdict; ≤ 5% over 160-240 reps
    (±1.7 / ±1.4 points) with a per-process effect, a time-varying shared load and call bursts. (At 600 reps the
    rate is 2.5%, 2.0%, 2.2% for process sd 0, 5%, 10%: Bonferroni over looks and Holm within one are
    conservative.)"""
    rate = false_rate(seed, reps, process_sd)
    assert rate <= 0.05, rate


@pytest.mark.parametrize(("process_sd", "slowdown", "seed"), [(0.02, 1.0, 4), (0.05, 1.05, 6)])
def test_duet_interval_coverage(process_sd: float, slowdown: float, seed: int) -> None:
    """The 95% interval of the duet ratio at 10 pairs covers the true ratio in 93-97% of 800 reps (±0.8 points),
    for E2E and TTFT: the median over rounds of log(B/A) is centred on the true log ratio (A's and B's noise are
    alike, so its difference is symmetric) and the t over pairs carries the per-process effect."""
    rng = np.random.default_rng(seed)
    covered = {"e2e_latency_ms": 0, "ttft_ms": 0}
    reps = 800
    for _ in range(reps):
        first, second = duet_sides(rng, 10, process_sd, slowdown)
        for name in covered:
            test = measure_metric("w", name, first, second, paired=True, stored=None, tails=False, duet=True).test
            low, high = test.interval(0.95) or (math.nan, math.nan)
            covered[name] += low <= slowdown <= high
    rates = {name: count / reps for name, count in covered.items()}
    assert all(0.93 <= rate <= 0.97 for rate in rates.values()), rates


def test_duet_detects_five_percent_and_beats_process_medians() -> None:
    """A 5% slowdown (process sd 2%): the duet statistic detects it (slower, never faster) in ≥ 90% of 120 reps
    within 20 pairs, and more often than the paired test on process medians of the same pairs, which does not
    cancel the load that changes within a pair and the bursts that hit one call (why duet pairs use rounds)."""
    rng = np.random.default_rng(7)
    plan = plan_looks(4, PAIRS, 0.05)
    runs = [duet_sides(rng, PAIRS, 0.02, 1.05) for _ in range(120)]
    by_rounds = [run_looks(first, second, plan, duet=True) for first, second in runs]
    by_medians = [run_looks(first, second, plan, duet=False) for first, second in runs]
    detected = sum(stats.VERDICT_SLOWER in v for v, _ in by_rounds) / len(runs)
    wrong = sum(stats.VERDICT_FASTER in v for v, _ in by_rounds)
    detected_medians = sum(stats.VERDICT_SLOWER in v for v, _ in by_medians) / len(runs)
    pairs_rounds = float(np.median([pairs for _, pairs in by_rounds]))
    pairs_medians = float(np.median([pairs for _, pairs in by_medians]))
    assert detected >= 0.90 and wrong == 0, (detected, wrong)
    figures = (detected_medians, pairs_rounds, pairs_medians)
    assert detected >= detected_medians and pairs_rounds <= pairs_medians, figures


def test_round_log_ratio_is_the_median_of_the_rounds() -> None:
    calls_a = [np.array([10.0]), np.array([20.0]), np.array([40.0])]
    calls_b = [np.array([11.0]), np.array([18.0]), np.array([48.0])]
    expected = sorted(math.log(b / a) for a, b in ((10, 11), (20, 18), (40, 48)))[1]
    assert stats.round_log_ratio(calls_a, calls_b) == pytest.approx(expected)
    with pytest.raises(ValueError, match="same calls"):
        stats.round_log_ratio(calls_a, calls_b[:2])
    test = stats.duet_test([0.01, 0.03, 0.02])
    assert test.method == stats.METHOD_DUET and test.df == 2 and test.log_ratio == pytest.approx(0.02)
    assert stats.spread_of(test) is not None and stats.spread_of(test).paired  # type: ignore[union-attr]


# --- compare() on stored duet pairs --------------------------------------------------------------------------


def duet_results(seed: int, pairs: int, slowdown: float) -> tuple[list, list]:
    """Synthetic stored results of a duet ab (the real result format): per pair, A's and B's calls in turns, the
    round order and partners in each launch record's duet record, sweep ids and pair indexes as ``sweep.ab``
    stores them."""
    from tokbench.results.selectors import SelectedRun
    from tokbench.schema.records import DuetRecord
    from tokbench.schema.results import load_result

    rng = np.random.default_rng(seed)
    template = load_result(Path(__file__).parents[1] / "data" / "result-v2.json")
    tokens = len(template.iterations[0].token_timestamps_ns[0])
    sides: dict[str, list] = {"a": [], "b": []}
    clock = 10**12
    for pair in range(pairs):
        order = "".join(rng.choice(["a", "b"]) for _ in range(ROUNDS))
        traces: dict[str, list] = {"a": [], "b": []}
        for went_first in order:
            load = rng.normal(0, 0.2)
            for name in (went_first, "b" if went_first == "a" else "a"):
                scale = (slowdown if name == "b" else 1.0) * math.exp(load + rng.normal(0, 0.05))
                steps = [20e6 * scale, *(10e6 * scale * np.exp(rng.normal(0, 0.1, tokens - 1)))]
                row = tuple(int(stamp) for stamp in clock + np.cumsum(steps))
                first = template.iterations[0]
                traces[name].append(dataclasses.replace(first, t0_ns=clock, token_timestamps_ns=(row,), end_ns=row[-1]))
                clock = row[-1] + 1000
        for name, pid in (("a", 1000 + 2 * pair), ("b", 1001 + 2 * pair)):
            partner = 1001 + 2 * pair if name == "a" else 1000 + 2 * pair
            record = DuetRecord(
                side=name, rounds=ROUNDS, first=order, ended="duet: the pair stopped", partner_pid=partner
            )
            launch = dataclasses.replace(
                template.launch, pid=pid, sweep_id=f"ab-x-{name}", repeat_index=pair, duet=record
            )
            result = dataclasses.replace(template, iterations=tuple(traces[name]), launch=launch)
            sides[name].append(SelectedRun(result, f"{name}{pair}"))
    return sides["a"], sides["b"]


def test_compare_recomputes_duet_pairs_from_stored_timestamps() -> None:
    from tokbench.results.comparison import compare, duet_problem

    first, second = duet_results(51, 5, 1.3)
    report = compare(first, second)
    (workload,) = report.workloads
    assert workload.design == "duet pairs"
    assert {m.test.method for m in workload.metrics} == {"duet"}
    assert workload.verdict == "slower" and report.regressed  # 30% slower, the load cancelled round by round
    e2e = next(m for m in workload.metrics if m.metric == "e2e_latency_ms")
    assert 1.25 < e2e.median.ratio < 1.35
    # The rounds must be causal: a B call that started before its round's A call ended is no duet round.
    run = second[2]
    calls = list(run.result.iterations)
    shifted = dataclasses.replace(calls[0], t0_ns=calls[0].t0_ns - 10**9)
    broken = dataclasses.replace(run, result=dataclasses.replace(run.result, iterations=(shifted, *calls[1:])))
    assert duet_problem(first[2], broken) == "the calls' timestamps do not take turns as recorded"
    fallback = compare(first, [*second[:2], broken, *second[3:]])
    assert fallback.workloads[0].design == "paired"
    assert any("duet rounds not used" in warning for warning in fallback.workloads[0].warnings)
    assert duet_problem(first[0], second[1]) == "the two processes were not each other's partners"

"""Calibration of the comparison's decision rule by seeded simulation, calling the real code.

Hierarchical synthetic runs: every process draws an effect (log scale, sd 0-20%), every call a 5% effect, and
the token gaps of a call an AR(1) noise (ρ 0.5, sd 10%), so tokens of one call are correlated; TTFT has its own
10% noise. Each process's calls go through ``results.comparison.Side`` → ``measure_metric`` (process values,
the test the design allows) → ``holm_over_hypotheses`` → ``analysis.compare.decide``: the steps ``compare()``
runs (``test_the_steps_are_what_compare_runs`` checks that on synthetic traces).

Monte-Carlo error: a rate near 5% from R replications has a standard error √(0.05·0.95/R) (1.5 points at 200,
0.7 at 1,000); a coverage near 95% the same; a power near 80% √(0.16/R) (2.3 points at 300). Every figure is
seeded, so a run always gives the same numbers; the bounds below hold with those errors to spare.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from functools import cache

import numpy as np
import pytest

from tokbench.analysis import compare as stats
from tokbench.analysis.sequential import LookPlan, plan_looks
from tokbench.results.comparison import Side, holm_over_hypotheses, measure_metric

CALLS = 10  # calls per process
GAPS = 15  # token gaps per call
PROMPT_TOKENS = 128
PRIMARY = ("ttft_ms", "tpot_ms", "itl_ms", "e2e_latency_ms")  # one latency per hypothesis


def simulate(
    rng: np.random.Generator,
    reps: int,
    processes: int,
    process_sd: float,
    *,
    slowdown: float = 1.0,
    ttft_slowdown: float = 1.0,
    shared: np.ndarray | None = None,
) -> list[Side]:
    """``reps`` sides of ``processes`` processes each; ``shared`` (reps × processes) adds a log effect common to
    both members of a pair (machine drift)."""
    effect = rng.normal(0, process_sd, (reps, processes, 1)) + (0 if shared is None else shared[..., None])
    call = effect + rng.normal(0, 0.05, (reps, processes, CALLS))
    noise = np.empty((reps, processes, CALLS, GAPS))
    noise[..., 0] = rng.normal(0, 0.10, noise.shape[:-1])
    for index in range(1, GAPS):  # AR(1), stationary sd 0.10
        noise[..., index] = 0.5 * noise[..., index - 1] + rng.normal(0, 0.10 * math.sqrt(0.75), noise.shape[:-1])
    gaps = 10.0 * slowdown * np.exp(call[..., None] + noise)
    ttft = 20.0 * slowdown * ttft_slowdown * np.exp(call + rng.normal(0, 0.10, call.shape))
    tpot = gaps.mean(axis=-1)
    e2e = ttft + gaps.sum(axis=-1)
    per_call = {
        "ttft_ms": ttft,
        "tpot_ms": tpot,
        "e2e_latency_ms": e2e,
        "prefill_throughput_tok_s": PROMPT_TOKENS / ttft * 1e3,
        "decode_throughput_tok_s": 1e3 / tpot,
        "overall_throughput_tok_s": (GAPS + 1) / e2e * 1e3,
    }
    sides = []
    for rep in range(reps):
        calls = []
        for process in range(processes):
            metrics = {name: list(values[rep, process][:, None]) for name, values in per_call.items()}
            metrics["itl_ms"] = list(gaps[rep, process])
            calls.append(metrics)
        sides.append(Side(tuple(calls), tuple(f"p{rep}.{i}" for i in range(processes)), "machine"))
    return sides


@dataclasses.dataclass(frozen=True)
class Repeats:
    """A stored-repeats lookup (as ``StoredRepeats``) over synthetic repeat processes of the same workload."""

    side: Side

    def variance(
        self, workload_key: str, machine: str, metric: str, exclude: set[str] | None = None
    ) -> stats.StoredVariance | None:
        return stats.stored_variance_of([self.side.values(metric)], "synthetic repeats")


@dataclasses.dataclass(frozen=True)
class Outcome:
    verdicts: dict[str, str]
    tests: dict[str, stats.ProcessTest]
    p_adjusted: dict[str, float]


def decide_workload(
    base: Side,
    cont: Side,
    *,
    paired: bool = False,
    stored: Repeats | None = None,
    alpha: float = 0.05,
    metrics: Sequence[str] | None = None,
) -> Outcome:
    names = metrics or tuple(base.calls[0])
    measured = [measure_metric("w", name, base, cont, paired=paired, stored=stored, tails=False) for name in names]
    p_values, _ = holm_over_hypotheses(measured)
    verdicts, tests, adjusted = {}, {}, {}
    for entry in measured:
        p_adjusted = p_values[("w", entry.metric)][1]
        verdict, _ = stats.decide(entry.test, p_adjusted, entry.metric in stats.HIGHER_IS_BETTER, alpha=alpha)
        verdicts[entry.metric], tests[entry.metric], adjusted[entry.metric] = verdict, entry.test, p_adjusted
    return Outcome(verdicts, tests, adjusted)


def any_verdict(outcome: Outcome) -> bool:
    return any(v in (stats.VERDICT_FASTER, stats.VERDICT_SLOWER) for v in outcome.verdicts.values())


def covers(test: stats.ProcessTest, truth: float, confidence: float = 0.95) -> bool:
    interval = test.interval(confidence)
    assert interval is not None
    return interval[0] <= truth <= interval[1]


PROCESS_SDS = (0.0, 0.02, 0.05, 0.10, 0.20)
REPS_AA = 120


@cache
def aa_cell(processes: int, process_sd: float) -> tuple[float, list[bool]]:
    """A/A, independent sides: (rate of any faster/slower verdict, E2E and TTFT interval covers 1 per rep)."""
    rng = np.random.default_rng(1000 * processes + int(process_sd * 100))
    reps = REPS_AA if processes > 1 else 30  # one process a side: no verdict by construction
    base, cont = simulate(rng, reps, processes, process_sd), simulate(rng, reps, processes, process_sd)
    false, covered = 0, []
    for first, second in zip(base, cont, strict=True):
        outcome = decide_workload(first, second)
        false += any_verdict(outcome)
        if processes > 1:
            covered += [covers(outcome.tests[name], 1.0) for name in ("e2e_latency_ms", "ttft_ms")]
    return false / reps, covered


@pytest.mark.parametrize("processes", [1, 2, 4, 8])
def test_aa_gets_at_most_five_percent_faster_or_slower_in_every_cell(processes: int) -> None:
    """Nominal 5% family-wise; measured ≤ 5% in every (processes, process sd) cell (120 reps: ±2 points; the
    measured rates are 0-3%: Holm over four correlated hypotheses and the min-effect rule are conservative)."""
    rates = {sd: aa_cell(processes, sd)[0] for sd in PROCESS_SDS}
    assert all(rate <= 0.05 for rate in rates.values()), rates
    if processes == 1:
        assert set(rates.values()) == {0.0}  # one process a side: never a verdict


@pytest.mark.parametrize(("processes", "low", "high"), [(2, 0.93, 0.99), (4, 0.93, 0.97), (8, 0.93, 0.97)])
def test_interval_coverage_where_a_verdict_is_allowed(processes: int, low: float, high: float) -> None:
    """95% t intervals of E2E and TTFT over every process sd: 1,200 intervals a row (±0.6 points, more since the
    two metrics of one rep are correlated).

    Two processes a side: Welch's degrees of freedom (1 to 2) make the interval conservative by construction
    (exact coverage 97.8% under equal variances, 98.5% measured here); a pooled-variance interval would be exact
    there but cover only 93-94% when the sides' spreads differ by 2-3×, which a regression gate must not risk.
    """
    covered = [hit for sd in PROCESS_SDS for hit in aa_cell(processes, sd)[1]]
    coverage = sum(covered) / len(covered)
    assert low <= coverage <= high, coverage


def test_one_process_a_side_with_stored_repeats_is_calibrated() -> None:
    """One process a side plus 5 stored repeats of the workload (sweep --repeat 5): the stored between-process
    variance enters the interval. A/A ≤ 5% and 93-97% coverage over 300 reps (±1.3 points)."""
    rng = np.random.default_rng(7)
    reps, false, covered = 300, 0, []
    base, cont = simulate(rng, reps, 1, 0.10), simulate(rng, reps, 1, 0.10)
    repeats = simulate(rng, reps, 5, 0.10)
    for first, second, stored in zip(base, cont, repeats, strict=True):
        outcome = decide_workload(first, second, stored=Repeats(stored))
        assert outcome.tests["e2e_latency_ms"].method == stats.METHOD_STORED
        false += any_verdict(outcome)
        covered.append(covers(outcome.tests["e2e_latency_ms"], 1.0))
    assert false / reps <= 0.05
    assert 0.93 <= sum(covered) / reps <= 0.97, sum(covered) / reps


def _detects_and_power(make: object, reps: int, seed: int) -> tuple[float, float]:
    """Median reported 'detects X' for TTFT under no change, then the simulated power with TTFT × (1 + X) only
    (the other hypotheses unchanged, as the report states it: this metric alone)."""
    rng = np.random.default_rng(seed)
    reported = []
    for base, cont, options in make(rng, 120, 1.0):  # type: ignore[operator]
        test = decide_workload(base, cont, metrics=PRIMARY, **options).tests["ttft_ms"]
        reported.append(stats.detectable_change(test.se, test.df, 4, alpha=0.05, min_effect=0.02))
    change = float(np.median(reported))
    hits = 0
    for base, cont, options in make(rng, reps, 1 + change):  # type: ignore[operator]
        hits += decide_workload(base, cont, metrics=PRIMARY, **options).verdicts["ttft_ms"] == stats.VERDICT_SLOWER
    return change, hits / reps


def _welch(rng: np.random.Generator, reps: int, ttft: float) -> list:
    base, cont = simulate(rng, reps, 4, 0.05), simulate(rng, reps, 4, 0.05, ttft_slowdown=ttft)
    return [(b, c, {}) for b, c in zip(base, cont, strict=True)]


def _paired(rng: np.random.Generator, reps: int, ttft: float) -> list:
    drift = rng.normal(0, 0.10, (reps, 8))  # common to both members of a pair
    base = simulate(rng, reps, 8, 0.05, shared=drift)
    cont = simulate(rng, reps, 8, 0.05, shared=drift, ttft_slowdown=ttft)
    return [(b, c, {"paired": True}) for b, c in zip(base, cont, strict=True)]


def _stored(rng: np.random.Generator, reps: int, ttft: float) -> list:
    base, cont = simulate(rng, reps, 1, 0.05), simulate(rng, reps, 1, 0.05, ttft_slowdown=ttft)
    repeats = simulate(rng, reps, 5, 0.05)
    return [(b, c, {"stored": Repeats(r)}) for b, c, r in zip(base, cont, repeats, strict=True)]


@pytest.mark.parametrize(("design", "seed"), [(_welch, 11), (_paired, 12), (_stored, 13)])
def test_reported_detects_is_within_ten_points_of_the_simulated_power(design: object, seed: int) -> None:
    """'detects X' claims 80% power; injecting X gives 70-90% (250 reps: ±2.5 points; X is the median over 40
    reports, the reported X being median-unbiased; 40 reports were too few: their median wandered by ±15%)."""
    change, power = _detects_and_power(design, 250, seed)
    assert 0.02 < change < 1.0
    assert 0.70 <= power <= 0.90, (change, power)


def test_processes_needed_is_what_the_simulation_needs() -> None:
    """'processes for 6%' from a 4-a-side comparison, then that many processes a side detect 6% in 70-90%
    (150 reps: ±3.3 points)."""
    rng = np.random.default_rng(21)
    counts = []
    for base, cont, _ in _welch(rng, 30, 1.0):
        test = decide_workload(base, cont).tests["ttft_ms"]
        counts.append(stats.processes_for_change(stats.spread_of(test), 0.06, 4, alpha=0.05, min_effect=0.02))
    needed = int(np.median([count for count in counts if count is not None]))
    assert 3 <= needed <= 40
    base = simulate(rng, 150, needed, 0.05)
    cont = simulate(rng, 150, needed, 0.05, ttft_slowdown=1.06)
    hits = sum(
        decide_workload(b, c, metrics=PRIMARY).verdicts["ttft_ms"] == stats.VERDICT_SLOWER
        for b, c in zip(base, cont, strict=True)
    )
    assert 0.70 <= hits / 150 <= 0.90, (needed, hits / 150)


def run_looks(first: Side, second: Side, plan: LookPlan) -> tuple[list[str], int]:
    """tokbench ab's stopping rule on one synthetic A/B of paired processes: at each planned look, paired tests of
    the four hypotheses, Holm at that look's alpha, stop at a faster / slower verdict or when every hypothesis is
    decided. Returns the verdicts where it stopped (or at the last look) and the pairs used."""
    values = {name: (first.values(name), second.values(name)) for name in PRIMARY}
    verdicts: list[str] = []
    for pairs, alpha in zip(plan.pairs, plan.alphas, strict=True):
        tests = {name: stats.paired_test(a[:pairs], b[:pairs]) for name, (a, b) in values.items()}
        adjusted = dict(zip(tests, stats.holm_adjust([t.p_value for t in tests.values()]), strict=True))
        verdicts = [stats.decide(tests[name], adjusted[name], False, alpha=alpha)[0] for name in tests]
        if stats.VERDICT_SLOWER in verdicts or stats.VERDICT_FASTER in verdicts:
            return verdicts, pairs
        pairs_of = zip(verdicts, tests.values(), strict=True)
        if all(stats.decided(verdict, test, min_effect=0.02, alpha=alpha) for verdict, test in pairs_of):
            return verdicts, pairs
    return verdicts, plan.pairs[-1]


def paired_runs(seed: int, reps: int, process_sd: float, slowdown: float) -> list[tuple[Side, Side]]:
    """Paired A/B of 20 pairs with a 10% drift common to the two members of a pair."""
    rng = np.random.default_rng(seed)
    drift = rng.normal(0, 0.10, (reps, 20))
    base = simulate(rng, reps, 20, process_sd, shared=drift)
    return list(zip(base, simulate(rng, reps, 20, process_sd, shared=drift, slowdown=slowdown), strict=True))


def test_sequential_looks_keep_the_error_rate() -> None:
    """tokbench ab's stopping rule on paired A/A with drift (10% common to a pair) and process sd 5%: looks at the
    planned pair counts, each with its share of alpha; any faster/slower at any look is a false verdict.
    ≤ 5% over 200 reps (±1.5 points)."""
    plan = plan_looks(4, 20, 0.05)
    outcomes = [run_looks(first, second, plan)[0] for first, second in paired_runs(31, 200, 0.05, 1.0)]
    false = sum(stats.VERDICT_SLOWER in v or stats.VERDICT_FASTER in v for v in outcomes)
    assert false / len(outcomes) <= 0.05, false / len(outcomes)
    assert sum(plan.alphas) == pytest.approx(0.05)


def test_sequential_looks_detect_a_real_slowdown() -> None:
    """The same rule under a 5% slowdown of everything: detected (slower, never faster) in ≥ 90% of 100 reps."""
    plan = plan_looks(4, 20, 0.05)
    outcomes = [run_looks(first, second, plan)[0] for first, second in paired_runs(32, 100, 0.02, 1.05)]
    detected = sum(stats.VERDICT_SLOWER in v for v in outcomes)
    wrong = sum(stats.VERDICT_FASTER in v for v in outcomes)
    assert detected / len(outcomes) >= 0.90 and wrong == 0, (detected, wrong)


# --- compare() runs these steps, on stored results -------------------------------------------------------


def _runs(rng: np.random.Generator, processes: int, process_sd: float, slowdown: float, tag: str) -> list:
    """Synthetic traces (the same model) in the stored result tests/data/result-v2.json, one result a process."""
    from pathlib import Path

    from tokbench.results.selectors import SelectedRun
    from tokbench.schema.results import load_result

    template = load_result(Path(__file__).parents[1] / "data" / "result-v2.json")
    first = template.iterations[0]
    tokens = len(first.token_timestamps_ns[0])
    runs = []
    for index in range(processes):
        effect = rng.normal(0, process_sd)
        traces = []
        for _ in range(CALLS):
            call = effect + rng.normal(0, 0.05)
            gaps = 10e6 * slowdown * np.exp(call + rng.normal(0, 0.1, tokens - 1))
            stamps = first.t0_ns + np.cumsum([20e6 * slowdown * math.exp(call + rng.normal(0, 0.1)), *gaps])
            row = tuple(int(stamp) for stamp in stamps)
            traces.append(dataclasses.replace(first, token_timestamps_ns=(row,), end_ns=row[-1] + 1000))
        started = f"2026-12-01T10:{index:02d}:{ord(tag[0]) % 60:02d}+00:00"  # each process its own start
        result = dataclasses.replace(template, iterations=tuple(traces), started_at=started)
        runs.append(SelectedRun(result, f"{tag}{index}"))
    return runs


def test_the_steps_are_what_compare_runs() -> None:
    from tokbench.results.comparison import compare

    rng = np.random.default_rng(41)
    for slowdown in (1.0, 1.3):
        base, cont = _runs(rng, 3, 0.03, 1.0, "a"), _runs(rng, 3, 0.03, slowdown, "b")
        report = compare(base, cont)
        steps = decide_workload(Side.of(base), Side.of(cont))
        (workload,) = report.workloads
        assert {m.metric: m.verdict for m in workload.metrics} == steps.verdicts
        assert {m.metric: m.p_adjusted for m in workload.metrics} == pytest.approx(steps.p_adjusted)
        assert report.hypotheses == 4 and workload.design == "independent"
    assert workload.verdict == "slower" and report.regressed  # 30% slower on three processes a side


def test_one_process_a_side_decides_only_with_stored_repeats(tmp_path: object) -> None:
    from pathlib import Path

    from tokbench.results.comparison import compare
    from tokbench.results.repeats import StoredRepeats
    from tokbench.results.store import ResultStore

    rng = np.random.default_rng(42)
    base, cont = _runs(rng, 1, 0.02, 1.0, "a"), _runs(rng, 1, 0.02, 1.5, "b")
    report = compare(base, cont)
    assert not report.regressed and report.workloads[0].verdict == "inconclusive"
    assert all(m.median.ci_low is None and m.test.method == "none" for m in report.workloads[0].metrics)
    assert "one process" in report.workloads[0].warnings[-1]
    db = Path(str(tmp_path)) / "repeats.db"
    with ResultStore(db) as store:
        for run in _runs(rng, 4, 0.02, 1.0, "r"):
            store.add(run.result, sweep_id="repeats", repeat_index=0)
    stored = compare(base, cont, stored=StoredRepeats(db))
    metrics = stored.workloads[0].metrics
    assert all(m.test.method == "stored variance" and "repeats (4 runs)" in m.test.variance_source for m in metrics)
    assert stored.regressed  # 50% slower: decided once the machine's variance is known


def test_ab_pairs_are_analysed_as_pairs() -> None:
    from tokbench.results.comparison import ab_pairs, compare

    rng = np.random.default_rng(43)
    base, cont = _runs(rng, 4, 0.05, 1.0, "a"), _runs(rng, 4, 0.05, 1.0, "b")

    def tagged(runs: list, side: str) -> list:
        out = []
        for pair, run in enumerate(runs):
            launch = dataclasses.replace(run.result.launch, sweep_id=f"ab-x-{side}", repeat_index=pair)
            out.append(dataclasses.replace(run, result=dataclasses.replace(run.result, launch=launch)))
        return out

    a, b = tagged(base, "a"), tagged(cont, "b")
    assert ab_pairs(a, b) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert ab_pairs(a, base) is None  # not the two sides of one ab
    report = compare(a, list(reversed(b)))
    assert report.workloads[0].design == "paired"
    assert {m.test.method for m in report.workloads[0].metrics} == {"paired"}

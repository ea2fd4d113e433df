"""The comparison statistics and the change-point finder on data with known answers."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from tokbench.analysis import compare as stats
from tokbench.analysis.changepoints import find_change_points


def _process(*calls: float) -> stats.ProcessValue:
    return stats.ProcessValue.of([np.array([value]) for value in calls])


def test_a_process_value_is_the_log_median_of_its_calls() -> None:
    value = _process(1.0, 2.0, 4.0)
    assert value.log_median == pytest.approx(math.log(2.0))
    # log values 0, ln2, 2ln2: variance ln2² → π/2 · ln2² / 3
    assert value.within_variance == pytest.approx(math.pi / 2 * math.log(2) ** 2 / 3)
    multi = stats.ProcessValue.of([np.array([1.0, 3.0, 100.0]), np.array([2.0, 2.0, 2.0])])  # call medians 3, 2
    assert multi.log_median == pytest.approx(math.log(math.sqrt(6.0))) and multi.calls == 2
    assert math.isnan(_process(5.0).within_variance)
    with pytest.raises(ValueError):
        _process(1.0, -1.0)


def test_welch_and_paired_tests_match_scipy() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 0.05, 5), rng.normal(0.03, 0.08, 4)
    welch = stats.welch_test([_process(math.exp(x)) for x in a], [_process(math.exp(y)) for y in b])
    reference = scipy_stats.ttest_ind(b, a, equal_var=False)
    assert welch.p_value == pytest.approx(reference.pvalue)
    assert welch.log_ratio / welch.se == pytest.approx(reference.statistic)
    assert welch.df == pytest.approx(reference.df)
    low, high = welch.interval(0.95)
    interval = reference.confidence_interval(0.95)
    assert (math.log(low), math.log(high)) == pytest.approx((interval.low, interval.high))
    c = a[:4] + rng.normal(0.01, 0.01, 4)
    paired = stats.paired_test([_process(math.exp(x)) for x in a[:4]], [_process(math.exp(y)) for y in c])
    reference = scipy_stats.ttest_rel(c, a[:4])
    assert paired.method == stats.METHOD_PAIRED and paired.df == 3
    assert paired.p_value == pytest.approx(reference.pvalue)


def test_one_process_a_side_has_no_test_without_a_stored_variance() -> None:
    one = stats.process_test([_process(10, 11, 12)], [_process(20, 21, 22)])
    assert one.method == stats.METHOD_NONE and not one.tested and one.interval(0.95) is None
    assert one.ratio == pytest.approx(21 / 11)  # the ratio is still shown
    verdict, why = stats.decide(one, math.nan, False, undecided="run tokbench ab")
    assert verdict == stats.VERDICT_INCONCLUSIVE and "one process a side" in why and "tokbench ab" in why
    repeats = [_process(10, 10.5, 11), _process(11, 11.5, 12), _process(9, 9.5, 10)]
    known = stats.stored_variance_of([repeats], "store runs 1-3")
    assert known is not None and known.df == 2 and known.between > 0
    stored = stats.process_test([_process(10, 11, 12)], [_process(20, 21, 22)], stored=known)
    assert stored.method == stats.METHOD_STORED and stored.reason == "store runs 1-3" and stored.df == 2
    assert stats.stored_variance_of([repeats[:1]], "one run") is None  # a single run has no spread


def test_holm_over_hypotheses_ignores_untested_ones() -> None:
    # sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 → max(0.06, 0.04) = 0.06
    assert stats.holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = stats.holm_adjust([0.01, math.nan, 0.04])
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)
    assert stats.hypothesis_of("decode_throughput_tok_s") == "tpot_ms"
    assert stats.hypothesis_of("itl_ms") == "itl_ms"
    assert [group[0] for group in stats.HYPOTHESES] == ["ttft_ms", "tpot_ms", "itl_ms", "e2e_latency_ms"]


def _test(log_ratio: float, se: float, df: float = 10.0) -> stats.ProcessTest:
    p_value = float(2 * scipy_stats.t.sf(abs(log_ratio) / se, df))
    return stats.ProcessTest(stats.METHOD_WELCH, log_ratio, se, df, p_value, 6, 6)


def test_the_verdict_labels() -> None:
    slower = _test(math.log(1.10), 0.01)
    assert stats.decide(slower, slower.p_value, False)[0] == stats.VERDICT_SLOWER
    assert stats.decide(slower, slower.p_value, True)[0] == stats.VERDICT_FASTER  # a throughput 10% higher
    small = _test(math.log(1.01), 0.002)  # significant, but 1% < min-effect 2%
    verdict, why = stats.decide(small, small.p_value, False)
    assert verdict == stats.VERDICT_BELOW_MIN_EFFECT and "smaller than 2.0%" in why
    assert stats.decide(small, small.p_value, False, min_effect=0.005)[0] == stats.VERDICT_SLOWER
    tight = _test(math.log(1.002), 0.004)  # not significant, interval inside ±2%
    assert stats.decide(tight, tight.p_value, False)[0] == stats.VERDICT_NO_CHANGE
    wide = _test(math.log(1.02), 0.03)
    assert stats.decide(wide, wide.p_value, False)[0] == stats.VERDICT_INCONCLUSIVE
    assert stats.decided(stats.VERDICT_NO_CHANGE, tight, min_effect=0.02, alpha=0.05)
    assert not stats.decided(stats.VERDICT_INCONCLUSIVE, wide, min_effect=0.02, alpha=0.05)


def test_power_of_the_rule_by_hand() -> None:
    # known se (huge df): power = P(N(δ, se²) > max(z·se, log 1.02)); δ = log 1.05, se 0.01, one test
    power = stats.rule_power(math.log(1.05), 0.01, 1e7, 1, alpha=0.05, min_effect=0.02)
    expected = scipy_stats.norm.sf((max(1.959964 * 0.01, math.log(1.02)) - math.log(1.05)) / 0.01)
    assert power == pytest.approx(expected, abs=1e-3)
    # the min-effect rule caps power at about one half for a change of exactly min_effect
    assert stats.rule_power(math.log(1.02), 0.0001, 1e7, 1, alpha=0.05, min_effect=0.02) == pytest.approx(0.5, abs=0.01)
    detects = stats.detectable_change(0.01, 1e7, 4, alpha=0.05, min_effect=0.02)
    more_tests = stats.detectable_change(0.01, 1e7, 40, alpha=0.05, min_effect=0.02)
    assert 0.02 < detects < more_tests  # Holm's worst case grows with the family
    assert math.isnan(stats.detectable_change(math.nan, math.nan, 4, alpha=0.05, min_effect=0.02))
    spread = stats.ProcessSpread(variance=0.02**2, paired=True)
    needed = stats.processes_for_change(spread, 0.06, 4, alpha=0.05, min_effect=0.02)
    assert needed is not None and needed >= 2
    assert stats.processes_for_change(spread, 0.02, 4, alpha=0.05, min_effect=0.02) is None  # never reachable


def test_quantile_intervals_from_order_statistics() -> None:
    from scipy.stats import binom

    values = np.arange(1.0, 61.0)  # 60 calls
    low, high = stats.quantile_interval(values, 0.9, 0.95)
    lower, upper = int(low), int(high)  # the values are their own ranks
    assert binom.cdf(lower - 1, 60, 0.9) <= 0.025 and binom.sf(upper - 1, 60, 0.9) <= 0.025
    assert binom.cdf(lower, 60, 0.9) > 0.025  # the tightest such ranks
    assert stats.quantile_interval(values[:20], 0.9, 0.95) is None  # 0.9²⁰ = 12% > 2.5%: too few calls
    assert stats.quantile_interval(values, 0.99, 0.95) is None
    # distribution-free coverage of the true p90 of an exponential, 400 seeded samples of 60
    rng = np.random.default_rng(4)
    truth = -math.log(0.1)
    hits = 0
    for _ in range(400):
        interval = stats.quantile_interval(rng.exponential(size=60), 0.9, 0.95)
        assert interval is not None
        hits += interval[0] <= truth <= interval[1]
    assert hits / 400 >= 0.93  # at least nominal (±1.1 points)


def test_tail_ratios_get_no_interval_from_dependent_values() -> None:
    rng = np.random.default_rng(2)
    base, cont = rng.exponential(size=80) + 1, rng.exponential(size=80) + 1
    independent = stats.tail_ratio("p90", 0.9, base, cont, independent=True)
    assert independent.interval is not None and independent.interval[0] < independent.ratio < independent.interval[1]
    assert stats.tail_ratio("p90", 0.9, base, cont, independent=False).interval is None


def test_geometric_mean_interval() -> None:
    one = _test(math.log(1.05), 0.01)
    mean = stats.geometric_mean_of([one])
    assert mean.ratio == pytest.approx(1.05) and mean.interval == pytest.approx(one.interval(0.95))
    two = stats.geometric_mean_of([one, _test(math.log(0.95), 0.01)])
    assert two.ratio == pytest.approx(math.sqrt(1.05 * 0.95)) and two.interval is not None
    assert stats.geometric_mean_of([one, stats.no_test(1, 1, "one process")]).interval is None


def test_looks_spend_alpha_in_shares() -> None:
    from tokbench.analysis.sequential import plan_looks

    plan = plan_looks(4, 20, 0.05)
    assert plan.pairs == (4, 6, 9, 14, 20)
    assert sum(plan.alphas) == pytest.approx(0.05) and all(a > 0 for a in plan.alphas)
    assert plan.alphas[0] == pytest.approx(0.05 * (4 / 20) ** 2)
    assert plan.look_at(9) == 2 and plan.look_at(10) is None and plan.next_look(10) == 3
    with pytest.raises(ValueError):
        plan_looks(1, 20, 0.05)


def test_per_call_samples_match_the_pooled_metric_samples() -> None:
    from tokbench.analysis.samples import sample_values as metric_samples
    from tokbench.schema.records import GenerationTrace

    traces = [
        GenerationTrace(
            t0_ns=start,
            end_ns=start + 9_000_000,
            token_timestamps_ns=((start + 2_000_000, start + 4_000_000, start + 7_000_000),) * 2,
            prompt_tokens=(8, 8),
            generated_tokens=(3, 3),
            output_shape=(2, 11),
        )
        for start in (0, 50_000_000)
    ]
    grouped = stats.per_call_samples(traces)
    pooled = metric_samples(traces)
    for name, calls in grouped.items():
        assert len(calls) == 2
        assert np.concatenate(calls).tolist() == pytest.approx(pooled[name])


def test_change_points_found_at_known_steps() -> None:
    rng = np.random.default_rng(5)
    one_step = np.r_[rng.normal(100, 1, 12), rng.normal(110, 1, 12)]
    points = find_change_points(one_step)
    assert [point.index for point in points] == [12]
    assert points[0].relative_change == pytest.approx(0.10, abs=0.02)
    assert points[0].p_value <= 0.01
    two_steps = np.r_[rng.normal(100, 1, 10), rng.normal(90, 1, 10), rng.normal(105, 1, 10)]
    assert [point.index for point in find_change_points(two_steps)] == [10, 20]


@pytest.mark.parametrize("seed", range(5))
def test_no_change_point_in_a_flat_noisy_series(seed: int) -> None:
    flat = np.random.default_rng(100 + seed).normal(100, 3, 30)
    assert find_change_points(flat, seed=seed) == []


def test_change_points_are_reproducible_and_validate_input() -> None:
    series = np.r_[np.full(6, 10.0), np.full(6, 12.0)] + np.random.default_rng(6).normal(0, 0.1, 12)
    assert find_change_points(series, seed=3) == find_change_points(series, seed=3)
    with pytest.raises(ValueError):
        find_change_points([1.0, math.nan, 2.0])
    assert find_change_points([1.0, 2.0, 3.0]) == []  # shorter than two minimum segments


def test_selector_syntax_errors_are_clear() -> None:
    from tokbench.results.selectors import SelectorError, parse_selector

    assert parse_selector("sweep=ab12, run=3-7,latest") == {"sweep": "ab12", "run": "3-7", "latest": ""}
    for bad, fragment in (("colour=red", "unknown selector key"), ("sweep=", "needs a value"), ("", "empty")):
        with pytest.raises(SelectorError, match=fragment):
            parse_selector(bad)


def test_a_version_1_comparison_still_loads_and_renders() -> None:
    """A comparison JSON written before the process became the unit (schema 1: bootstrap CI, calls for 1%)."""
    from rich.console import Console

    from tokbench.report.compare_view import render_json, render_markdown, render_terminal
    from tokbench.schema.comparison import ComparisonReport

    metric = {"metric": "e2e_latency_ms", "unit": "ms", "higher_is_better": False, "baseline_calls": 20,
              "contender_calls": 20, "median": {"statistic": "median", "baseline": 10.0, "contender": 11.0,
              "ratio": 1.1, "ci_low": 1.05, "ci_high": 1.15}, "tails": [{"statistic": "p90", "baseline": 12.0,
              "contender": 13.0, "ratio": 1.083, "ci_low": 1.0, "ci_high": 1.2}], "p_value": 0.001,
              "p_adjusted": 0.007, "verdict": "slower", "verdict_reason": "adjusted p 0.007 < 0.05",
              "detectable_change": 0.05, "calls_for_1pct": 900}  # fmt: skip
    workload = {"workload_key": "k", "name": "w", "device": "cpu", "baseline_runs": ["a.json"],
                "contender_runs": ["b.json"], "metrics": [metric], "outputs_changed": False,
                "environment_differences": [], "warnings": [], "verdict": "slower"}  # fmt: skip
    data = {"baseline_source": "a", "contender_source": "b", "min_effect": 0.02, "alpha": 0.05,
            "correction": "holm", "resamples": 2000, "seed": 0, "workloads": [workload], "unmatched": [],
            "geometric_means": [{"metric": "e2e_latency_ms", "workloads": 1, "ratio": 1.1}], "warnings": [],
            "schema_version": 1, "regressed": True}  # fmt: skip
    report = ComparisonReport.from_dict(data)
    assert report.schema_version == 1 and report.regressed and report.workloads[0].metrics[0].test is None
    console = Console(record=True, width=200)
    console.print(render_terminal(report))
    text = console.export_text()
    assert "900 calls" in text and "version 1 comparison" in text and "×1.100" in text
    assert "| E2E latency |" in render_markdown(report)
    assert ComparisonReport.from_dict(json.loads(render_json(report))) == report


def test_results_stored_by_older_versions_still_compare() -> None:
    from pathlib import Path

    from tokbench.results.comparison import compare
    from tokbench.results.selectors import select

    data = Path(__file__).parents[1] / "data"
    for name in ("result-v1.json", "result-v2.json"):
        runs = select(str(data / name))
        # the same calls as another process (its own start time: the same measurement on both sides is refused)
        other = [
            dataclasses.replace(run, result=dataclasses.replace(run.result, started_at="2026-01-01T00:00:00+00:00"))
            for run in runs
        ]
        report = compare(runs, other)  # one process a side: no verdict
        assert report.workloads and not report.regressed
        assert {m.verdict for m in report.workloads[0].metrics} == {stats.VERDICT_INCONCLUSIVE}
        assert all(m.median.ratio == pytest.approx(1.0) for m in report.workloads[0].metrics)

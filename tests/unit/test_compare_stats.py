"""The comparison statistics and the change-point finder on data with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokbench.analysis import compare as stats
from tokbench.analysis.changepoints import find_change_points


def test_mann_whitney_without_ties_matches_the_hand_computed_value() -> None:
    # x ranks 1, 2, 3 → R1 = 6, U1 = 6 − 3·4/2 = 0; mean 3·3/2 = 4.5; var 9/12 · 7 = 5.25
    # z = (4.5 − 0.5) / √5.25 = 1.745743; p = erfc(z/√2) = 0.080856 (scipy's asymptotic answer too)
    test = stats.mann_whitney_u([1, 2, 3], [4, 5, 6])
    assert test.u_statistic == 0.0
    assert test.z_score == pytest.approx(4 / math.sqrt(5.25))
    assert test.p_value == pytest.approx(0.080856, abs=1e-6)
    # symmetric: swapping the sides changes U to n1·n2 − U, not p
    assert stats.mann_whitney_u([4, 5, 6], [1, 2, 3]).p_value == pytest.approx(test.p_value)


def test_mann_whitney_tie_correction_matches_the_hand_computed_value() -> None:
    # pooled sorted 1,2,2,2,3,3,4,4 → average ranks 1, 3,3,3, 5.5,5.5, 7.5,7.5
    # x = 1,2,2,3 → R1 = 1+3+3+5.5 = 12.5, U1 = 12.5 − 10 = 2.5; mean 8
    # ties 3,2,2 → Σ(t³−t) = 24+6+6 = 36; var = 16/12 · (9 − 36/56) = 11.142857
    test = stats.mann_whitney_u([1, 2, 2, 3], [2, 3, 4, 4])
    assert test.u_statistic == 2.5
    variance = 16 / 12 * (9 - 36 / 56)
    assert test.z_score == pytest.approx((5.5 - 0.5) / math.sqrt(variance))
    assert test.p_value == pytest.approx(math.erfc(test.z_score / math.sqrt(2)))
    assert test.p_value == pytest.approx(0.134, abs=1e-3)


def test_mann_whitney_all_tied_is_not_significant() -> None:
    assert stats.mann_whitney_u([5, 5, 5], [5, 5]).p_value == 1.0


def test_holm_adjustment_by_hand() -> None:
    # sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 → max(0.06, 0.04) = 0.06
    assert stats.holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm_adjust([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_normal_quantile() -> None:
    assert stats._normal_quantile(0.975) == pytest.approx(1.959964, abs=1e-6)
    assert stats._normal_quantile(0.8) == pytest.approx(0.841621, abs=1e-6)
    assert stats._normal_quantile(0.001) == pytest.approx(-3.090232, abs=1e-6)


def _calls(rng: np.random.Generator, count: int, centre: float, spread: float, per_call: int = 1) -> list[np.ndarray]:
    # each call has its own level (a call-wide offset) plus per-value noise: values in a call are correlated
    return [centre + rng.normal(0, spread) + rng.normal(0, spread / 4, per_call) for _ in range(count)]


def test_a_known_slowdown_is_slower_with_its_ratio_inside_the_ci() -> None:
    rng = np.random.default_rng(1)
    baseline, contender = _calls(rng, 30, 100.0, 1.0), _calls(rng, 30, 105.0, 1.0)
    median, *tails = stats.bootstrap_ratios(baseline, contender, seed=0)
    assert median.ci_low < 1.05 < median.ci_high
    assert median.ci_low > 1.0
    assert [tail.statistic for tail in tails] == ["p90", "p99"]
    rank = stats.mann_whitney_u(stats.call_values(baseline), stats.call_values(contender))
    verdict, _ = stats.decide(median, rank.p_value, False, 30, 30)
    assert verdict == stats.VERDICT_SLOWER
    # the same change on a throughput (higher is better) is faster
    assert stats.decide(median, rank.p_value, True, 30, 30)[0] == stats.VERDICT_FASTER


def test_same_distribution_is_no_significant_change_and_small_samples_inconclusive() -> None:
    rng = np.random.default_rng(2)
    baseline, contender = _calls(rng, 40, 100.0, 0.5), _calls(rng, 40, 100.0, 0.5)
    median = stats.bootstrap_ratios(baseline, contender, seed=0)[0]
    rank = stats.mann_whitney_u(stats.call_values(baseline), stats.call_values(contender))
    assert stats.decide(median, rank.p_value, False, 40, 40)[0] == stats.VERDICT_NO_CHANGE
    assert stats.decide(median, rank.p_value, False, 4, 40)[0] == stats.VERDICT_INCONCLUSIVE
    # very noisy data: the CI reaches beyond ±2% → inconclusive, not "no change"
    noisy_base, noisy_cont = _calls(rng, 8, 100.0, 10.0), _calls(rng, 8, 100.0, 10.0)
    noisy = stats.bootstrap_ratios(noisy_base, noisy_cont, seed=0)[0]
    noisy_rank = stats.mann_whitney_u(stats.call_values(noisy_base), stats.call_values(noisy_cont))
    assert stats.decide(noisy, noisy_rank.p_value, False, 8, 8)[0] == stats.VERDICT_INCONCLUSIVE


def test_a_significant_change_below_min_effect_is_no_significant_change() -> None:
    rng = np.random.default_rng(3)
    baseline, contender = _calls(rng, 200, 100.0, 0.2), _calls(rng, 200, 101.0, 0.2)
    median = stats.bootstrap_ratios(baseline, contender, seed=0, resamples=500)[0]
    rank = stats.mann_whitney_u(stats.call_values(baseline), stats.call_values(contender))
    assert rank.p_value < 1e-6
    verdict, why = stats.decide(median, rank.p_value, False, 200, 200)
    assert verdict == stats.VERDICT_NO_CHANGE and "smaller than" in why
    assert stats.decide(median, rank.p_value, False, 200, 200, min_effect=0.005)[0] == stats.VERDICT_SLOWER


def test_bootstrap_resamples_whole_calls_and_is_seeded() -> None:
    rng = np.random.default_rng(4)
    equal = _calls(rng, 12, 10.0, 0.3, per_call=20)
    unequal = [np.concatenate([call, call[:3]]) if index % 2 else call for index, call in enumerate(equal)]
    first = stats.bootstrap_ratios(equal, unequal, seed=7, resamples=300)
    again = stats.bootstrap_ratios(equal, unequal, seed=7, resamples=300)
    assert first == again
    # Correlated values within a call: resampling calls gives a wider CI than resampling values would.
    pooled = [np.array([value]) for call in equal for value in call]
    by_call = stats.bootstrap_ratios(equal, equal, seed=0, resamples=500)[0]
    by_value = stats.bootstrap_ratios(pooled, pooled, seed=0, resamples=500)[0]
    assert by_call.ci_high - by_call.ci_low > by_value.ci_high - by_value.ci_low


def test_detectability_shrinks_with_more_calls() -> None:
    small = stats.detectability(0.01, 10, 10)
    # (1.96 + 0.84) · 0.01 on the log scale ≈ 2.8%
    assert small.detectable_change == pytest.approx(math.expm1(2.801585 * 0.01), rel=1e-4)
    # 1% needs se = log(1.01)/2.8016 → n = 2·k/se² with k = 0.01²/(2/10)
    k = 0.01**2 / 0.2
    assert small.calls_for_target == math.ceil(2 * k / (math.log(1.01) / 2.801585) ** 2)
    assert stats.detectability(0.005, 40, 40).detectable_change < small.detectable_change


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


def test_several_runs_a_side_are_resampled_runs_first() -> None:
    # three processes a side, each at its own level (±3%): the call-level CI ignores that spread, the two-level
    # bootstrap (runs, then calls) holds it
    rng = np.random.default_rng(8)
    base, cont, base_runs, cont_runs = [], [], [], []
    for run in range(3):
        base_level, cont_level = 100 * (1 + rng.normal(0, 0.03)), 100 * (1 + rng.normal(0, 0.03))
        base += _calls(rng, 10, base_level, 0.2)
        cont += _calls(rng, 10, cont_level, 0.2)
        base_runs += [run] * 10
        cont_runs += [run] * 10
    flat = stats.bootstrap_ratios(base, cont, seed=0, resamples=500)[0]
    nested = stats.bootstrap_ratios(
        base, cont, seed=0, resamples=500, baseline_runs=base_runs, contender_runs=cont_runs
    )[0]
    assert nested.ratio == flat.ratio
    assert nested.ci_high - nested.ci_low > 2 * (flat.ci_high - flat.ci_low)


def test_selector_syntax_errors_are_clear() -> None:
    from tokbench.results.selectors import SelectorError, parse_selector

    assert parse_selector("sweep=ab12, run=3-7,latest") == {"sweep": "ab12", "run": "3-7", "latest": ""}
    for bad, fragment in (("colour=red", "unknown selector key"), ("sweep=", "needs a value"), ("", "empty")):
        with pytest.raises(SelectorError, match=fragment):
            parse_selector(bad)

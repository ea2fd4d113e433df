"""Change points with known answers: temporary regressions, the newest runs, exact ties, impossible settings,
drifting (AR(1)) histories, and the false-alarm rate by seeded simulation calling the real detector."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from tokbench.analysis import changepoints as cp
from tokbench.analysis.changepoints import analyse_series, find_change_points


def ar1(rng: np.random.Generator, n: int, rho: float) -> np.ndarray:
    noise = rng.normal(size=n)
    series = np.empty(n)
    series[0] = noise[0] / math.sqrt(1 - rho * rho)
    for t in range(1, n):
        series[t] = rho * series[t - 1] + noise[t]
    return series


def regression_fix(n: int, start: int, duration: int, sigma: float, seed: int, size: float = 30.0) -> np.ndarray:
    """otava-test-data's regression_fix: 100, then 100 + size for ``duration`` runs, then 100 again."""
    series = np.full(n, 100.0)
    series[start : start + duration] += size
    return series + np.random.default_rng(seed).normal(0, sigma, n) if sigma else series


# --- temporary changes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.0, 2.0])
def test_a_regression_that_was_fixed_is_found_at_both_ends(sigma: float) -> None:
    # otava-test-data's regression_fix(50, 100, 130, start 16, 10 runs): the old detector found neither end
    series = regression_fix(50, 16, 10, sigma, seed=42)
    points = find_change_points(series, permutations=199)
    assert [point.index for point in points] == [16, 26]
    assert points[0].relative_change == pytest.approx(0.30, abs=0.03)
    assert points[1].relative_change == pytest.approx(-0.30 / 1.30, abs=0.03)


@pytest.mark.parametrize(("n", "duration"), [(60, 3), (60, 8), (60, 15), (120, 12)])
def test_a_short_10_sigma_regression_is_found_however_long_it_lasts(n: int, duration: int) -> None:
    start = n // 2 - duration // 2
    series = regression_fix(n, start, duration, sigma=1.0, seed=n + duration, size=10.0)
    points = find_change_points(series, permutations=199)
    assert [point.index for point in points] == [start, start + duration]


def test_steps_are_still_found_at_their_runs() -> None:
    rng = np.random.default_rng(5)
    one_step = np.r_[rng.normal(100, 1, 12), rng.normal(110, 1, 12)]
    (point,) = find_change_points(one_step)
    assert point.index == 12 and point.earliest <= 12 <= point.latest
    two_steps = np.r_[rng.normal(100, 1, 10), rng.normal(90, 1, 10), rng.normal(105, 1, 10)]
    assert [point.index for point in find_change_points(two_steps)] == [10, 20]


# --- the newest runs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_a_10_sigma_change_in_the_newest_two_runs_is_found_at_its_run(seed: int) -> None:
    series = np.r_[np.random.default_rng(seed).normal(100, 1, 58), np.random.default_rng(seed + 9).normal(110, 1, 2)]
    (point,) = find_change_points(series)
    assert point.index == 58 and point.runs_after == 2
    assert point.earliest <= 58 <= point.latest  # the bisect range holds the culprit (old defect: it started at 57)


def test_a_change_at_the_newest_run_is_watched_not_reported() -> None:
    series = np.r_[np.random.default_rng(3).normal(100, 1, 59), 112.0]
    analysis = analyse_series(series)
    assert analysis.changes == ()
    assert analysis.watch is not None and analysis.watch.runs == 1 and analysis.watch.runs_needed == 2
    assert analysis.watch.relative_change == pytest.approx(0.12, abs=0.01)
    # one more run at that level: now it is a change, resting on the two newest runs
    (point,) = find_change_points(np.r_[series, 111.5])
    assert point.index == 59 and point.runs_after == 2
    # an ordinary newest run is not watched
    assert analyse_series(np.random.default_rng(4).normal(100, 1, 40)).watch is None


@pytest.mark.parametrize(("n", "position"), [(60, 3), (60, 30), (60, 55), (30, 15)])
def test_the_bisect_range_holds_the_first_run_of_a_clear_step(n: int, position: int) -> None:
    # 4σ steps: every change reported near the step has the culprit in its range; ≥ 9 of 10 steps are found
    # (an independent history looks autocorrelated by chance 5% of the time and is prewhitened, losing power)
    found = 0
    for seed in range(10):
        series = np.random.default_rng([n, position, seed]).normal(0, 1, n)
        series[position:] += 4.0
        near = [point for point in find_change_points(series, seed=seed, permutations=199)
                if abs(point.index - position) <= 5]  # fmt: skip
        assert all(point.earliest <= position <= point.latest for point in near)
        found += bool(near)
    assert found >= 9


# --- exact ties --------------------------------------------------------------------------------------------------


def _exact_best(values: list[int], min_size: int, end_size: int) -> Fraction:
    """max over the candidates of q, in exact rational arithmetic (the definition, no prefix sums)."""
    n, best = len(values), None
    for tau in range(min_size, n):
        for kappa in range(tau + min_size, n + 1):
            best = _max(best, _q(values, tau, kappa))
        for kappa in (n,) if n - tau >= end_size and n - tau < min_size else ():
            best = _max(best, _q(values, tau, kappa))
    assert best is not None
    return best


def _max(best: Fraction | None, value: Fraction) -> Fraction:
    return value if best is None or value > best else best


def _q(values: list[int], tau: int, kappa: int) -> Fraction:
    x, y = values[:tau], values[tau:kappa]
    a, b = len(x), len(y)
    cross = Fraction(sum(abs(u - v) for u in x for v in y), a * b)
    within_x = Fraction(sum(abs(u - v) for u, v in itertools.permutations(x, 2)), a * (a - 1))
    within_y = Fraction(sum(abs(u - v) for u, v in itertools.permutations(y, 2)), b * (b - 1))
    return Fraction(a * b, a + b) * (2 * cross - within_x - within_y)


@pytest.mark.parametrize("values", [[100] * 4 + [120] * 4, [1, 1, 2, 2, 9, 9, 9, 9, 1, 2], [3, 1, 4, 1, 5, 9, 2, 6]])
def test_ties_are_decided_exactly_as_rational_arithmetic_decides_them(values: list[int]) -> None:
    # The permutations the detector draws, re-scored exactly on its integer grid: the same decisions.
    n, permutations = len(values), 199
    grid, _ = cp._grid(np.asarray(values, dtype=float))
    pairs = list(itertools.combinations(range(n), 2))
    assert [grid[i] == grid[j] for i, j in pairs] == [values[i] == values[j] for i, j in pairs]  # ties kept
    cand = cp._Candidates.of(n, 3, 2)
    observed = cp._best_split(grid, cand)
    assert observed is not None
    exact = [int(v) for v in grid]
    target = _exact_best(exact, 3, 2)
    assert Fraction(observed.numerator, observed.denominator) == target
    order = np.random.default_rng(11).permuted(np.tile(np.arange(n), (permutations, 1)), axis=1)
    exceeded = cp._exceedances(grid, cand, observed, order)
    expected = [_exact_best([exact[i] for i in row], 3, 2) >= target for row in order]
    assert exceeded.tolist() == expected
    assert 0 < sum(expected) < permutations  # the case holds real ties and real non-exceedances


def test_a_short_perfect_step_is_no_longer_significant_by_rounding() -> None:
    # 8 runs, a perfect step: 2/70 of permutations reproduce it exactly, so p ≥ 0.028 (it printed 0.005)
    analysis = analyse_series([100.0] * 4 + [120.0] * 4, permutations=999)
    assert analysis.changes == ()
    assert "not a lasting step" in analysis.note


# --- what cannot be decided ----------------------------------------------------------------------------------------


def test_the_least_possible_p_is_hand_computed_and_a_true_bound() -> None:
    assert cp.smallest_p(6) == pytest.approx(1 / 20)  # X and Y of 3: 1/C(6,3); the newest 2: 1/15
    assert cp.smallest_p(8) == pytest.approx(1 / (math.comb(8, 3) * math.comb(5, 3)))
    assert cp.smallest_p(5) == pytest.approx(1 / math.comb(5, 2))  # only the newest-2 split fits
    assert cp.smallest_p(4) == 1.0
    assert cp.smallest_step_p(10) == pytest.approx(1 / 252)
    # every arrangement of a perfect 6-run step, scored exactly: the true p is above the bound
    values = [0, 0, 0, 1, 1, 1]
    target = _exact_best(values, 3, 2)
    arrangements = set(itertools.permutations(values))
    exact_p = sum(_exact_best(list(a), 3, 2) >= target for a in arrangements) / len(arrangements)
    assert exact_p >= cp.smallest_p(6)


def test_histories_too_short_say_so_and_how_many_runs_would_do() -> None:
    analysis = analyse_series([1.0, 1.1, 0.9, 2.0, 2.1, 1.9])
    assert analysis.changes == ()
    assert "6 run(s) cannot show a change at p ≤ 0.01" in analysis.note and "7 runs can" in analysis.note
    decidable, note = cp.decidability_note(8, 0.01)
    assert decidable and "not a lasting step" in note and "9 runs can" in note
    assert cp.decidability_note(40, 0.01) == (True, "")


def test_settings_that_can_never_detect_are_refused_with_the_reason() -> None:
    assert "98 permutations can never reach p ≤ 0.01" in cp.settings_problem(98, 0.01)
    assert "use at least 99" in cp.settings_problem(98, 0.01)
    assert cp.settings_problem(99, 0.01) == ""
    assert "999" in cp.settings_problem(199, 0.001)
    with pytest.raises(ValueError, match="can never reach"):
        find_change_points(np.arange(30.0), permutations=50)
    assert cp.automatic_permutations(0.01) == 499 and cp.automatic_permutations(0.01 / 40) == 19_999
    with pytest.raises(ValueError):
        find_change_points([1.0, math.nan, 2.0])


# --- calibration: false alarms by seeded simulation, the real detector ------------------------------------------


def _alarm_rate(series: list[np.ndarray], significance: float, whiten: bool = True) -> float:
    alarms = sum(
        bool(find_change_points(x, significance=significance, permutations=199, seed=i, whiten=whiten))
        for i, x in enumerate(series)
    )
    return alarms / len(series)


def test_false_alarms_on_flat_independent_histories_stay_at_the_level() -> None:
    # 240 flat histories (n = 30 and 60, Gaussian and heavy-tailed) at significance 0.05: the rate of any alarm
    # must be ≤ 0.05 + 2.5 Monte-Carlo standard errors (SE = √(0.05·0.95/240) = 0.014)
    rng = np.random.default_rng(2026)
    series = [rng.normal(100, 3, n) for n in (30, 60) for _ in range(60)]
    series += [100 + 2 * rng.standard_t(3, n) for n in (30, 60) for _ in range(60)]
    rate = _alarm_rate(series, 0.05)
    assert rate <= 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / len(series)), rate


def test_drifting_histories_raise_far_fewer_alarms_after_prewhitening() -> None:
    # Flat AR(1) histories of 60 runs at the default 1%. Measured by benchmarks/changepoints_vs_otava.py (60 series
    # each, n 30 and 60): 18% ±5% at ρ 0.5, 32% ±6% at ρ 0.8. Here 30 series each: SE ≤ 0.09.
    for rho, unwhitened_at_least, whitened_at_most in ((0.5, 0.15, 0.33), (0.8, 0.60, 0.37)):
        rng = np.random.default_rng([int(rho * 10), 60])
        series = [ar1(rng, 60, rho) for _ in range(30)]
        assert _alarm_rate(series, 0.01) <= whitened_at_most
        assert _alarm_rate(series[:20], 0.01, whiten=False) >= unwhitened_at_least


def test_the_autocorrelation_estimate_ignores_steps_and_is_calibrated_on_independent_runs() -> None:
    rng = np.random.default_rng(8)
    for n in (30, 120):
        independent = [cp.lag1_autocorrelation(rng.normal(size=n)) for _ in range(400)]
        share = np.mean(np.asarray(independent) > cp.chance_autocorrelation(n))
        assert share <= 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / 400)  # the gate opens for ≤ 5% of independent histories
        drifting = [cp.lag1_autocorrelation(ar1(rng, n, 0.8)) for _ in range(100)]
        assert np.median(drifting) == pytest.approx(0.8, abs=0.1)
    stepped = np.r_[rng.normal(0, 1, 40), rng.normal(8, 1, 40)]
    assert cp.removable_autocorrelation(stepped) == 0.0  # a level shift is not autocorrelation

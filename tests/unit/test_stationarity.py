"""Steady-state, trend and outlier tests on synthetic series with known answers."""

from __future__ import annotations

import math
import random

import pytest

from tokbench.analysis.stationarity import mann_kendall, steady_state_test
from tokbench.analysis.stats import tukey_outliers


def _noisy(level: float, count: int, relative_noise: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [level * (1 + rng.uniform(-relative_noise, relative_noise)) for _ in range(count)]


def test_mann_kendall_by_hand() -> None:
    rising = mann_kendall([float(v) for v in range(10)])
    # all 45 pairs concordant; variance 10 * 9 * 25 / 18 = 125; continuity-corrected z = 44 / sqrt(125)
    assert rising.s == 45
    assert rising.z == pytest.approx(44 / math.sqrt(125))
    assert rising.p_value == pytest.approx(math.erfc(44 / math.sqrt(125) / math.sqrt(2)))
    assert rising.significant() and rising.direction == "up"
    falling = mann_kendall([float(v) for v in range(10, 0, -1)])
    assert falling.s == -45 and falling.direction == "down" and falling.significant()
    # ties: S = 2; variance (3*2*11 - 2*1*9) / 18 = 48 / 18; z = 1 / sqrt(48 / 18)
    tied = mann_kendall([1.0, 1.0, 2.0])
    assert tied.s == 2
    assert tied.z == pytest.approx(1 / math.sqrt(48 / 18))
    assert not tied.significant()
    assert mann_kendall([3.0, 3.0, 3.0, 3.0]).p_value == 1.0
    assert mann_kendall([1.0, 2.0]).p_value == 1.0  # too short to show anything


def test_mann_kendall_sees_a_drift_under_noise_but_not_stationary_noise() -> None:
    drifting = [v * (1 + 0.01 * i) for i, v in enumerate(_noisy(100.0, 60, 0.05, seed=1))]
    assert mann_kendall(drifting).significant() and mann_kendall(drifting).direction == "up"
    assert not mann_kendall(_noisy(100.0, 60, 0.05, seed=2)).significant()


def test_steady_state_on_stationary_noise() -> None:
    result = steady_state_test(_noisy(100.0, 6, 0.02, seed=3))
    assert result.steady and result.window == 3
    assert result.shift <= 0.05 and result.allowed_shift >= 0.05


def test_steady_state_fails_on_a_ramp_even_with_tight_windows() -> None:
    ramp = [200.0, 180.0, 160.0, 140.0, 120.0, 100.0]
    result = steady_state_test(ramp)
    # older median 180, newer median 120: shift 0.5; IQR of each window 20 -> noise 1/6
    assert result.shift == pytest.approx(0.5)
    assert result.allowed_shift == pytest.approx(20 / 120)
    assert not result.steady


def test_steady_state_windows_shrink_for_short_series() -> None:
    assert steady_state_test([10.0, 10.2, 10.1, 10.0, 10.1]).window == 2
    short = steady_state_test([10.0])
    assert not short.steady and short.window == 0
    with pytest.raises(ValueError, match="window"):
        steady_state_test([1.0, 2.0], window=0)


def test_steady_state_is_reached_right_after_a_changepoint() -> None:
    series = [500.0, 400.0, 300.0, 250.0, *_noisy(100.0, 10, 0.02, seed=4)]  # transient ends at index 4
    verdicts = [steady_state_test(series[: end + 1]).steady for end in range(len(series))]
    # the windows (3 + 3 values) lie wholly after the transient from index 4 + 5 = 9 on
    assert verdicts[9:] == [True] * (len(series) - 9)
    assert not any(verdicts[:7])


def test_tukey_far_out_outliers_by_hand() -> None:
    values = [10.0, 11.0, 12.0, 13.0, 14.0, 100.0, -50.0]
    # sorted: -50 10 11 12 13 14 100 -> Q1 10.5, Q3 13.5, IQR 3 -> fences 1.5 and 22.5
    assert tukey_outliers(values) == [5, 6]
    assert tukey_outliers([1.0, 2.0, 3.0, 4.0, 5.0]) == []
    heavy = _noisy(100.0, 200, 0.05, seed=7)
    for index in (13, 77, 150):
        heavy[index] = 1000.0
    assert tukey_outliers(heavy) == [13, 77, 150]


def test_mann_kendall_of_a_long_series_matches_the_pairwise_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    # the numpy S statistic works a block of rows at a time: check it against the plain double loop
    from tokbench.analysis import stationarity

    rng = random.Random(8)
    series = [round(rng.gauss(100.0, 5.0), 1) + 0.01 * i for i in range(700)]  # rounded: ties occur
    s = sum((later > earlier) - (later < earlier) for i, earlier in enumerate(series) for later in series[i + 1 :])
    assert mann_kendall(series).s == s
    monkeypatch.setattr(stationarity, "_PAIR_BLOCK", 7 * len(series))  # blocks of 7 rows
    assert mann_kendall(series).s == s

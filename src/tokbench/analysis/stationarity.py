"""Pure tests on a series of latencies, in the order they were measured: is it steady, does it drift.

- ``steady_state_test``: a two-window test (the pyperf idea of comparing two halves of the recent
  warmup values): the medians of the last two windows must agree within the larger of a tolerance and
  the noise inside the windows, and the two windows together must show no Mann-Kendall trend.
- ``mann_kendall``: the non-parametric trend test (S statistic, tie-corrected variance, normal
  approximation with continuity correction).

Builds on ``stats`` (never the other way round); outliers are a plain statistic there (``stats.tukey_outliers``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from tokbench.analysis.stats import TREND_ALPHA, interquartile_range, median
from tokbench.schema.policy import STEADY_STATE_TEST_NAME

STEADY_WINDOW = 3
STEADY_TOLERANCE = 0.05  # medians of the two windows may differ by 5% even on a quiet machine
# Pairs compared per numpy step in the Mann-Kendall S statistic (bounds memory for long series).
_PAIR_BLOCK = 1 << 22


@dataclass(frozen=True)
class TrendTest:
    """Mann-Kendall result: ``s`` (concordant minus discordant pairs), ``z`` and its two-sided p-value."""

    s: int
    z: float
    p_value: float

    @property
    def direction(self) -> str:
        return "up" if self.z > 0 else "down" if self.z < 0 else "none"

    def significant(self, alpha: float = TREND_ALPHA) -> bool:
        return self.p_value < alpha


def mann_kendall(values: ArrayLike) -> TrendTest:
    """Mann-Kendall trend test; fewer than 3 values can show no trend (z = 0, p = 1)."""
    series = np.asarray(values, dtype=np.float64)
    n = series.size
    if n < 3:
        return TrendTest(0, 0.0, 1.0)
    s = 0
    rows = max(1, _PAIR_BLOCK // n)
    for first in range(0, n - 1, rows):  # S = sum over i < j of sign(x_j - x_i), a block of rows at a time
        earlier = series[first : first + rows, None]
        signs = np.sign(series[None, :] - earlier)
        later = np.arange(n)[None, :] > np.arange(first, first + earlier.shape[0])[:, None]
        s += int(signs[later].sum())
    ties = np.unique(series, return_counts=True)[1].astype(np.int64)
    variance = (n * (n - 1) * (2 * n + 5) - int(np.sum(ties * (ties - 1) * (2 * ties + 5)))) / 18
    if variance <= 0 or s == 0:
        return TrendTest(s, 0.0, 1.0)
    z = (s - math.copysign(1, s)) / math.sqrt(variance)
    return TrendTest(s, z, math.erfc(abs(z) / math.sqrt(2)))


@dataclass(frozen=True)
class SteadyStateTest:
    """Outcome of ``steady_state_test`` on the recent values of a series.

    ``shift`` = |median(older window) - median(newer window)| / median(newer window);
    ``allowed_shift`` = max(tolerance, the larger window's IQR / median(newer window)).
    """

    steady: bool
    window: int
    shift: float
    allowed_shift: float
    trend_z: float
    trend_p_value: float

    NAME = STEADY_STATE_TEST_NAME

    @property
    def description(self) -> str:
        return (
            f"{self.NAME} (windows of {self.window}: shift {self.shift:.1%} vs allowed {self.allowed_shift:.1%}, "
            f"trend p={self.trend_p_value:.2f})"
        )


def steady_state_test(
    values: Sequence[float],
    window: int = STEADY_WINDOW,
    tolerance: float = STEADY_TOLERANCE,
    alpha: float = TREND_ALPHA,
) -> SteadyStateTest:
    """Is the end of ``values`` steady? Compares the last ``window`` values with the ``window`` before.

    With fewer than ``2 * window`` values the windows shrink to half of what there is; fewer than 2
    values are never steady. Steady when the window medians agree within the larger of ``tolerance``
    and the windows' own relative IQR (so noise alone does not keep a run warming up forever, while a
    ramp, whose windows are tight but far apart, fails), and the two windows show no significant
    Mann-Kendall trend.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    size = min(window, len(values) // 2)
    if size == 0:
        return SteadyStateTest(False, 0, math.inf, tolerance, 0.0, 1.0)
    older, newer = list(values[-2 * size : -size]), list(values[-size:])
    centre = median(newer)
    if centre <= 0:
        raise ValueError("steady-state test needs positive latencies")
    shift = abs(median(older) - centre) / centre
    noise = max(interquartile_range(older), interquartile_range(newer)) / centre
    allowed = max(tolerance, noise)
    trend = mann_kendall(older + newer)
    steady = shift <= allowed and not trend.significant(alpha)
    return SteadyStateTest(steady, size, shift, allowed, trend.z, trend.p_value)

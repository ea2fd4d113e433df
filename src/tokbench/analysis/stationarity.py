"""Pure tests on a series of latencies, in the order they were measured: is it steady, does it drift,
where does it change, which values are outliers. No numpy: exact, small, easy to hand-check.

- ``steady_state_test``: a two-window test (the pyperf idea of comparing two halves of the recent
  warmup values): the medians of the last two windows must agree within the larger of a tolerance and
  the noise inside the windows, and the two windows together must show no Mann-Kendall trend.
- ``mann_kendall``: the non-parametric trend test (S statistic, tie-corrected variance, normal
  approximation with continuity correction).
- ``changepoint``: the single split that best explains the series as two constant levels.
- ``tukey_outliers``: values beyond Tukey's far-out fences (quartiles ± 3 IQR).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from tokbench.analysis.stats import TREND_ALPHA, median, percentile
from tokbench.schema.policy import STEADY_STATE_TEST_NAME

STEADY_WINDOW = 3
STEADY_TOLERANCE = 0.05  # medians of the two windows may differ by 5% even on a quiet machine
FAR_OUT_FENCE = 3.0


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


def mann_kendall(values: Sequence[float]) -> TrendTest:
    """Mann-Kendall trend test; fewer than 3 values can show no trend (z = 0, p = 1)."""
    n = len(values)
    if n < 3:
        return TrendTest(0, 0.0, 1.0)
    s = 0
    for i in range(n - 1):
        earlier = values[i]
        for later in values[i + 1 :]:
            s += (later > earlier) - (later < earlier)
    ties = Counter(values).values()
    variance = (n * (n - 1) * (2 * n + 5) - sum(t * (t - 1) * (2 * t + 5) for t in ties)) / 18
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
    noise = max(_iqr(older), _iqr(newer)) / centre
    allowed = max(tolerance, noise)
    trend = mann_kendall(older + newer)
    steady = shift <= allowed and not trend.significant(alpha)
    return SteadyStateTest(steady, size, shift, allowed, trend.z, trend.p_value)


def _iqr(values: Sequence[float]) -> float:
    return percentile(values, 75.0) - percentile(values, 25.0)


def changepoint(values: Sequence[float]) -> int | None:
    """Index of the first value of the second level in the best two-level split (least squares).

    ``None`` for fewer than 2 values or when no split lowers the squared error (a constant series).
    """
    n = len(values)
    if n < 2:
        return None
    total = math.fsum(values)
    total_sq = math.fsum(v * v for v in values)
    cost_whole = total_sq - total * total / n
    best_index, best_cost = None, cost_whole
    prefix = prefix_sq = 0.0
    for split in range(1, n):
        prefix += values[split - 1]
        prefix_sq += values[split - 1] ** 2
        left = prefix_sq - prefix * prefix / split
        rest = total - prefix
        right = (total_sq - prefix_sq) - rest * rest / (n - split)
        cost = left + right
        if cost < best_cost - 1e-12 * max(1.0, abs(cost_whole)):
            best_index, best_cost = split, cost
    return best_index


def tukey_outliers(values: Sequence[float], fence: float = FAR_OUT_FENCE) -> list[int]:
    """Indices of the values outside [Q1 - fence * IQR, Q3 + fence * IQR] (3 = Tukey's "far out")."""
    if len(values) < 4:
        return []
    q1, q3 = percentile(values, 25.0), percentile(values, 75.0)
    spread = q3 - q1
    low, high = q1 - fence * spread, q3 + fence * spread
    return [i for i, v in enumerate(values) if v < low or v > high]

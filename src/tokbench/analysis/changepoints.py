"""Change points in a series of per-run medians: E-divisive means with a permutation test.

The method of Matteson & James (2014), as MongoDB runs it over its performance history (Daly et al., ICPE
2020) and Apache Otava (Hunter) after it: for a split τ of x₁..xₙ into X = x[:τ] and Y = x[τ:],

    q(τ) = τ(n−τ)/n · ( 2·mean|X−Y| − mean|X−X'| − mean|Y−Y'| )

(the energy distance between the two sides, alpha = 1), maximised over τ with at least ``min_size`` points a
side. Its significance: the share of random permutations of the same values whose best q is at least as
large (the permutation p-value, (k+1)/(P+1)). A significant split is kept, and each side is searched again
(binary segmentation) until no split is significant. A flat series has no split that beats its permutations.

Pure numpy; the permutations come from ``numpy.random.default_rng(seed)``, so the answer is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_PERMUTATIONS = 199
DEFAULT_SIGNIFICANCE = 0.01
DEFAULT_MIN_SIZE = 3


@dataclass(frozen=True)
class ChangePoint:
    """A change between ``index − 1`` and ``index`` of the series (the first point of the new level)."""

    index: int
    before_median: float  # median of the segment before (up to the previous change point)
    after_median: float  # median of the segment after (up to the next change point)
    p_value: float
    statistic: float  # q(τ)

    @property
    def relative_change(self) -> float:
        return self.after_median / self.before_median - 1.0 if self.before_median else float("inf")


def _best_split(distances: np.ndarray, min_size: int) -> tuple[int, float]:
    """The τ maximising q over one segment's distance matrix, via 2-D prefix sums (O(n²))."""
    n = distances.shape[0]
    prefix = np.zeros((n + 1, n + 1))
    prefix[1:, 1:] = distances.cumsum(0).cumsum(1)
    total = prefix[n, n]
    best_tau, best_q = -1, -np.inf
    for tau in range(min_size, n - min_size + 1):
        left = prefix[tau, tau]  # Σ over X×X (each pair twice)
        between = prefix[tau, n] - left  # Σ over X×Y
        right = total - left - 2 * between  # Σ over Y×Y (each pair twice)
        m = n - tau
        within_left = left / (tau * (tau - 1)) if tau > 1 else 0.0
        within_right = right / (m * (m - 1)) if m > 1 else 0.0
        q = tau * m / n * (2 * between / (tau * m) - within_left - within_right)
        if q > best_q:
            best_tau, best_q = tau, q
    return best_tau, float(best_q)


def _significance(
    values: np.ndarray, observed: float, min_size: int, permutations: int, rng: np.random.Generator
) -> float:
    exceed = 0
    for _ in range(permutations):
        shuffled = rng.permutation(values)
        _, q = _best_split(np.abs(shuffled[:, None] - shuffled[None, :]), min_size)
        if q >= observed:
            exceed += 1
    return (exceed + 1) / (permutations + 1)


def find_change_points(
    series: Sequence[float],
    *,
    min_size: int = DEFAULT_MIN_SIZE,
    permutations: int = DEFAULT_PERMUTATIONS,
    significance: float = DEFAULT_SIGNIFICANCE,
    seed: int = 0,
) -> list[ChangePoint]:
    """Every significant change point of ``series`` (in order), by E-divisive means + permutation tests."""
    if min_size < 2:
        raise ValueError("min_size must be at least 2 (a side needs a pair to have a spread)")
    values = np.asarray(series, dtype=float)
    if not np.all(np.isfinite(values)):
        raise ValueError("the series must be finite numbers")
    rng = np.random.default_rng(seed)
    found: dict[int, tuple[float, float]] = {}  # index -> (p, q)
    pending = [(0, len(values))]
    while pending:
        start, stop = pending.pop()
        segment = values[start:stop]
        if len(segment) < 2 * min_size:
            continue
        tau, q = _best_split(np.abs(segment[:, None] - segment[None, :]), min_size)
        if tau < 0 or q <= 0:
            continue
        p_value = _significance(segment, q, min_size, permutations, rng)
        if p_value > significance:
            continue
        found[start + tau] = (p_value, q)
        pending.extend([(start, start + tau), (start + tau, stop)])
    indices = sorted(found)
    bounds = [0, *indices, len(values)]
    return [
        ChangePoint(
            index=index,
            before_median=float(np.median(values[bounds[position] : index])),
            after_median=float(np.median(values[index : bounds[position + 2]])),
            p_value=found[index][0],
            statistic=found[index][1],
        )
        for position, index in enumerate(indices)
    ]

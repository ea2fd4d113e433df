"""When ``tokbench ab`` looks at its pairs, and how much of alpha each look may spend.

Looking after every pair and stopping at the first significant answer would inflate the error rate: each
look is another chance for noise to cross the line. The runner therefore looks only at planned pair counts
(a geometric schedule from ``min_pairs`` to ``max_pairs``) and each look spends its own share of alpha,
``alpha · (t_k^ρ − t_(k−1)^ρ)`` with ``t_k`` = pairs at look k ÷ max_pairs (a power-family spending
function: little early, most late). The shares add up to alpha, so by Bonferroni's inequality the chance of any
false verdict over every look and every hypothesis (Holm within a look) stays at most alpha, whatever the
correlation between looks. A run that ends between looks (budget, Ctrl-C) takes the share of the next planned
look: that share has not been spent. Calibrated by simulation in tests/unit/test_compare_calibration.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_MIN_PAIRS = 4
DEFAULT_MAX_PAIRS = 20
GROWTH = 1.5  # pairs at the next look ≈ 1.5 × the last
SPENDING_POWER = 2.0  # ρ of the power-family spending function


@dataclass(frozen=True)
class LookPlan:
    """The pair counts at which the runner looks, and the alpha each look spends (they sum to ``alpha``)."""

    pairs: tuple[int, ...]
    alphas: tuple[float, ...]
    alpha: float

    def look_at(self, pairs: int) -> int | None:
        """The index of the look at this pair count, None between looks."""
        return self.pairs.index(pairs) if pairs in self.pairs else None

    def next_look(self, pairs: int) -> int:
        """The first look at or after this pair count (the last look past the end)."""
        return next((index for index, count in enumerate(self.pairs) if count >= pairs), len(self.pairs) - 1)


def plan_looks(min_pairs: int, max_pairs: int, alpha: float) -> LookPlan:
    """Looks at min_pairs, then ×1.5 (rounded up, at least one more pair) until max_pairs, which is always one."""
    if not 2 <= min_pairs <= max_pairs:
        raise ValueError(f"need 2 <= min_pairs <= max_pairs, got {min_pairs} and {max_pairs}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    counts = [min_pairs]
    while counts[-1] < max_pairs:
        counts.append(min(max_pairs, max(counts[-1] + 1, math.ceil(counts[-1] * GROWTH))))
    spent = [(count / max_pairs) ** SPENDING_POWER for count in counts]
    alphas = [alpha * (now - before) for before, now in zip([0.0, *spent[:-1]], spent, strict=True)]
    return LookPlan(tuple(counts), tuple(alphas), alpha)

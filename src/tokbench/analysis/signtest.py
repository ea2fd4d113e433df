"""The exact two-sided sign test: are paired wins and losses (ties dropped) more lopsided than chance?

Used by the int4 tuner on its round-robin rounds (each round times every candidate once, so two candidates'
samples pair by round): a pick counts as separated from noise only if it won its rounds against the runner-up
beyond what a fair coin would do. Exact (binomial, no normal approximation) and free of any distributional
assumption, which matters for timings that are skewed or quantized by the scheduler.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact p-value of ``wins`` against ``losses`` under p = 1/2 (1.0 when there is nothing to test)."""
    if wins < 0 or losses < 0:
        raise ValueError(f"wins and losses must be >= 0, got {wins}, {losses}")
    trials = wins + losses
    if trials == 0:
        return 1.0
    fewer = min(wins, losses)
    tail = sum(math.comb(trials, k) for k in range(fewer + 1))
    return min(1.0, 2 * tail / 2**trials)


def paired_wins(first: Sequence[float], second: Sequence[float]) -> tuple[int, int]:
    """Rounds in which ``first`` was lower than ``second``, and rounds in which it was higher (equal ones left out)."""
    if len(first) != len(second):
        raise ValueError(f"paired samples must have one value per round each, got {len(first)} and {len(second)}")
    wins = sum(1 for a, b in zip(first, second, strict=True) if a < b)
    losses = sum(1 for a, b in zip(first, second, strict=True) if a > b)
    return wins, losses

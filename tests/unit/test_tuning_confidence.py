"""How sure a tuner pick is: calibrated by seeded simulation of paired round-robin rounds, calling the real code."""

from __future__ import annotations

import numpy as np
import pytest

from tokbench.analysis.picks import pick_confidence
from tokbench.analysis.signtest import paired_wins, sign_test_p
from tokbench.schema.quant import (
    CONFIDENCE_CLEAR,
    CONFIDENCE_NOISE,
    CONFIDENCE_TIE,
    CandidateTiming,
    KernelChoice,
)

CHOICES = [KernelChoice("native"), KernelChoice("splitk", 1), KernelChoice("splitk", 2), KernelChoice("splitk", 4)]


def timing(choice: KernelChoice, samples: np.ndarray) -> CandidateTiming:
    values = [int(v) for v in samples]
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return CandidateTiming(choice, round(median), round(q3 - q1), tuple(values))


def simulate(rng: np.random.Generator, true_ns: list[float], rounds: int, noise: float) -> list[CandidateTiming]:
    """Round-robin rounds: a per-round machine factor shared by every candidate, and each call's own noise."""
    shared = rng.lognormal(0.0, noise, size=rounds)
    return [
        timing(choice, ns * shared * rng.lognormal(0.0, noise, size=rounds))
        for choice, ns in zip(CHOICES, true_ns, strict=False)
    ]


def level_of(timings: list[CandidateTiming]) -> str:
    winner = min(timings, key=lambda t: t.median_ns).choice
    return pick_confidence(timings, winner).level


def test_the_sign_test_is_exact() -> None:
    assert sign_test_p(0, 0) == 1.0
    assert sign_test_p(5, 0) == pytest.approx(2 / 32)  # both tails of 5 fair coins all the same way
    assert sign_test_p(10, 0) == pytest.approx(2 / 1024)
    assert sign_test_p(3, 3) == 1.0
    assert paired_wins([1, 2, 3, 4], [2, 2, 1, 5]) == (2, 1)


@pytest.mark.parametrize("candidates", [2, 4])
def test_identical_candidates_are_called_clear_at_most_about_alpha(candidates: int) -> None:
    rng = np.random.default_rng(25)
    trials = 1500
    clear = sum(level_of(simulate(rng, [10_000_000.0] * candidates, 40, 0.08)) == CONFIDENCE_CLEAR
                for _ in range(trials))  # fmt: skip
    # CLEAR_ALPHA = 1%: allow the Monte Carlo error of 1500 trials (sd 0.26%) three times over
    assert clear / trials <= 0.018, clear / trials


def test_a_real_five_percent_win_is_called_clear() -> None:
    # 3% noise per call and per round, 40 rounds: the power this rule is designed for
    rng = np.random.default_rng(7)
    trials = 300
    clear = sum(level_of(simulate(rng, [9_500_000.0, 10_000_000.0, 11_000_000.0], 40, 0.03)) == CONFIDENCE_CLEAR
                for _ in range(trials))  # fmt: skip
    assert clear / trials >= 0.9, clear / trials


def test_well_measured_equals_are_a_tie_and_loose_ones_are_noise() -> None:
    rng = np.random.default_rng(3)
    tight = [level_of(simulate(rng, [10_000_000.0] * 2, 60, 0.01)) for _ in range(200)]
    assert tight.count(CONFIDENCE_TIE) / len(tight) >= 0.9
    loose = [level_of(simulate(rng, [10_000_000.0] * 2, 6, 0.3)) for _ in range(200)]
    assert loose.count(CONFIDENCE_NOISE) / len(loose) >= 0.9


def test_time_slices_of_a_busy_cpu_are_noise_whatever_the_medians_say() -> None:
    # Under load every call lands on a multiple of the scheduler's 8 ms slice: the medians differ (8 vs 16 ms)
    # but nothing finer than a slice was measured.
    rng = np.random.default_rng(1)
    slices = [timing(c, 8_000_000 * rng.choice([1, 1, 2], size=30)) for c in CHOICES[:1]]
    slices.append(timing(CHOICES[1], 8_000_000 * rng.choice([2, 2, 3], size=30)))
    confidence = pick_confidence(slices, CHOICES[0])
    assert confidence.level == CONFIDENCE_NOISE and "steps" in confidence.reason
    assert not confidence.cacheable


def test_a_busy_machine_makes_any_pick_noise_and_a_lone_candidate_is_clear() -> None:
    rng = np.random.default_rng(2)
    timings = simulate(rng, [5_000_000.0, 10_000_000.0], 40, 0.02)
    assert pick_confidence(timings, CHOICES[0]).level == CONFIDENCE_CLEAR
    busy = pick_confidence(timings, CHOICES[0], busy_reason="other processes used 1.5 of 2 CPUs")
    assert busy.level == CONFIDENCE_NOISE and "busy" in busy.reason
    assert pick_confidence(timings[:1], CHOICES[0]).level == CONFIDENCE_CLEAR

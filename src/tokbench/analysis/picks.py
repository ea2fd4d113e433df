"""How sure a pick among timed candidates is: a clear winner, a measured tie, or noise (never cached).

The int4 tuner (``quant.tune``) times candidate kernels round-robin: each round times every candidate once, so
two candidates' samples pair by round. A pick is

- **clear** when it beat the runner-up (the fastest other candidate by median) beyond a near-tie and in its
  paired rounds beyond chance: the exact sign test (``analysis.signtest``) at ``CLEAR_ALPHA``. Under identical
  candidates the rate of 'clear' picks is about ``CLEAR_ALPHA`` (tests/unit/test_tuning_confidence.py simulates it);
- a **tie** when the two are within the near-tie band (``is_near_tie``: 1 %, or 2 standard errors of the difference
  of medians) and the medians are known to within ``TIE_NOISE_BAND``: either candidate will do, and the tuner's
  rule (the simpler one) is a fine pick to keep;
- **noise** otherwise: too few or too lopsided-by-chance rounds, medians known too loosely, timings in coarse steps
  (a busy CPU hands out time slices of milliseconds, so every candidate lands on their multiples), or the machine
  was busy while timing. Such a pick is used for the run and never cached.

A near-tie is a median difference within ``max(TIE_RELATIVE of the best median, 2 standard errors of the difference
of medians)``, the standard error of a median estimated as ``0.93 * IQR / sqrt(n)`` (normal approximation).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

from tokbench.analysis.signtest import paired_wins, sign_test_p
from tokbench.schema.quant import (
    CONFIDENCE_CLEAR,
    CONFIDENCE_NOISE,
    CONFIDENCE_TIE,
    CandidateTiming,
    KernelChoice,
    PickConfidence,
)

TIE_RELATIVE = 0.01  # medians within 1 % are a tie whatever the noise estimate says


def is_near_tie(best: CandidateTiming, other: CandidateTiming, tie_relative: float = TIE_RELATIVE) -> bool:
    """Whether ``other``'s median is within the noise of ``best``'s (see the module doc)."""
    noise = 2.0 * math.hypot(best.median_standard_error_ns, other.median_standard_error_ns)
    return other.median_ns - best.median_ns <= max(tie_relative * best.median_ns, noise)


# How sure a pick is (kept with it; a pick that is not sure is never cached). Chosen so a cached pick is rarely a
# coin toss: the tests/unit calibration simulates identical candidates and checks the 'clear' rate against ALPHA.
CLEAR_ALPHA = 0.01  # the winner must beat the runner-up in its paired rounds at this two-sided sign-test level
TIE_NOISE_BAND = 0.03  # a near-tie counts as a measured tie only if the medians are known to within this
CLOCK_STEP_LIMIT = 0.05  # timings that come in steps this coarse (of the winner's median) say nothing finer


def pick_confidence(
    contenders: Sequence[CandidateTiming],
    winner: KernelChoice,
    busy_reason: str = "",
    rank: Callable[[KernelChoice], int] = lambda choice: 0,
) -> PickConfidence:
    """How sure the pick of ``winner`` among ``contenders`` is: clear, a measured tie, or noise (see the constants).

    The runner-up is the fastest other candidate by median; rounds pair because every round times each candidate
    once. ``busy_reason``: the machine was busy while timing (``hardware.interference``), so nothing is sure.
    ``rank`` orders candidates of equal median (simpler first).
    """
    chosen = next(t for t in contenders if t.choice == winner)
    others = [t for t in contenders if t.choice != winner]
    if not others:
        return PickConfidence(CONFIDENCE_CLEAR, "the only candidate that runs this layer")
    runner = min(others, key=lambda t: (t.median_ns, rank(t.choice)))
    wins, losses = paired_wins(chosen.samples, runner.samples) if len(chosen.samples) == len(runner.samples) else (0, 0)
    base = max(chosen.median_ns, 1)
    figures = {
        "runner_up": runner.choice.label,
        "rounds_won": wins,
        "rounds_lost": losses,
        "p_value": sign_test_p(wins, losses),
        "noise_band": 2.0 * math.hypot(chosen.median_standard_error_ns, runner.median_standard_error_ns) / base,
        "clock_step": _clock_step(chosen, runner, base),
    }
    versus = f"vs {runner.choice.label}: won {wins} of {wins + losses} rounds (sign test p = {figures['p_value']:.2g})"
    if busy_reason:
        return PickConfidence(CONFIDENCE_NOISE, f"the machine was busy while timing ({busy_reason})", **figures)
    step = figures["clock_step"]
    if step is not None and step > CLOCK_STEP_LIMIT:
        reason = f"timings come in steps of {step:.0%} of the winner's time (time slices of a busy CPU); {versus}"
        return PickConfidence(CONFIDENCE_NOISE, reason, **figures)
    tied = is_near_tie(min(chosen, runner, key=lambda t: t.median_ns), max(chosen, runner, key=lambda t: t.median_ns))
    if not tied and wins > losses and figures["p_value"] < CLEAR_ALPHA:
        return PickConfidence(CONFIDENCE_CLEAR, f"faster {versus}", **figures)
    if tied and figures["noise_band"] <= TIE_NOISE_BAND:
        reason = f"within noise of {runner.choice.label}, medians known to ±{figures['noise_band']:.1%}: either will do"
        return PickConfidence(CONFIDENCE_TIE, reason, **figures)
    reason = f"not separated from noise: {versus}, medians known to ±{figures['noise_band']:.1%}"
    return PickConfidence(CONFIDENCE_NOISE, reason, **figures)


def _clock_step(first: CandidateTiming, second: CandidateTiming, base: int) -> float | None:
    """The smallest step between distinct timings of either candidate, relative to ``base`` (None: all equal)."""
    steps = []
    for timing in (first, second):
        values = sorted(set(timing.samples))
        steps.extend(later - earlier for earlier, later in itertools.pairwise(values))
    return min(steps) / base if steps else None

"""Choosing a winner: per-candidate median and IQR, noise-aware near-ties, dispersion warnings."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from tokbench.analysis.picks import TIE_RELATIVE, is_near_tie
from tokbench.analysis.picks import pick_confidence as _pick_confidence
from tokbench.analysis.stats import percentile
from tokbench.quant.kernels import simplicity_rank
from tokbench.quant.tune.timing import TuningError
from tokbench.schema.quant import CandidateTiming, KernelChoice, PickConfidence
from tokbench.schema.summary import HIGH_DISPERSION  # IQR / median above this is reported (as torch.utils.benchmark)


class HighDispersionWarning(UserWarning):
    """A candidate's timings were noisy (IQR / median > 0.1): its median is less trustworthy."""


def candidate_timing(choice: KernelChoice, samples: Sequence[int]) -> CandidateTiming:
    """One candidate's timing record from its samples: their median and interquartile range."""
    values = [float(s) for s in samples]
    median = percentile(values, 50.0)
    iqr = percentile(values, 75.0) - percentile(values, 25.0)
    return CandidateTiming(choice, round(median), round(iqr), tuple(int(s) for s in samples))


def pick_winner(timings: Sequence[CandidateTiming], tie_relative: float = TIE_RELATIVE) -> tuple[KernelChoice, bool]:
    """The winner and whether a near-tie decided it (the fastest was beaten by a simpler tied one)."""
    if not timings:
        raise TuningError("no candidate timings to choose from")
    best = min(timings, key=lambda t: (t.median_ns, simplicity_rank(t.choice)))
    tied = [t for t in timings if is_near_tie(best, t, tie_relative)]
    winner = min(tied, key=lambda t: simplicity_rank(t.choice))
    return winner.choice, winner.choice != best.choice


def warn_dispersion(timings: Sequence[CandidateTiming], context: str) -> bool:
    """Warn (HighDispersionWarning) for each noisy candidate; True if any was."""
    noisy = [t for t in timings if t.dispersion > HIGH_DISPERSION]
    for timing in noisy:
        warnings.warn(
            f"{context}: {timing.choice.label} timings are noisy (IQR/median = {timing.dispersion:.2f} > "
            f"{HIGH_DISPERSION}); its median of {timing.median_ns / 1e3:.1f} us is less trustworthy. "
            "Close other programs, pin threads, or give the tuner a larger budget",
            HighDispersionWarning,
            stacklevel=3,
        )
    return bool(noisy)



def pick_confidence(
    contenders: Sequence[CandidateTiming], winner: KernelChoice, busy_reason: str = ""
) -> PickConfidence:
    """``analysis.picks.pick_confidence`` with the kernels' simplicity order for equal medians."""
    return _pick_confidence(contenders, winner, busy_reason, rank=simplicity_rank)

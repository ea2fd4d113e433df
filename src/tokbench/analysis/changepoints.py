"""Change points in a series of per-run medians: E-divisive means (Matteson & James 2014) with a permutation test.

For a segment x[s:e], a candidate is a pair (τ, κ), X = x[s:τ] and Y = x[τ:κ] with κ ≤ e, and

    q(τ, κ) = a·b/(a+b) · ( 2·mean|X−Y| − mean|X−X'| − mean|Y−Y'| ),   a = τ−s, b = κ−τ

(the energy distance between X and Y, alpha = 1, within-sample means over distinct pairs). The best candidate
maximises q over **both** τ and κ, as Matteson & James and Apache Otava's original E-divisive do: a regression
that is later fixed is the Y between two baselines. (MongoDB's signal-processing-algorithms, and tokbench before
this, fix κ = e, which dilutes a temporary change with the baseline after it and misses it.) Each side holds at
least ``min_size`` runs, except at the newest end of the history, where Y may be as short as ``end_size`` runs
(a change in the newest runs is reported as soon as it can be significant, resting on that many runs).

Significance: the share of random permutations of the segment whose best q over the same candidates is at least
the observed one, p = (k+1)/(P+1), sampled sequentially (Besag & Clifford 1991: a segment whose p is clearly
large stops after ``STOP_AFTER`` exceedances, p = h/L; the test stays exact). Ties are decided exactly: the
values are put on an integer grid (2^G steps over their range, G chosen so every sum below fits an int64), every
sum of distances is an exact integer, q is a ratio of two exact integers, and a permutation whose q is within
rounding of the observed one is compared by integer cross-multiplication. A significant split is kept and both
sides are searched again (binary segmentation) until no split is significant.

Slowly drifting histories (runs that wander together, AR(1)) break the permutation test's exchangeability; a
flat AR(1) history with ρ = 0.8 raised a change 69% of the time. So ρ is estimated first, robustly to level
shifts and outliers (the Gnanadesikan-Kettenring correlation of successive differences with Rousseeuw & Croux's
Qn scale: corr(Δ_t, Δ_t+1) = −(1−ρ)/2), and when it is beyond what independent runs show by chance (their 95th
percentile), the series is **prewhitened**, e_t = (x_t − c) − ρ̂·(x_t−1 − c), before the search. A level shift
stays a level shift at the same run (scaled by 1 − ρ̂), so change points, locations and the medians reported
(from the original series) keep their meaning; independent histories are left as they are (95% of them).

Where the first run at the new level is: the L1 cost of placing the change at each run between the neighbouring
change points, with the two levels fixed; every run whose cost is within ``LOCATION_NATS`` (Laplace log
likelihood units) of the best is a possible first run, so the range to bisect spans them all.

Pure numpy; the permutations come from ``numpy.random.default_rng(seed)``, so the answer is reproducible.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

DEFAULT_SIGNIFICANCE = 0.01
DEFAULT_MIN_SIZE = 3
DEFAULT_END_SIZE = 2  # the newest runs: a change resting on this many runs can be reported
RESOLUTION = 5  # automatic permutations: (P + 1) · significance = RESOLUTION (rejects at k ≤ 4)
MIN_PERMUTATIONS = 199
STOP_AFTER = 12  # exceedances after which a segment's test stops (Besag & Clifford): p is clearly large
LOCATION_NATS = 4.5  # support interval of the location: runs within e^-4.5 of the best likelihood
WATCH_SIGMAS = 3.0  # newest runs this far (robust σ of their level) from it are worth watching
_TIE_WINDOW = 1e-9  # relative: float ratios closer than this are compared exactly (float error is ~1e-16)
_CHUNK_BYTES = 32 * 2**20  # memory for one chunk of permutations


@dataclass(frozen=True)
class ChangePoint:
    """A change between ``index − 1`` and ``index`` of the series (``index``: the first point of the new level).

    ``earliest``..``latest``: every run that may be the first at the new level (``earliest ≤ index ≤ latest``);
    the commit that caused the change lies after run ``earliest − 1`` and up to run ``latest``.
    """

    index: int
    before_median: float  # median of the segment before (up to the previous change point)
    after_median: float  # median of the segment after (up to the next change point)
    p_value: float
    statistic: float  # q(τ, κ) on the (whitened) series
    earliest: int = -1
    latest: int = -1
    runs_after: int = 0  # runs at the new level: up to the next change point or the newest run

    @property
    def relative_change(self) -> float:
        return self.after_median / self.before_median - 1.0 if self.before_median else float("inf")


@dataclass(frozen=True)
class NewestRuns:
    """The newest runs look off their level but are too few to test: what they show and what would confirm it."""

    runs: int  # how many of the newest runs
    level_median: float  # the level before them
    median: float  # their median
    sigmas: float  # their smallest distance from the level, in robust σ of the level
    runs_needed: int  # newest runs at that level that a test could confirm

    @property
    def relative_change(self) -> float:
        return self.median / self.level_median - 1.0 if self.level_median else float("inf")


@dataclass(frozen=True)
class SeriesAnalysis:
    """Everything the detector found in one series, and what it could not decide."""

    changes: tuple[ChangePoint, ...]
    autocorrelation: float  # the ρ removed by prewhitening (0: the runs looked independent)
    significance: float  # the level each split was tested at
    permutations: int  # the most permutations a test could use
    watch: NewestRuns | None = None
    note: str = ""  # why the series cannot (or can only partly) be decided, and what would decide it


# --- settings and what they can decide ---------------------------------------------------------------------


def automatic_permutations(significance: float) -> int:
    """Enough permutations that a p-value RESOLUTION times below ``significance`` can be told apart."""
    return max(MIN_PERMUTATIONS, math.ceil(RESOLUTION / significance) - 1)


def settings_problem(permutations: int, significance: float) -> str:
    """Why ``permutations`` can never reach ``significance`` ("" when it can)."""
    if not 0 < significance < 1:
        return f"the significance must be between 0 and 1, got {significance:g}"
    if (permutations + 1) * significance < 1:
        needed = math.ceil(1 / significance) - 1
        return (
            f"{permutations} permutations can never reach p ≤ {significance:.3g} (the smallest p they give is "
            f"1/{permutations + 1} = {1 / (permutations + 1):.3g}); use at least {needed:,} or leave the default"
        )
    return ""


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def smallest_p(runs: int, min_size: int = DEFAULT_MIN_SIZE, end_size: int = DEFAULT_END_SIZE) -> float:
    """A lower bound on any split's exact permutation p-value in ``runs`` runs (1 when none can be tested).

    A permutation that puts the same values in X, in Y and in the rest reproduces q; that happens with
    probability a!·b!·c!/n!, smallest for X and Y of ``min_size`` runs (or Y of ``end_size`` at the end).
    """
    floors = [1.0]
    if runs >= 2 * min_size:
        a = b = min_size
        floors.append(math.exp(-(_log_choose(runs, a) + _log_choose(runs - a, b))))
    if runs >= min_size + end_size:
        floors.append(1.0 / math.comb(runs, end_size))
    return min(floors)


def smallest_step_p(runs: int, min_size: int = DEFAULT_MIN_SIZE) -> float:
    """A lower bound on the p-value of a lasting step (Y up to the newest run): 1/C(n, n/2)."""
    return 1.0 / math.comb(runs, runs // 2) if runs >= 2 * min_size else 1.0


def runs_for(significance: float, floor: Callable[..., float] = smallest_p, **sizes: int) -> int:
    """The fewest runs whose ``floor`` is at or below ``significance``."""
    runs = 2
    while floor(runs, **sizes) > significance:
        runs += 1
    return runs


def decidability_note(runs: int, significance: float, min_size: int = DEFAULT_MIN_SIZE) -> tuple[bool, str]:
    """(can any change be significant, a one-line note when the history is too short for some or all of them)."""
    if smallest_p(runs, min_size) > significance:
        needed = runs_for(significance, smallest_p, min_size=min_size)
        return False, (
            f"{runs} run(s) cannot show a change at p ≤ {significance:.3g} (the least possible p is "
            f"{smallest_p(runs, min_size):.3g}); {needed} runs can: no change found here proves nothing"
        )
    if smallest_step_p(runs, min_size) > significance:
        needed = runs_for(significance, smallest_step_p, min_size=min_size)
        return True, (
            f"{runs} runs can show a temporary change but not a lasting step at p ≤ {significance:.3g} "
            f"(least possible p for a step {smallest_step_p(runs, min_size):.3g}); {needed} runs can"
        )
    return True, ""


# --- the statistic, exact ------------------------------------------------------------------------------------


def _grid(values: np.ndarray) -> tuple[np.ndarray, float]:
    """The values on an integer grid fine enough to keep their order, coarse enough that every sum fits int64;
    and the grid's step in the values' unit."""
    n = len(values)
    spread = float(values.max() - values.min())
    if spread == 0:
        return np.zeros(n, dtype=np.int64), 1.0
    # |numerator| ≤ n⁴·max distance / 4 must stay below 2⁶² (int64 with headroom)
    bits = max(8, min(40, 62 - math.ceil(4 * math.log2(max(n, 2)))))
    step = spread / (2**bits - 1)
    return np.rint((values - values.min()) / step).astype(np.int64), step


@dataclass(frozen=True)
class _Candidates:
    """Every (τ, κ) of a segment of ``n`` runs, relative to its start, with the sizes a = τ, b = κ − τ."""

    tau: np.ndarray
    kappa: np.ndarray
    a: np.ndarray
    b: np.ndarray

    @classmethod
    def of(cls, n: int, min_size: int, end_size: int | None) -> _Candidates:
        tau, kappa = np.triu_indices(n + 1, k=min_size)
        keep = tau >= min_size
        if end_size is not None and end_size < min_size:  # short Y allowed only when it ends at the newest run
            end = np.arange(n - min_size + 1, n - end_size + 1)
            end = end[end >= min_size]
            tau, kappa = np.r_[tau[keep], end], np.r_[kappa[keep], np.full(len(end), n)]
        else:
            tau, kappa = tau[keep], kappa[keep]
        return cls(tau, kappa, tau.astype(np.int64), (kappa - tau).astype(np.int64))

    def __len__(self) -> int:
        return len(self.tau)


def _ratios(prefix: np.ndarray, cand: _Candidates) -> tuple[np.ndarray, np.ndarray]:
    """Numerator and denominator (exact int64) of q for every candidate; ``prefix``: (..., n+1, n+1) sums."""
    t, k, a, b = cand.tau, cand.kappa, cand.a, cand.b
    left = prefix[..., t, t]  # Σ over X×X, ordered pairs
    cross = prefix[..., t, k] - left  # Σ over X×Y
    right = prefix[..., k, k] - left - 2 * cross  # Σ over Y×Y, ordered pairs
    # q = ab/(a+b)·(2·cross/(ab) − left/(a(a−1)) − right/(b(b−1))) over one common denominator
    numerator = 2 * cross * ((a - 1) * (b - 1)) - left * (b * (b - 1)) - right * (a * (a - 1))
    return numerator, (a + b) * (a - 1) * (b - 1)


def _prefix(grid: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """2-D prefix sums of |x_i − x_j| (exact integers); with ``order`` (P, n): one per permutation."""
    values = grid if order is None else grid[order]
    n = values.shape[-1]
    prefix = np.zeros((*values.shape[:-1], n + 1, n + 1), dtype=np.int64)
    inner = prefix[..., 1:, 1:]  # filled in place: no temporaries of the (P, n, n) size
    np.subtract(values[..., :, None], values[..., None, :], out=inner)
    np.abs(inner, out=inner)
    np.cumsum(inner, axis=-1, out=inner)
    np.cumsum(inner, axis=-2, out=inner)
    return prefix


@dataclass(frozen=True)
class _Best:
    tau: int
    kappa: int
    q: float
    numerator: int
    denominator: int


def _best_split(grid: np.ndarray, cand: _Candidates) -> _Best | None:
    numerator, denominator = _ratios(_prefix(grid), cand)
    q = numerator / denominator
    best = int(np.argmax(q))
    near = np.flatnonzero(q >= q[best] - _TIE_WINDOW * abs(q[best]))
    # exact maximum among the float near-ties (equal floats may hide different ratios)
    best = max(near, key=lambda i: Fraction(int(numerator[i]), int(denominator[i])))
    if numerator[best] <= 0:
        return None
    return _Best(int(cand.tau[best]), int(cand.kappa[best]), float(q[best]), int(numerator[best]),
                 int(denominator[best]))  # fmt: skip


def _exceedances(grid: np.ndarray, cand: _Candidates, observed: _Best, order: np.ndarray) -> np.ndarray:
    """For each permutation (row of ``order``): is its best q at least the observed one, decided exactly?"""
    numerator, denominator = _ratios(_prefix(grid, order), cand)
    q = numerator / denominator
    best = q.max(axis=1)
    window = _TIE_WINDOW * abs(observed.q)
    exceed = best > observed.q + window
    target = Fraction(observed.numerator, observed.denominator)
    for row in np.flatnonzero(np.abs(best - observed.q) <= window):  # within rounding: compare the integers
        near = np.flatnonzero(np.abs(q[row] - observed.q) <= window)
        exceed[row] = any(Fraction(int(numerator[row, i]), int(denominator[i])) >= target for i in near)
    return exceed


def _p_value(
    grid: np.ndarray, cand: _Candidates, observed: _Best, permutations: int, rng: np.random.Generator
) -> float:
    """Sequential Monte-Carlo permutation p-value (Besag & Clifford): (k+1)/(P+1), or h/L when stopped early."""
    n = len(grid)
    chunk = max(1, min(permutations, _CHUNK_BYTES // (8 * (2 * (n + 1) ** 2 + 6 * len(cand)))))
    seen = exceeded = 0
    while seen < permutations:
        size = min(chunk, permutations - seen)
        order = rng.permuted(np.tile(np.arange(n), (size, 1)), axis=1)
        hits = np.flatnonzero(_exceedances(grid, cand, observed, order))
        if exceeded + len(hits) >= STOP_AFTER:
            stop = seen + int(hits[STOP_AFTER - exceeded - 1]) + 1
            return STOP_AFTER / stop
        exceeded += len(hits)
        seen += size
    return (exceeded + 1) / (permutations + 1)


# --- slowly drifting histories -----------------------------------------------------------------------------

MAX_RHO = 0.9
BREAK_SIGMAS = 2.5  # a difference across a change point this far out is the step itself


def qn_scale(values: np.ndarray) -> float:
    """Rousseeuw & Croux's Qn (without its consistency constant): the k-th smallest pairwise distance,
    k = C(h, 2), h = n//2 + 1. Robust (half the values may be outlying) and 82% efficient at the normal."""
    n = len(values)
    distances = np.abs(values[:, None] - values[None, :])[np.triu_indices(n, 1)]
    half = n // 2 + 1
    return float(np.partition(distances, half * (half - 1) // 2 - 1)[half * (half - 1) // 2 - 1])


def lag1_autocorrelation(values: np.ndarray, breaks: Sequence[int] = ()) -> float:
    """ρ of an AR(1), robust to level shifts and outliers, from its differences Δ: corr(Δ_t, Δ_t+1) = −(1−ρ)/2.

    The correlation is Gnanadesikan & Kettenring's, (s²(u+v) − s²(u−v)) / (s²(u+v) + s²(u−v)) with u = Δ_t,
    v = Δ_t+1 and s the Qn scale: a level shift makes one large difference, which Qn ignores. A difference across
    one of ``breaks`` (change points found) is left out when it is an outlier among the differences (a step's
    jump; a drift's false break is an ordinary difference, and leaving those out would hide the drift).
    """
    steps = np.diff(np.asarray(values, dtype=float))
    kept = np.ones(len(steps), dtype=bool)
    if len(steps) and breaks:
        centre = float(np.median(steps))
        spread = 1.4826 * float(np.median(np.abs(steps - centre)))
        across = np.asarray([index - 1 for index in breaks if 0 < index <= len(steps)], dtype=int)
        kept[across[np.abs(steps[across] - centre) > BREAK_SIGMAS * spread]] = False
    pairs = kept[:-1] & kept[1:]
    if pairs.sum() < 4:
        return 0.0
    first, second = steps[:-1][pairs], steps[1:][pairs]
    together, apart = qn_scale(first + second) ** 2, qn_scale(first - second) ** 2
    if together + apart == 0:
        return 0.0
    return 1.0 + 2.0 * (together - apart) / (together + apart)


def chance_autocorrelation(runs: int) -> float:
    """The 95th percentile of ``lag1_autocorrelation`` on independent runs (seeded simulation, n = 12..240)."""
    return 2.7 / math.sqrt(runs) + 5.0 / runs


def removable_autocorrelation(values: np.ndarray, breaks: Sequence[int] = ()) -> float:
    """The ρ to prewhiten with: the estimate when it is beyond chance for independent runs, else 0."""
    rho = lag1_autocorrelation(values, breaks)
    return min(MAX_RHO, rho) if rho > chance_autocorrelation(len(values)) else 0.0


def prewhiten(values: np.ndarray, rho: float) -> np.ndarray:
    """e_t = (x_t − c) − ρ·(x_t−1 − c), and e_0 = √(1−ρ²)·(x_0 − c) (Prais-Winsten); c = the median."""
    if rho == 0:
        return values
    centred = values - float(np.median(values))
    whitened = np.empty_like(centred)
    whitened[0] = math.sqrt(1 - rho * rho) * centred[0]
    whitened[1:] = centred[1:] - rho * centred[:-1]
    return whitened


# --- where the new level starts ----------------------------------------------------------------------------


def location_range(values: np.ndarray, start: int, index: int, stop: int) -> tuple[int, int]:
    """Every run in (start, stop) that may be the first at the new level: L1 cost within LOCATION_NATS of the best.

    The two levels are the medians either side of ``index``; the cost of a first run j is Σ|x − level| over the
    segment with the levels switching at j, in units of the Laplace scale (mean absolute deviation).
    """
    before, after = values[start:index], values[index:stop]
    low, high = float(np.median(before)), float(np.median(after))
    segment = values[start:stop]
    to_low, to_high = np.abs(segment - low), np.abs(segment - high)
    scale = float(np.r_[np.abs(before - low), np.abs(after - high)].mean())
    # cost(j) = Σ_{i<j} |x_i − low| + Σ_{i≥j} |x_i − high|, for j = 1 .. len − 1
    cost = np.cumsum(to_low)[:-1] + (to_high.sum() - np.cumsum(to_high)[:-1])
    if scale == 0:
        plausible = np.flatnonzero(cost <= cost.min())
    else:
        plausible = np.flatnonzero((cost - cost.min()) / scale <= LOCATION_NATS)
    first, last = start + 1 + int(plausible.min()), start + 1 + int(plausible.max())
    return min(first, index), max(last, index)


# --- the search ---------------------------------------------------------------------------------------------


def _split_segments(
    whitened: np.ndarray, *, min_size: int, end_size: int, permutations: int, significance: float, seed: int,
) -> dict[int, tuple[float, float]]:  # fmt: skip
    """Binary segmentation: index → (p, q) of every significant split."""
    rng = np.random.default_rng(seed)
    found: dict[int, tuple[float, float]] = {}
    pending = [(0, len(whitened))]
    while pending:
        start, stop = pending.pop()
        at_end = stop == len(whitened)
        if stop - start < min_size + (end_size if at_end else min_size):
            continue
        grid, step = _grid(whitened[start:stop])
        cand = _Candidates.of(stop - start, min_size, end_size if at_end else None)
        best = _best_split(grid, cand)
        if best is None:
            continue
        p_value = _p_value(grid, cand, best, permutations, rng)
        if p_value > significance:
            continue
        found[start + best.tau] = (p_value, best.q * step)
        pending.extend([(start, start + best.tau), (start + best.tau, stop)])
    return found


def _newest_runs(values: np.ndarray, level_start: int, end_size: int, significance: float) -> NewestRuns | None:
    """The newest runs (fewer than a test needs) when all lie ≥ WATCH_SIGMAS robust σ off their level."""
    for runs in range(end_size, 0, -1):
        level, newest = values[level_start : len(values) - runs], values[len(values) - runs :]
        if len(level) < 3:
            continue
        centre = float(np.median(level))
        sigma = 1.4826 * float(np.median(np.abs(level - centre)))
        if sigma == 0:
            sigma = float(np.std(level)) or abs(centre) * 1e-9 or 1e-12
        distance = (newest - centre) / sigma
        if np.all(distance >= WATCH_SIGMAS) or np.all(distance <= -WATCH_SIGMAS):
            needed = runs
            while 1.0 / math.comb(len(level) + needed, needed) > significance:
                needed += 1
            return NewestRuns(runs, centre, float(np.median(newest)), float(np.min(np.abs(distance))),
                              max(needed, end_size))  # fmt: skip
    return None


def analyse_series(
    series: Sequence[float],
    *,
    min_size: int = DEFAULT_MIN_SIZE,
    end_size: int = DEFAULT_END_SIZE,
    permutations: int | None = None,
    significance: float = DEFAULT_SIGNIFICANCE,
    seed: int = 0,
    whiten: bool = True,
) -> SeriesAnalysis:
    """Every significant change point of ``series`` (in order), what the newest runs show, what cannot be decided."""
    if min_size < 2:
        raise ValueError("min_size must be at least 2 (a side needs a pair to have a spread)")
    if not 2 <= end_size <= min_size:
        raise ValueError(f"end_size must be from 2 to min_size ({min_size}), got {end_size}")
    values = np.asarray(series, dtype=float)
    if values.ndim != 1 or not np.all(np.isfinite(values)):
        raise ValueError("the series must be finite numbers")
    permutations = automatic_permutations(significance) if permutations is None else permutations
    problem = settings_problem(permutations, significance)
    if problem:
        raise ValueError(problem)
    decidable, note = decidability_note(len(values), significance, min_size)
    rho, found = 0.0, {}
    if decidable:
        search = functools.partial(_split_segments, min_size=min_size, end_size=end_size, permutations=permutations,
                                   significance=significance, seed=seed)  # fmt: skip
        found = search(values)
        # Changes found: were they the runs drifting together? ρ from the differences away from them decides.
        rho = removable_autocorrelation(values, sorted(found)) if whiten and found else 0.0
        if rho > 0:
            found = search(prewhiten(values, rho))
    indices = sorted(found)
    bounds = [0, *indices, len(values)]
    changes = []
    for position, index in enumerate(indices):
        start, stop = bounds[position], bounds[position + 2]
        earliest, latest = location_range(values, start, index, stop)
        changes.append(ChangePoint(
            index=index, before_median=float(np.median(values[start:index])),
            after_median=float(np.median(values[index:stop])), p_value=found[index][0], statistic=found[index][1],
            earliest=earliest, latest=latest, runs_after=stop - index,
        ))  # fmt: skip
    watch = None
    if not changes or changes[-1].runs_after >= min_size:
        watch = _newest_runs(values, bounds[-2], end_size, significance)
    return SeriesAnalysis(tuple(changes), rho, significance, permutations, watch, note)


def find_change_points(
    series: Sequence[float],
    *,
    min_size: int = DEFAULT_MIN_SIZE,
    end_size: int = DEFAULT_END_SIZE,
    permutations: int | None = None,
    significance: float = DEFAULT_SIGNIFICANCE,
    seed: int = 0,
    whiten: bool = True,
) -> list[ChangePoint]:
    """Every significant change point of ``series`` (in order): ``analyse_series(...).changes``."""
    return list(analyse_series(series, min_size=min_size, end_size=end_size, permutations=permutations,
                               significance=significance, seed=seed, whiten=whiten).changes)  # fmt: skip

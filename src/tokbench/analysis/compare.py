"""Pure statistics for comparing two runs of one workload: per-call samples in, ratio + CI + verdict out.

Why per call: the token gaps of one call share that call's conditions (cache state, a background burst), so
they are not independent samples. Every resampling and the rank test here work on whole calls: the bootstrap
draws calls with replacement from each side, and the Mann-Whitney U test ranks one value per call.

No torch; numpy only. Every random draw comes from ``numpy.random.default_rng(seed)``: the same inputs give
the same intervals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tokbench.analysis.samples import metric_samples
from tokbench.schema.records import GenerationTrace

VERDICT_FASTER = "faster"
VERDICT_SLOWER = "slower"
VERDICT_NO_CHANGE = "no significant change"
VERDICT_INCONCLUSIVE = "inconclusive"
VERDICTS = (VERDICT_FASTER, VERDICT_SLOWER, VERDICT_NO_CHANGE, VERDICT_INCONCLUSIVE)

DEFAULT_MIN_EFFECT = 0.02
DEFAULT_ALPHA = 0.05
DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_POWER = 0.80
# Below this many calls a side, neither a rank test nor a bootstrap of calls says anything reliable.
MIN_CALLS = 5
TAIL_QUANTILES = (("p90", 0.90), ("p99", 0.99))

# Metrics where a larger value is better (throughputs); every other metric is a latency.
HIGHER_IS_BETTER = frozenset({"prefill_throughput_tok_s", "decode_throughput_tok_s", "overall_throughput_tok_s"})

# A bootstrap chunk holds at most this many sample values (bounds memory for long runs).
_CHUNK_VALUES = 4_000_000


def per_call_samples(traces: Sequence[GenerationTrace]) -> dict[str, list[np.ndarray]]:
    """Every metric's samples grouped by call: the one definition of ``analysis.samples.metric_samples``, split
    at its call indices (latencies: one value per distinct request of the call, ITL every gap of the call,
    throughputs one value per call)."""
    grouped: dict[str, list[np.ndarray]] = {}
    for name, samples in metric_samples(traces).items():
        boundaries = np.searchsorted(samples.calls, np.arange(1, len(traces)))  # calls are in measurement order
        grouped[name] = [np.asarray(part, dtype=float) for part in np.split(samples.values, boundaries)]
    return grouped


@dataclass(frozen=True)
class RankTest:
    """Two-sided Mann-Whitney U test, normal approximation with tie and continuity correction."""

    u_statistic: float  # U of the first sample
    z_score: float
    p_value: float


def _average_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks with ties given their average rank, and the size of every tie group."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    # start of each run of equal values
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    counts = np.diff(np.r_[starts, len(values)])
    average = starts + (counts + 1) / 2.0  # 1-based average rank of each run
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(average, counts)
    return ranks, counts


def mann_whitney_u(first: Sequence[float], second: Sequence[float]) -> RankTest:
    """Mann-Whitney U, two-sided, by the normal approximation.

    U1 = R1 − n1(n1+1)/2 (R1: the first sample's rank sum, ties averaged); mean n1·n2/2; variance
    n1·n2/12 · ((n+1) − Σ(t³−t) / (n(n−1))) over tie groups of size t; z = (|U1 − mean| − ½) / sd.
    All values tied (sd 0) gives p = 1.
    """
    x = np.asarray(first, dtype=float)
    y = np.asarray(second, dtype=float)
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("a rank test needs at least one value on each side")
    n = n1 + n2
    ranks, ties = _average_ranks(np.concatenate([x, y]))
    u1 = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2.0)
    mean_u = n1 * n2 / 2.0
    tie_term = float((ties.astype(float) ** 3 - ties).sum())
    variance = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:
        return RankTest(u_statistic=u1, z_score=0.0, p_value=1.0)
    z = max(abs(u1 - mean_u) - 0.5, 0.0) / math.sqrt(variance)
    return RankTest(u_statistic=u1, z_score=z, p_value=min(1.0, math.erfc(z / math.sqrt(2.0))))


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control under any dependence)."""
    count = len(p_values)
    order = sorted(range(count), key=lambda index: p_values[index])
    adjusted = [1.0] * count
    running = 0.0
    for position, index in enumerate(order):
        running = max(running, min(1.0, (count - position) * p_values[index]))
        adjusted[index] = running
    return adjusted


def _draw_calls(
    rng: np.random.Generator, run_of_call: Sequence[int] | None, calls: int, resamples: int
) -> np.ndarray | list[np.ndarray]:
    """Call indices of each resample: calls with replacement, or, when the calls come from several runs
    (processes), runs with replacement and then calls within each drawn run: a two-level (cluster) bootstrap
    whose interval also holds the run-to-run variation a single process cannot show."""
    runs = sorted(set(run_of_call)) if run_of_call is not None else []
    if len(runs) < 2:
        return rng.integers(0, calls, size=(resamples, calls))
    members = [np.flatnonzero(np.asarray(run_of_call) == run) for run in runs]
    draws = []
    for _ in range(resamples):
        picked = rng.integers(0, len(members), size=len(members))
        draws.append(np.concatenate([rng.choice(members[run], size=len(members[run])) for run in picked]))
    if len({len(draw) for draw in draws}) == 1:
        return np.stack(draws)
    return draws


def _bootstrap_quantiles(
    calls: Sequence[np.ndarray], quantiles: Sequence[float], draws: np.ndarray | list[np.ndarray]
) -> np.ndarray:
    """Quantiles of the pooled values of each resample of whole calls; ``draws`` holds each resample's calls."""
    resamples = len(draws)
    out = np.empty((resamples, len(quantiles)))
    lengths = {len(call) for call in calls}
    if len(lengths) == 1 and isinstance(draws, np.ndarray):  # equal calls: one array, resampled chunk by chunk
        matrix = np.stack(calls)
        per_resample = matrix.size
        chunk = max(1, _CHUNK_VALUES // max(per_resample, 1))
        for start in range(0, resamples, chunk):
            picked = matrix[draws[start : start + chunk]].reshape(min(chunk, resamples - start), -1)
            out[start : start + chunk] = np.quantile(picked, quantiles, axis=1).T
        return out
    for index in range(resamples):
        out[index] = np.quantile(np.concatenate([calls[i] for i in draws[index]]), quantiles)
    return out


@dataclass(frozen=True)
class RatioEstimate:
    """contender ÷ baseline of one statistic, with its bootstrap percentile CI."""

    statistic: str  # "median", "p90", "p99"
    baseline: float
    contender: float
    ratio: float
    ci_low: float
    ci_high: float
    log_ratio_se: float  # standard error of log(ratio) over the bootstrap resamples


def bootstrap_ratios(
    baseline_calls: Sequence[np.ndarray],
    contender_calls: Sequence[np.ndarray],
    statistics: Sequence[tuple[str, float]] = (("median", 0.5), *TAIL_QUANTILES),
    *,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
    baseline_runs: Sequence[int] | None = None,
    contender_runs: Sequence[int] | None = None,
) -> list[RatioEstimate]:
    """Ratio of each statistic (a quantile of the pooled values) with a CI from resampling whole calls.

    Each resample draws as many calls as each side has, with replacement, independently per side. ``*_runs``
    give the run (process) of each call: a side of several runs is resampled runs first, then calls.
    """
    if not baseline_calls or not contender_calls:
        raise ValueError("a ratio needs calls on both sides")
    rng = np.random.default_rng(seed)
    quantiles = [q for _, q in statistics]
    base_draws = _draw_calls(rng, baseline_runs, len(baseline_calls), resamples)
    cont_draws = _draw_calls(rng, contender_runs, len(contender_calls), resamples)
    base_boot = _bootstrap_quantiles(baseline_calls, quantiles, base_draws)
    cont_boot = _bootstrap_quantiles(contender_calls, quantiles, cont_draws)
    base_point = np.quantile(np.concatenate(list(baseline_calls)), quantiles)
    cont_point = np.quantile(np.concatenate(list(contender_calls)), quantiles)
    tail = (1.0 - confidence) / 2.0
    estimates = []
    for column, (name, _) in enumerate(statistics):
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ratios = np.log(cont_boot[:, column]) - np.log(base_boot[:, column])
        finite = log_ratios[np.isfinite(log_ratios)]
        if base_point[column] <= 0 or cont_point[column] <= 0 or len(finite) < resamples // 2:
            raise ValueError(f"the {name} must be positive on both sides to form a ratio")
        low, high = np.quantile(finite, [tail, 1.0 - tail])
        estimates.append(
            RatioEstimate(
                statistic=name,
                baseline=float(base_point[column]),
                contender=float(cont_point[column]),
                ratio=float(cont_point[column] / base_point[column]),
                ci_low=float(math.exp(low)),
                ci_high=float(math.exp(high)),
                log_ratio_se=float(np.std(finite, ddof=1)),
            )
        )
    return estimates


def _normal_quantile(probability: float) -> float:
    """Inverse standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9)."""
    if not 0.0 < probability < 1.0:
        raise ValueError("probability must lie strictly between 0 and 1")
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02,
         -3.066479806614716e01, 2.506628277459239e00)  # fmt: skip
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01,
         -1.328068155288572e01)  # fmt: skip
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00,
         4.374664141464968e00, 2.938163982698783e00)  # fmt: skip
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    low = 0.02425
    if probability < low:
        q = math.sqrt(-2 * math.log(probability))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1
        )
    if probability > 1 - low:
        return -_normal_quantile(1 - probability)
    q = probability - 0.5
    r = q * q
    return (
        (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
        * q
        / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    )


@dataclass(frozen=True)
class Detectability:
    """What the comparison could have seen: the smallest change detectable at ``power``, and the calls
    per side a ``target`` change would need (both from the bootstrap standard error of log(ratio))."""

    detectable_change: float  # e.g. 0.031: a change of ≥3.1% would be detected with ``power``
    calls_for_target: int  # calls per side to detect ``target`` (when both sides have that many)
    target: float
    power: float
    alpha: float


def detectability(
    log_ratio_se: float,
    baseline_calls: int,
    contender_calls: int,
    *,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    target: float = 0.01,
) -> Detectability:
    """Minimum detectable effect of a two-sided test at ``alpha`` with ``power``: (z₁₋α/₂ + z_power)·se on the
    log scale. The standard error scales as √(1/n_b + 1/n_c), which gives the calls a ``target`` change needs."""
    z_sum = _normal_quantile(1 - alpha / 2) + _normal_quantile(power)
    detectable = math.expm1(z_sum * log_ratio_se)
    needed_se = math.log1p(target) / z_sum
    spread = 1 / baseline_calls + 1 / contender_calls
    if log_ratio_se <= 0:
        calls = min(baseline_calls, contender_calls)
    else:
        # se² = k·(1/n_b + 1/n_c) → with n calls a side, se² = 2k/n
        k = log_ratio_se**2 / spread
        calls = math.ceil(2 * k / needed_se**2)
    return Detectability(
        detectable_change=detectable, calls_for_target=max(calls, MIN_CALLS), target=target, power=power, alpha=alpha
    )


def decide(
    ratio: RatioEstimate,
    p_adjusted: float,
    higher_is_better: bool,
    baseline_calls: int,
    contender_calls: int,
    *,
    min_effect: float = DEFAULT_MIN_EFFECT,
    alpha: float = DEFAULT_ALPHA,
) -> tuple[str, str]:
    """The verdict for one metric and why.

    faster / slower: significant after the multiple-comparison correction (adjusted p < alpha), the CI
    excludes 1, AND the ratio is beyond ``min_effect``. no significant change: not that, and the CI rules out a
    change beyond ``min_effect`` (or the change is significant but smaller than it). inconclusive: too few calls,
    or the CI still allows a change beyond ``min_effect``: the data cannot tell.
    """
    if min(baseline_calls, contender_calls) < MIN_CALLS:
        return VERDICT_INCONCLUSIVE, f"too few calls ({baseline_calls} vs {contender_calls}; need {MIN_CALLS})"
    bound = math.log1p(min_effect)
    log_ratio = math.log(ratio.ratio)
    excludes_one = ratio.ci_low > 1.0 or ratio.ci_high < 1.0
    significant = p_adjusted < alpha and excludes_one
    if significant and abs(log_ratio) >= bound:
        worse = (log_ratio > 0) != higher_is_better
        verdict = VERDICT_SLOWER if worse else VERDICT_FASTER
        return verdict, f"adjusted p {p_adjusted:.2g} < {alpha:g} and |change| ≥ {min_effect:.1%}"
    if significant:
        return VERDICT_NO_CHANGE, f"significant (adjusted p {p_adjusted:.2g}) but smaller than {min_effect:.1%}"
    if abs(math.log(ratio.ci_low)) < bound and abs(math.log(ratio.ci_high)) < bound:
        return VERDICT_NO_CHANGE, f"not significant; the CI excludes changes beyond ±{min_effect:.1%}"
    return VERDICT_INCONCLUSIVE, f"not significant, but the CI still allows a change beyond ±{min_effect:.1%}"


def geometric_mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("a geometric mean needs values")
    return math.exp(sum(math.log(value) for value in values) / len(values))


def call_values(calls: Sequence[np.ndarray]) -> list[float]:
    """One value per call for the rank test: the call's median (its only value for per-call metrics)."""
    return [float(np.median(call)) for call in calls]

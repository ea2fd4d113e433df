"""Pure statistics for comparing two sides of one workload: the process is the unit between sides.

Why processes: two processes of the same workload on one machine differ (memory layout, thread placement,
what else the machine ran), often by more than the change being looked for. Calls within one process share
that process's draw, so a test that treats calls as the unit tests "these two processes differ", which is
almost always true. Each process therefore contributes one value per metric, the log of its median over its
calls, every process with equal weight, and the ratio, its interval and the test come from those values:

- ``welch``: Welch's t on the log process values of the two sides (Welch-Satterthwaite degrees of freedom);
- ``paired``: a paired t on the per-pair differences when the design pairs processes (``tokbench ab`` runs one
  A and one B process next to each other, so slow machine drift cancels);
- ``duet``: a paired t over duet pairs (``tokbench ab --duet``: a pair's two processes ran at once, their
  measured calls in turns), each pair's value the median over its rounds of log(contender call ÷ baseline call):
  load that changes within a pair's minute cancels call by call, not only on average;
- ``stored variance``: a side of one process has no spread of its own; when the machine's between-process
  variance of this workload is known from stored repeats (``sweep --repeat K``, an earlier ``ab``), it enters
  the standard error with its degrees of freedom; without it there is no test and no verdict.

Within one process the call stays the unit: the process value is the median of one value per call, its
within-process variance comes from the spread of the calls. Reciprocal metrics (TTFT and prefill
throughput, TPOT and decode throughput, E2E and overall throughput) answer one question each: they are one
hypothesis in Holm's correction. Distributions come from ``scipy.stats``; nothing here draws random numbers.
No torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy import stats as distributions

from tokbench.analysis.samples import metric_samples
from tokbench.analysis.thresholds import DEFAULT_ALPHA, DEFAULT_MIN_EFFECT, DEFAULT_POWER
from tokbench.schema.records import GenerationTrace

VERDICT_FASTER = "faster"
VERDICT_SLOWER = "slower"
VERDICT_NO_CHANGE = "no significant change"
VERDICT_BELOW_MIN_EFFECT = "below min-effect"  # significant, but smaller than --min-effect
VERDICT_INCONCLUSIVE = "inconclusive"
VERDICTS = (VERDICT_FASTER, VERDICT_SLOWER, VERDICT_NO_CHANGE, VERDICT_BELOW_MIN_EFFECT, VERDICT_INCONCLUSIVE)

TAIL_QUANTILES = (("p90", 0.90), ("p99", 0.99))

METHOD_WELCH = "welch"
METHOD_PAIRED = "paired"
METHOD_DUET = "duet"
METHOD_STORED = "stored variance"
METHOD_NONE = "none"

# Metrics where a larger value is better (throughputs); every other metric is a latency.
HIGHER_IS_BETTER = frozenset({"prefill_throughput_tok_s", "decode_throughput_tok_s", "overall_throughput_tok_s"})
# One hypothesis each: the latency first, then the throughput that is its reciprocal on the plain path.
HYPOTHESES: tuple[tuple[str, ...], ...] = (
    ("ttft_ms", "prefill_throughput_tok_s"),
    ("tpot_ms", "decode_throughput_tok_s"),
    ("itl_ms",),
    ("e2e_latency_ms", "overall_throughput_tok_s"),
)
# Metrics whose values within one call are not independent (gaps of one call): their tails get no interval.
CLUSTERED_METRICS = frozenset({"itl_ms"})
# Nodes of the quadrature over the sampling distribution of an estimated standard error (power).
_POWER_NODES = 256


def hypothesis_of(metric: str) -> str:
    """The hypothesis a metric belongs to, named by its latency (a metric outside ``HYPOTHESES``: itself)."""
    return next((group[0] for group in HYPOTHESES if metric in group), metric)


def per_call_samples(traces: Sequence[GenerationTrace]) -> dict[str, list[np.ndarray]]:
    """Every metric's samples grouped by call: the one definition of ``analysis.samples.metric_samples``, split
    at its call indices (latencies: one value per distinct request of the call, ITL every gap of the call,
    throughputs one value per call)."""
    grouped: dict[str, list[np.ndarray]] = {}
    for name, samples in metric_samples(traces).items():
        boundaries = np.searchsorted(samples.calls, np.arange(1, len(traces)))  # calls are in measurement order
        grouped[name] = [np.asarray(part, dtype=float) for part in np.split(samples.values, boundaries)]
    return grouped


def call_values(calls: Sequence[np.ndarray]) -> list[float]:
    """One value per call: the call's median (its only value for per-call metrics)."""
    lengths = {len(call) for call in calls}
    if lengths == {1}:  # one value per call (most metrics at batch 1): no median to take
        return [float(call[0]) for call in calls]
    if len(lengths) == 1 and 0 not in lengths:
        return np.median(np.stack(calls), axis=1).tolist()  # type: ignore[no-any-return]
    return [float(np.median(call)) for call in calls if len(call)]


# --- one value per process ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessValue:
    """One process's value of one metric: log of the median over its calls, and the variance of that log
    median from call-to-call spread alone (asymptotic variance of a median, π/2·s²/n, on the log scale)."""

    log_median: float
    within_variance: float  # nan with fewer than two calls
    calls: int

    @classmethod
    def of(cls, calls: Sequence[np.ndarray]) -> ProcessValue:
        values = call_values(calls)
        if not values or not min(values) > 0 or not math.isfinite(max(values)):
            raise ValueError("a process value needs positive, finite call values")
        # Plain Python on a few dozen floats: called for every process and metric, numpy's per-call overhead
        # would dominate (the calibration suite runs it hundreds of thousands of times).
        logs = sorted(math.log(value) for value in values)
        count, middle = len(logs), len(logs) // 2
        median = logs[middle] if count % 2 else (logs[middle - 1] + logs[middle]) / 2
        centre = sum(logs) / count
        spread = sum((value - centre) ** 2 for value in logs)
        within = math.pi / 2 * spread / (count - 1) / count if count >= 2 else math.nan
        return cls(log_median=median, within_variance=within, calls=count)


@dataclass(frozen=True)
class StoredVariance:
    """The machine's between-process variance of one metric of one workload, from stored repeats.

    ``between``: variance of the log process value between processes, less what call-to-call spread
    explains; ``df``: its degrees of freedom (Σ over repeat groups of runs − 1); ``source``: where it came from.
    """

    between: float
    df: float
    source: str


def stored_variance_of(groups: Sequence[Sequence[ProcessValue]], source: str) -> StoredVariance | None:
    """Pooled between-process variance over groups of repeats (each group: processes of one config, one
    machine); None without a group of two or more."""
    squares, df, within = 0.0, 0, []
    for group in groups:
        if len(group) < 2:
            continue
        logs = np.array([value.log_median for value in group])
        squares += float(np.sum((logs - logs.mean()) ** 2))
        df += len(group) - 1
        within.extend(value.within_variance for value in group if math.isfinite(value.within_variance))
    if df == 0:
        return None
    total = squares / df
    between = max(0.0, total - (float(np.mean(within)) if within else 0.0))
    return StoredVariance(between=between, df=float(df), source=source)


# --- the test between sides -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessTest:
    """contender − baseline of the mean log process value, with its standard error, degrees of freedom and
    two-sided p-value; ``method`` none (and nan figures) when the design cannot estimate the variance."""

    method: str
    log_ratio: float
    se: float
    df: float
    p_value: float
    baseline_processes: int
    contender_processes: int
    reason: str = ""  # why there is no test (method none), or where a stored variance came from

    @property
    def tested(self) -> bool:
        return self.method != METHOD_NONE

    @property
    def ratio(self) -> float:
        return math.exp(self.log_ratio)

    def interval(self, confidence: float) -> tuple[float, float] | None:
        """The t interval of the ratio at ``confidence``; None without a test."""
        if not self.tested:
            return None
        half = float(special.stdtrit(self.df, 0.5 + confidence / 2)) * self.se if self.se > 0 else 0.0
        return math.exp(self.log_ratio - half), math.exp(self.log_ratio + half)


def _p_value(log_ratio: float, se: float, df: float) -> float:
    """Two-sided p of a t statistic; ``special.stdtr`` is scipy's Student t CDF as a plain ufunc (the
    ``scipy.stats.t`` wrapper costs ~100 µs a call, and this runs for every metric of every comparison)."""
    if se <= 0:
        return 1.0 if log_ratio == 0 else 0.0
    return float(2 * special.stdtr(df, -abs(log_ratio) / se))


def welch_test(baseline: Sequence[ProcessValue], contender: Sequence[ProcessValue]) -> ProcessTest:
    """Welch's t on the log process values (two or more processes a side)."""
    a = [value.log_median for value in baseline]
    b = [value.log_median for value in contender]
    if len(a) < 2 or len(b) < 2:
        raise ValueError("Welch's test needs two or more processes a side")
    va, vb = _variance(a) / len(a), _variance(b) / len(b)
    se = math.sqrt(va + vb)
    denominator = va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)
    df = (va + vb) ** 2 / denominator if denominator > 0 else float(len(a) + len(b) - 2)
    estimate = sum(b) / len(b) - sum(a) / len(a)
    return ProcessTest(METHOD_WELCH, estimate, se, df, _p_value(estimate, se, df), len(a), len(b))


def _variance(values: Sequence[float]) -> float:
    """Sample variance (n − 1), in plain Python for the handful of process values a side has."""
    centre = sum(values) / len(values)
    return sum((value - centre) ** 2 for value in values) / (len(values) - 1)


def paired_test(baseline: Sequence[ProcessValue], contender: Sequence[ProcessValue]) -> ProcessTest:
    """Paired t on contender − baseline of each pair (two or more pairs): drift common to a pair cancels."""
    if len(baseline) != len(contender) or len(baseline) < 2:
        raise ValueError("a paired test needs two or more pairs")
    differences = [b.log_median - a.log_median for a, b in zip(baseline, contender, strict=True)]
    return _t_on_differences(METHOD_PAIRED, differences)


def _t_on_differences(method: str, differences: Sequence[float]) -> ProcessTest:
    """One-sample t on per-pair log differences: the pair is the unit (n − 1 degrees of freedom)."""
    se = math.sqrt(_variance(differences) / len(differences))
    df = float(len(differences) - 1)
    estimate = sum(differences) / len(differences)
    count = len(differences)
    return ProcessTest(method, estimate, se, df, _p_value(estimate, se, df), count, count)


def round_log_ratio(baseline_calls: Sequence[np.ndarray], contender_calls: Sequence[np.ndarray]) -> float:
    """One duet pair's value of one metric: the median over its rounds of log(contender call ÷ baseline call),
    call i of each side being round i (measured back to back); a call's value as in ``call_values``."""
    before, after = call_values(baseline_calls), call_values(contender_calls)
    if len(before) != len(after) or not before:
        raise ValueError(f"a duet pair needs the same calls on both sides ({len(before)} vs {len(after)})")
    if not min(before) > 0 or not min(after) > 0 or not math.isfinite(max(before) + max(after)):
        raise ValueError("a duet pair needs positive, finite call values")
    ratios = sorted(math.log(b) - math.log(a) for a, b in zip(before, after, strict=True))
    middle = len(ratios) // 2
    return ratios[middle] if len(ratios) % 2 else (ratios[middle - 1] + ratios[middle]) / 2


def duet_test(pair_values: Sequence[float]) -> ProcessTest:
    """Paired t over duet pairs (two or more), each pair's ``round_log_ratio``: the process stays the unit
    between pairs (a pair's two processes keep their own draws), the round the unit within a pair."""
    if len(pair_values) < 2:
        raise ValueError("a duet test needs two or more pairs")
    return _t_on_differences(METHOD_DUET, pair_values)


def stored_variance_test(
    baseline: Sequence[ProcessValue], contender: Sequence[ProcessValue], known: StoredVariance
) -> ProcessTest:
    """A side too small for its own spread: the stored between-process variance plus each side's own
    call-to-call part, with the stored repeats' degrees of freedom."""
    a = np.array([value.log_median for value in baseline])
    b = np.array([value.log_median for value in contender])
    within = [v.within_variance for v in (*baseline, *contender)]
    if not all(math.isfinite(w) for w in within):
        return no_test(len(baseline), len(contender), "a process has fewer than two calls")
    between_part = known.between * (1 / a.size + 1 / b.size)
    within_a = float(np.mean([v.within_variance for v in baseline])) / a.size
    within_b = float(np.mean([v.within_variance for v in contender])) / b.size
    variance = between_part + within_a + within_b
    # The stored repeats' degrees of freedom, not more: the call-to-call parts are better known, but a
    # Satterthwaite blend lets them lend the stored estimate a certainty it does not have (anti-conservative).
    df = known.df
    estimate = float(b.mean() - a.mean())
    se = math.sqrt(variance)
    return ProcessTest(
        METHOD_STORED, estimate, se, df, _p_value(estimate, se, df), a.size, b.size, reason=known.source
    )


def no_test(baseline_processes: int, contender_processes: int, reason: str) -> ProcessTest:
    nan = math.nan
    return ProcessTest(METHOD_NONE, nan, nan, nan, nan, baseline_processes, contender_processes, reason=reason)


def process_test(
    baseline: Sequence[ProcessValue],
    contender: Sequence[ProcessValue],
    *,
    paired: bool = False,
    stored: StoredVariance | None = None,
    duet: Sequence[float] | None = None,
) -> ProcessTest:
    """The test the design allows: duet (``duet``: each duet pair's ``round_log_ratio``), paired, Welch, the
    stored variance for a one-process side, or none."""
    if duet is not None and len(duet) >= 2:
        return duet_test(duet)
    estimate = sum(v.log_median for v in contender) / len(contender) - sum(v.log_median for v in baseline) / len(
        baseline
    )
    if paired and len(baseline) == len(contender) >= 2:
        return paired_test(baseline, contender)
    if len(baseline) >= 2 and len(contender) >= 2:
        return welch_test(baseline, contender)
    if stored is not None:
        return stored_variance_test(baseline, contender, stored)
    test = no_test(len(baseline), len(contender), "one process a side: the between-process variation is unknown")
    return ProcessTest(test.method, estimate, test.se, test.df, test.p_value, len(baseline), len(contender),
                       test.reason)  # fmt: skip


def hypothesis_p_value(tests: Sequence[ProcessTest]) -> float:
    """One p-value for the metrics of one hypothesis: the largest (rejecting needs every one to reject, which
    keeps the level whatever their dependence); nan when one has no test."""
    values = [test.p_value for test in tests]
    return math.nan if any(math.isnan(value) for value in values) else max(values)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control under any dependence); nan stays nan
    and does not count in the family."""
    present = [index for index, value in enumerate(p_values) if not math.isnan(value)]
    order = sorted(present, key=lambda index: p_values[index])
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for position, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - position) * p_values[index]))
        adjusted[index] = running
    return adjusted


# --- the verdict ------------------------------------------------------------------------------------------


def decide(
    test: ProcessTest,
    p_adjusted: float,
    higher_is_better: bool,
    *,
    min_effect: float = DEFAULT_MIN_EFFECT,
    alpha: float = DEFAULT_ALPHA,
    undecided: str = "",
) -> tuple[str, str]:
    """The verdict for one metric and why.

    faster / slower: significant after the multiple-comparison correction (adjusted p < alpha) AND the ratio
    beyond ``min_effect``. below min-effect: significant but smaller. no significant change: not significant,
    and the (1 − alpha) interval lies inside ±min_effect (no change beyond it). inconclusive: no test (one
    process a side; ``undecided`` says what would decide it), or an interval still wide enough for a change
    beyond ``min_effect``.
    """
    if not test.tested:
        return VERDICT_INCONCLUSIVE, "; ".join(filter(None, (test.reason, undecided)))
    bound = math.log1p(min_effect)
    if p_adjusted < alpha:
        if abs(test.log_ratio) >= bound:
            worse = (test.log_ratio > 0) != higher_is_better
            verdict = VERDICT_SLOWER if worse else VERDICT_FASTER
            return verdict, f"adjusted p {p_adjusted:.2g} < {alpha:.3g} and |change| ≥ {min_effect:.1%}"
        return VERDICT_BELOW_MIN_EFFECT, f"significant (adjusted p {p_adjusted:.2g}) but smaller than {min_effect:.1%}"
    low, high = test.interval(1 - alpha) or (math.nan, math.nan)
    if abs(math.log(low)) < bound and abs(math.log(high)) < bound:
        return VERDICT_NO_CHANGE, f"not significant; the interval excludes changes beyond ±{min_effect:.1%}"
    return VERDICT_INCONCLUSIVE, f"not significant, but the interval still allows a change beyond ±{min_effect:.1%}"


def decided(verdict: str, test: ProcessTest, *, min_effect: float, alpha: float) -> bool:
    """Whether more processes would not change the answer's kind: faster / slower, or an interval inside
    ±min_effect (no change beyond it)."""
    if verdict in (VERDICT_FASTER, VERDICT_SLOWER, VERDICT_NO_CHANGE):
        return True
    interval = test.interval(1 - alpha)
    bound = math.log1p(min_effect)
    return interval is not None and abs(math.log(interval[0])) < bound and abs(math.log(interval[1])) < bound


# --- power of the decision rule ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _PowerGrid:
    """What the power of a rule at one (df, tests, alpha) needs whatever the effect: the t critical value and
    the spread of an estimated standard error, √(χ²_df / df) at equal-probability nodes."""

    critical: float
    se_factors: np.ndarray

    @classmethod
    def of(cls, df: float, tests: int, alpha: float) -> _PowerGrid:
        critical = float(distributions.t.ppf(1 - alpha / (2 * tests), df))
        nodes = distributions.chi2.ppf((np.arange(_POWER_NODES) + 0.5) / _POWER_NODES, df) / df
        return cls(critical, np.sqrt(nodes))

    def power(self, log_effect: float, se: float, min_effect: float) -> float:
        threshold = np.maximum(self.critical * se * self.se_factors, math.log1p(min_effect))
        return float(np.mean(distributions.norm.sf((threshold - abs(log_effect)) / se)))


def rule_power(log_effect: float, se: float, df: float, tests: int, *, alpha: float, min_effect: float) -> float:
    """P(a verdict in the effect's direction) for a true ``log_effect``: the t test at Holm's first step
    (alpha / tests, the worst case) AND the estimate beyond min_effect. The estimated standard error varies
    as se·√(χ²_df / df); the expectation over it is a quadrature at equal-probability nodes."""
    if not (se > 0 and df > 0):
        return math.nan
    return _PowerGrid.of(df, tests, alpha).power(log_effect, se, min_effect)


def median_unbiased_se(se: float, df: float) -> float:
    """An estimated standard error scaled so it is median-unbiased: s² ~ σ²·χ²_df/df has median below σ²."""
    return se / math.sqrt(float(distributions.chi2.ppf(0.5, df)) / df)


def detectable_change(
    se: float, df: float, tests: int, *, alpha: float, min_effect: float, power: float = DEFAULT_POWER
) -> float:
    """The smallest change (ratio − 1) this rule detects with ``power``, for the process-level standard
    error ``se`` (made median-unbiased first); nan without one."""
    if not (se > 0 and df > 0):
        return math.nan
    scale = median_unbiased_se(se, df)
    grid = _PowerGrid.of(df, tests, alpha)
    low, high = math.log1p(min_effect), math.log1p(min_effect) + 50 * scale + 1.0
    if grid.power(high, scale, min_effect) < power:
        return math.inf
    for _ in range(40):  # bisection on a monotone function: 2⁻⁴⁰ of the bracket
        middle = (low + high) / 2
        if grid.power(middle, scale, min_effect) >= power:
            high = middle
        else:
            low = middle
    return math.expm1(high)


@dataclass(frozen=True)
class ProcessSpread:
    """What the power of a design with more processes depends on: the variance of one process's value
    (or of one pair's difference) and whether the design pairs processes."""

    variance: float
    paired: bool


def spread_of(test: ProcessTest) -> ProcessSpread | None:
    """The per-process (per-pair) variance behind ``test``'s standard error."""
    if not (test.tested and test.se > 0):
        return None
    if test.method in (METHOD_PAIRED, METHOD_DUET):
        return ProcessSpread(test.se**2 * test.baseline_processes, paired=True)
    harmonic = 1 / test.baseline_processes + 1 / test.contender_processes
    return ProcessSpread(test.se**2 / harmonic, paired=False)


def processes_for_change(
    spread: ProcessSpread | None,
    change: float,
    tests: int,
    *,
    alpha: float,
    min_effect: float,
    power: float = DEFAULT_POWER,
    limit: int = 1000,
) -> int | None:
    """Processes a side (pairs, when paired) for this rule to detect ``change`` with ``power``; None when
    unknown or beyond ``limit`` (e.g. a change not beyond min_effect can never reach 50%)."""
    if spread is None or change <= min_effect:
        return None

    def enough(count: int) -> bool:
        if spread.paired:
            se, df = math.sqrt(spread.variance / count), count - 1
        else:
            se, df = math.sqrt(2 * spread.variance / count), 2 * count - 2
        return _PowerGrid.of(df, tests, alpha).power(math.log1p(change), se, min_effect) >= power

    if not enough(limit):
        return None
    low, high = 1, limit  # power grows with the count: bisect for the first count with enough power
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


# --- tails and the geometric mean ----------------------------------------------------------------------------


def quantile_interval(values: Sequence[float], quantile: float, confidence: float) -> tuple[float, float] | None:
    """Distribution-free interval of a quantile from order statistics: [x_(l), x_(u)] with
    P(B < l) ≤ tail and P(B ≥ u) ≤ tail for B ~ Binomial(n, quantile); None when n is too small."""
    ordered = np.sort(np.asarray(values, dtype=float))
    n = ordered.size
    if n == 0:
        return None
    tail = (1 - confidence) / 2
    counts = np.arange(n + 1)
    cdf = distributions.binom.cdf(counts, n, quantile)
    below = counts[cdf <= tail]  # P(B ≤ l − 1) ≤ tail
    above = counts[distributions.binom.sf(counts, n, quantile) <= tail]  # P(B ≥ u) = sf(u − 1) ≤ tail
    if below.size == 0 or above.size == 0:
        return None
    lower, upper = int(below.max()) + 1, int(above.min()) + 1
    if lower < 1 or upper > n:
        return None
    return float(ordered[lower - 1]), float(ordered[upper - 1])


@dataclass(frozen=True)
class TailRatio:
    """contender ÷ baseline of a quantile of the calls; the interval is None when the calls are too few (or the
    values of one call are not independent)."""

    statistic: str
    baseline: float
    contender: float
    ratio: float
    interval: tuple[float, float] | None


def tail_ratio(
    name: str, quantile: float, baseline: Sequence[float], contender: Sequence[float], *, independent: bool,
    confidence: float = 1 - DEFAULT_ALPHA,
) -> TailRatio:  # fmt: skip
    """Each side's quantile, and an interval of their ratio from the two order-statistic intervals at √confidence
    each (independent sides: both cover with ≥ confidence)."""
    base, cont = float(np.quantile(baseline, quantile)), float(np.quantile(contender, quantile))
    interval = None
    if independent:
        side = math.sqrt(confidence)
        first, second = quantile_interval(baseline, quantile, side), quantile_interval(contender, quantile, side)
        if first is not None and second is not None and first[0] > 0:
            interval = (second[0] / first[1], second[1] / first[0])
    return TailRatio(name, base, cont, cont / base if base > 0 else math.nan, interval)


@dataclass(frozen=True)
class MeanOfRatios:
    """Geometric mean of per-workload ratios with a t interval (fixed workloads: their own errors only)."""

    ratio: float
    interval: tuple[float, float] | None
    workloads: int


def geometric_mean_of(tests: Sequence[ProcessTest], confidence: float = 1 - DEFAULT_ALPHA) -> MeanOfRatios:
    """mean of the log ratios; SE = √Σse²/W with Satterthwaite degrees of freedom; no interval when a
    workload has no test."""
    if not tests:
        raise ValueError("a geometric mean needs ratios")
    logs = [test.log_ratio for test in tests]
    ratio = math.exp(sum(logs) / len(logs))
    if not all(test.tested for test in tests):
        return MeanOfRatios(ratio, None, len(tests))
    variance = sum(test.se**2 for test in tests) / len(tests) ** 2
    pieces = sum((test.se**2 / len(tests) ** 2) ** 2 / test.df for test in tests if test.se > 0)
    df = variance**2 / pieces if pieces > 0 else math.inf
    half = float(distributions.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(variance) if variance > 0 else 0.0
    centre = math.log(ratio)
    return MeanOfRatios(ratio, (math.exp(centre - half), math.exp(centre + half)), len(tests))

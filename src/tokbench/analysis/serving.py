"""Pure statistics of serving runs: requests in, traces, run figures, SLO verdicts and saturation out.

The per-token metrics of a serving run are the in-process ones (``analysis.metrics`` via ``metric_samples``):
``request_traces`` turns the successful requests into ``GenerationTrace`` blocks whose submission instant is each
request's *intended* send time (so a late client cannot hide server queueing) and whose finish is its last byte.
Consecutive requests share the server's state, so a block of them is the bootstrap's cluster, as a generate
call's tokens are in-process.

SLO percentiles get distribution-free (order-statistic) confidence bounds; a failed request counts as an
infinitely slow one, so errors always count against an objective and against goodput.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist

import numpy as np

from tokbench.analysis.metrics import NS_PER_MS, NS_PER_S, time_per_output_token_ns
from tokbench.analysis.stationarity import mann_kendall
from tokbench.schema.records import GenerationTrace
from tokbench.schema.serving import ClientLag, RequestRecord, ServingSettings, ServingSummary, SloSpec

CONFIDENCE = 0.95
# A run's queue is growing when the TTFT of its requests (from the intended send) trends up this clearly.
QUEUE_TREND_ALPHA = 0.01
QUEUE_GROWTH_RATIO = 2.0  # last third's median TTFT over the first third's
# A rate is beyond saturation when the server completes less than this share of what was offered.
PLATEAU_SHARE = 0.9


def block_size_for(completed: int, concurrency_hint: float) -> int:
    """Requests per bootstrap cluster: at least the requests in flight together (they share the server's
    batches), and at least n^(1/3) (the usual block length for a dependent series)."""
    if completed <= 0:
        return 1
    return max(1, math.ceil(concurrency_hint), math.ceil(completed ** (1 / 3)))


def measured(requests: Sequence[RequestRecord]) -> list[RequestRecord]:
    """The measured requests (warmup left out), in intended-send order."""
    return sorted((r for r in requests if not r.warmup), key=lambda r: (r.intended_ns, r.index))


def request_traces(
    requests: Sequence[RequestRecord], block_size: int
) -> tuple[tuple[GenerationTrace, ...], dict[int, tuple[int, int]]]:
    """The successful measured requests as traces of ``block_size`` consecutive requests, and where each
    request landed (index -> (iteration, row))."""
    usable = [r for r in measured(requests) if r.ok and r.output_tokens > 0]
    traces: list[GenerationTrace] = []
    placement: dict[int, tuple[int, int]] = {}
    for start in range(0, len(usable), max(1, block_size)):
        block = usable[start : start + block_size]
        for row, request in enumerate(block):
            placement[request.index] = (len(traces), row)
        traces.append(
            GenerationTrace(
                t0_ns=min(r.intended_ns for r in block),
                end_ns=max(r.end_ns for r in block),
                token_timestamps_ns=tuple(r.token_stamps() for r in block),
                prompt_tokens=tuple(r.usage_prompt_tokens or r.prompt_tokens for r in block),
                generated_tokens=tuple(r.output_tokens for r in block),
                output_shape=(len(block),),
                request_submitted_ns=tuple(r.intended_ns for r in block),
                request_finished_ns=tuple(r.end_ns for r in block),
            )
        )
    return tuple(traces), placement


# --- percentiles with confidence -------------------------------------------------------------------------


@dataclass(frozen=True)
class PercentileBound:
    """A percentile of a sample with failures as +inf, and its two-sided distribution-free 95% interval."""

    estimate: float
    low: float
    high: float
    count: int


def percentile_bounds(values: Sequence[float], percentile: float, confidence: float = CONFIDENCE) -> PercentileBound:
    """The ``percentile`` of ``values`` (inf allowed) with an order-statistic interval: the ranks whose binomial
    coverage of the quantile is at least ``confidence`` (no distribution assumed, exact for independent draws)."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    n = ordered.size
    if n == 0:
        return PercentileBound(math.nan, math.nan, math.nan, 0)
    q = percentile / 100.0
    rank = min(n - 1, max(0, math.ceil(q * n) - 1))  # the nearest-rank percentile (no interpolation with inf)
    tail = (1 - confidence) / 2
    cdf = binomial_cdf(n, q)
    # 1-based ranks: X_(l) <= quantile with probability P(B >= l) = 1 - cdf[l-1] >= 1 - tail, i.e. the largest l
    # with cdf[l-1] <= tail; X_(h) >= quantile with probability P(B < h) = cdf[h-1] >= 1 - tail, the smallest h.
    low_rank = int(np.searchsorted(cdf, tail, side="right"))  # count of k with cdf[k] <= tail
    high_rank = int(np.searchsorted(cdf, 1 - tail, side="left")) + 1
    low = float(ordered[low_rank - 1]) if low_rank >= 1 else -math.inf
    high = float(ordered[high_rank - 1]) if high_rank <= n else math.inf
    return PercentileBound(float(ordered[rank]), low, high, n)


def binomial_cdf(n: int, p: float) -> np.ndarray:
    """P(Binom(n, p) <= k) for k = 0..n, from log-space terms (no scipy in the torch-free core)."""
    k = np.arange(n + 1)
    if p <= 0.0 or p >= 1.0:
        return np.where(k >= (n if p >= 1.0 else 0), 1.0, 0.0)
    log_terms = np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in k])
    log_terms += k * math.log(p) + (n - k) * math.log1p(-p)
    return np.minimum(np.cumsum(np.exp(log_terms - log_terms.max())) / np.exp(-log_terms.max()), 1.0)


def proportion_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a proportion (close to nominal coverage even near 0 and 1)."""
    if trials == 0:
        return (0.0, 1.0)
    z = _normal_quantile(1 - (1 - confidence) / 2)
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    return (low, 1.0 if successes == trials else min(1.0, centre + half))


def _normal_quantile(probability: float) -> float:
    return float(NormalDist().inv_cdf(probability))


# --- one request's figures, as the in-process definitions give them -------------------------------------


def request_ttft_ms(request: RequestRecord) -> float:
    return (request.event_ns[0] - request.intended_ns) / NS_PER_MS if request.ok and request.event_ns else math.inf


def request_tpot_ms(request: RequestRecord) -> float:
    stamps = request.token_stamps() if request.ok else ()
    return time_per_output_token_ns(stamps) / NS_PER_MS if len(stamps) >= 2 else math.inf


def request_e2e_ms(request: RequestRecord) -> float:
    return (request.end_ns - request.intended_ns) / NS_PER_MS if request.ok else math.inf


_SLO_FIGURES = {"ttft_ms": request_ttft_ms, "tpot_ms": request_tpot_ms, "e2e_ms": request_e2e_ms}


def request_is_good(request: RequestRecord, slo: SloSpec) -> bool:
    """Succeeded and met every objective (a one-token answer has no TPOT: it fails a TPOT objective)."""
    if not request.ok:
        return False
    for name, figure in _SLO_FIGURES.items():
        limit = getattr(slo, name)
        if limit is not None and not figure(request) <= limit:
            return False
    return True


def slo_verdict(requests: Sequence[RequestRecord], slo: SloSpec) -> tuple[bool | None, dict[str, dict[str, float]]]:
    """Whether every objective's percentile is within its limit with 95% confidence: True (the interval's upper
    end is within), False (its lower end is beyond), None (the interval straddles the limit: more requests)."""
    detail: dict[str, dict[str, float]] = {}
    verdicts: list[bool | None] = []
    for name, figure in _SLO_FIGURES.items():
        limit = getattr(slo, name)
        if limit is None:
            continue
        bound = percentile_bounds([figure(r) for r in requests], slo.percentile)
        detail[name] = {"limit": limit, **{key: value if math.isfinite(value) else None for key, value in
                                           (("estimate", bound.estimate), ("low", bound.low), ("high", bound.high))}}
        verdicts.append(True if bound.high <= limit else False if bound.low > limit else None)
    if not verdicts:
        return None, detail
    if all(v is True for v in verdicts):
        return True, detail
    if any(v is False for v in verdicts):
        return False, detail
    return None, detail


# --- run figures ---------------------------------------------------------------------------------------------


def concurrency_steps(requests: Sequence[RequestRecord]) -> tuple[list[int], list[int]]:
    """Requests in flight over time (from actual send to last byte): step instants and counts after each."""
    changes = sorted([(r.sent_ns, 1) for r in requests] + [(r.end_ns, -1) for r in requests])
    times, counts, level = [], [], 0
    for instant, delta in changes:
        level += delta
        times.append(instant)
        counts.append(level)
    return times, counts


def run_window_ns(requests: Sequence[RequestRecord]) -> int:
    """From the first intended send to the last byte of the measured requests."""
    if not requests:
        return 0
    return max(r.end_ns for r in requests) - min(r.intended_ns for r in requests)


def lag_percentiles_ms(requests: Sequence[RequestRecord]) -> tuple[float, float, float]:
    """Send lag p50, p99 and max (ms) of ``requests`` (zeros for none)."""
    lags = np.asarray([r.send_lag_ns for r in requests], dtype=np.float64) / NS_PER_MS
    if not lags.size:
        return 0.0, 0.0, 0.0
    return float(np.percentile(lags, 50)), float(np.percentile(lags, 99)), float(lags.max())


def client_lags(requests: Sequence[RequestRecord]) -> tuple[ClientLag, ...] | None:
    """Each client process's send lag, when the requests name their client (``--clients``); else None."""
    clients = sorted({r.client for r in requests if r.client is not None})
    if not clients:
        return None
    lags = []
    for client in clients:
        p50, p99, most = lag_percentiles_ms([r for r in requests if r.client == client])
        lags.append(ClientLag(client, sum(1 for r in requests if r.client == client), p50, p99, most))
    return tuple(lags)


def serving_summary(
    requests: Sequence[RequestRecord], settings: ServingSettings, slo: SloSpec | None = None
) -> ServingSummary:
    """The run's figures from its measured requests alone."""
    runs = measured(requests)
    duration_ns = max(1, run_window_ns(runs))
    duration_s = duration_ns / NS_PER_S
    ok = [r for r in runs if r.ok]
    errors: dict[str, int] = {}
    for r in runs:
        if not r.ok:
            errors[r.status] = errors.get(r.status, 0) + 1
    lag_p50, lag_p99, lag_max = lag_percentiles_ms(runs)
    events = [t for r in ok for t in r.event_tokens]
    reads = [r.reads for r in ok if r.reads]
    offered = None
    if settings.load == "rate" and len(runs) > 1:  # what the schedule really offered (a Poisson draw varies)
        span = runs[-1].intended_ns - runs[0].intended_ns
        offered = (len(runs) - 1) * NS_PER_S / span if span > 0 else None
    _, counts = concurrency_steps(runs)
    summary = ServingSummary(
        duration_s=duration_s,
        completed=len(ok),
        failed=len(runs) - len(ok),
        errors=errors,
        request_throughput=len(ok) / duration_s,
        output_throughput_tok_s=sum(r.output_tokens for r in ok) / duration_s,
        input_throughput_tok_s=sum(r.usage_prompt_tokens or r.prompt_tokens for r in ok) / duration_s,
        offered_rate=offered,
        send_lag_p50_ms=lag_p50,
        send_lag_p99_ms=lag_p99,
        send_lag_max_ms=lag_max,
        mean_concurrency=sum(r.end_ns - r.sent_ns for r in runs) / duration_ns,
        peak_concurrency=max(counts, default=0),
        events=len(events),
        multi_token_events=sum(1 for tokens in events if tokens > 1),
        max_tokens_per_event=max(events, default=0),
        mean_events_per_read=(sum(len(r.event_ns) for r in ok if r.reads) / sum(reads)) if reads else None,
        output_tokens_mismatch=sum(
            1 for r in ok if r.usage_completion_tokens is not None and r.usage_completion_tokens != r.output_tokens
        ),
        client_lags=client_lags(runs),
    )
    if slo is None:
        return summary
    good = sum(1 for r in runs if request_is_good(r, slo))
    met, detail = slo_verdict(runs, slo)
    return replace(
        summary,
        goodput=good / duration_s,
        good_fraction=good / len(runs) if runs else None,
        good_fraction_ci=proportion_interval(good, len(runs)),
        slo_met=met,
        slo_detail=detail,
    )


def invalid_reason(summary: ServingSummary, settings: ServingSettings) -> str:
    """Why an open-loop run cannot be trusted (its client fell behind its schedule), or ""."""
    if settings.load != "rate":
        return ""
    if summary.send_lag_p99_ms > settings.lag_budget_ms:
        return (
            f"the client fell behind its schedule: p99 send lag {summary.send_lag_p99_ms:.3f} ms > budget "
            f"{settings.lag_budget_ms:g} ms (latencies still count from the intended send)"
        )
    return ""


# --- saturation ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueGrowth:
    """Whether TTFT (from the intended send) grows through a run: the server's queue is building."""

    growing: bool
    p_value: float
    first_third_ms: float
    last_third_ms: float


def queue_growth(requests: Sequence[RequestRecord]) -> QueueGrowth:
    ttfts = [request_ttft_ms(r) for r in measured(requests) if r.ok and r.event_ns]
    if len(ttfts) < 9:
        return QueueGrowth(False, 1.0, math.nan, math.nan)
    third = len(ttfts) // 3
    first, last = float(np.median(ttfts[:third])), float(np.median(ttfts[-third:]))
    trend = mann_kendall(ttfts)
    growing = trend.p_value < QUEUE_TREND_ALPHA and trend.s > 0 and last > QUEUE_GROWTH_RATIO * first
    return QueueGrowth(growing, trend.p_value, first, last)


@dataclass(frozen=True)
class SaturationPoint:
    offered: float  # offered rate (req/s) or concurrency: the setting
    achieved: float  # completed requests / s
    queue_growing: bool
    realized: float | None = None  # the rate the schedule really offered (a Poisson draw is not exactly the rate)


@dataclass(frozen=True)
class SaturationVerdict:
    saturated: bool
    first_saturated: float | None  # the first offered load past saturation
    max_throughput: float  # the highest achieved request rate
    reason: str


def saturation_verdict(points: Sequence[SaturationPoint], open_loop: bool) -> SaturationVerdict:
    """Past saturation where the queue grows through a run; with an open loop, where the server completes less
    than 90% of the offered rate; with a closed loop, where throughput stops rising (< 5% more for more load)."""
    ordered = sorted(points, key=lambda p: p.offered)
    best = max((p.achieved for p in ordered), default=0.0)
    for index, point in enumerate(ordered):
        if point.queue_growing:
            return SaturationVerdict(True, point.offered, best, f"queue grows through the run at {point.offered:g}")
        offered = point.realized or point.offered
        if open_loop and point.achieved < PLATEAU_SHARE * offered:
            return SaturationVerdict(
                True, point.offered, best,
                f"completes {point.achieved:.3g} req/s of {offered:.3g} offered (< {PLATEAU_SHARE:.0%})",
            )  # fmt: skip
        if not open_loop and index > 0:
            previous = ordered[index - 1]
            if point.offered > previous.offered and point.achieved < previous.achieved * 1.05:
                return SaturationVerdict(
                    True, point.offered, best,
                    f"throughput plateau: {previous.achieved:.3g} -> {point.achieved:.3g} req/s at {point.offered:g}",
                )  # fmt: skip
    return SaturationVerdict(False, None, best, "no saturation within the offered loads")

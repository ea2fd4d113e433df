"""Summaries of a run's metrics, computed from its raw traces alone (pure, no torch)."""

from __future__ import annotations

from tokbench.analysis.metrics import (
    METRIC_UNITS,
    NS_PER_MS,
    distinct_requests,
    inter_token_latencies_ns,
    metric_samples,
)
from tokbench.analysis.stats import median, summarize
from tokbench.schema.records import GenerationTrace
from tokbench.schema.results import BenchmarkResult
from tokbench.schema.summary import Summary


def summarize_traces(traces: tuple[GenerationTrace, ...] | list[GenerationTrace]) -> dict[str, Summary]:
    """The summary of every metric, computed from raw traces alone."""
    if not traces:
        return {}
    samples = metric_samples(traces)
    # ITL pools every gap: its trend is tested on one value per call (the median gap), in call order.
    orders = {"itl_ms": [median(_call_gaps_ms(trace)) for trace in traces]}
    return {name: summarize(values, METRIC_UNITS[name], order=orders.get(name)) for name, values in samples.items()}


def _call_gaps_ms(trace: GenerationTrace) -> list[float]:
    rows = trace.token_timestamps_ns
    return [gap / NS_PER_MS for row in distinct_requests(trace) for gap in inter_token_latencies_ns(rows[row])]


def recompute_summary(result: BenchmarkResult) -> dict[str, Summary]:
    return summarize_traces(result.iterations)

"""Each metric's samples, defined once: the values and the generate call each one came from.

Every consumer of a metric (the auto measurement policy's stopping rule, the stored summary, reports,
comparisons) takes its samples from ``metric_samples`` so they can never disagree about what a sample
is. What counts as one sample (see ``metrics`` for the formulas):

- TTFT, TPOT, E2E latency: one per distinct request of a call (one per call on the plain path, whose
  lockstep rows share their stamps; one per request with continuous batching, from the request's own
  submission to its own finish); TPOT only for requests of two tokens or more (in-process runs always
  generate at least two; a served answer that stopped after one has no TPOT);
- ITL: every gap between consecutive tokens of every distinct request, pooled;
- the throughputs: one per call (none for a block of requests timed on their own without a duration: a
  served block whose tokens all arrived in one read has no decode time to divide by).

Each value carries its call index, because values of one call are measured together and correlated
(the gaps of one call share its machine state; the requests of one continuous-batching call share
its steps): ``stats.bootstrap_intervals`` resamples whole calls.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np

from tokbench.analysis.metrics import (
    METRIC_UNITS,
    NS_PER_MS,
    decode_throughput,
    distinct_requests,
    inter_token_latencies_ns,
    overall_throughput,
    prefill_throughput,
    request_e2e_ns,
    request_ttft_ns,
    time_per_output_token_ns,
)
from tokbench.analysis.stats import FloatArray, IntArray, median
from tokbench.schema.records import GenerationTrace

# Metrics with many values per call whose trend is tested on one value per call (the call's median),
# in call order: thousands of pooled gaps would find a "trend" in the shape of every single call.
TREND_PER_CALL = frozenset({"itl_ms"})


@dataclass(frozen=True, eq=False)
class MetricSamples:
    """One metric's sample values in measurement order, with the 0-based call index of each value.

    ``eq=False``: numpy arrays have no single truth value; compare ``values`` / ``calls`` explicitly.
    """

    name: str
    unit: str
    values: FloatArray
    calls: IntArray

    def __post_init__(self) -> None:
        if self.values.shape != self.calls.shape:
            raise ValueError(f"{self.name}: {self.values.size} values but {self.calls.size} call indices")

    def __len__(self) -> int:
        return int(self.values.size)

    def per_call_medians(self) -> list[float]:
        """The median value of each call, in call order."""
        boundaries = np.flatnonzero(np.diff(self.calls)) + 1
        return [median(group) for group in np.split(self.values, boundaries)]

    def trend_series(self) -> list[float] | FloatArray:
        """The series the trend test runs on: per-call medians for pooled metrics, else the values."""
        return self.per_call_medians() if self.name in TREND_PER_CALL else self.values


# Per distinct request, in ns (converted once, in metric_samples); and per call, in tokens per second.
_PER_REQUEST_NS: dict[str, Callable[[GenerationTrace, int, tuple[int, ...]], float]] = {
    "ttft_ms": lambda trace, row, stamps: request_ttft_ns(trace, row),
    "tpot_ms": lambda trace, row, stamps: time_per_output_token_ns(stamps),
    "e2e_latency_ms": lambda trace, row, stamps: request_e2e_ns(trace, row),
}
_PER_CALL: dict[str, Callable[[GenerationTrace], float]] = {
    "prefill_throughput_tok_s": prefill_throughput,
    "decode_throughput_tok_s": decode_throughput,
    "overall_throughput_tok_s": overall_throughput,
}


def metric_samples(
    traces: Sequence[GenerationTrace], metrics: Collection[str] | None = None
) -> dict[str, MetricSamples]:
    """Every metric's samples over ``traces`` (in ``METRIC_UNITS`` order), or only those named in
    ``metrics`` (the others are not computed, so a broken one cannot fail them). Times stay integer
    nanoseconds until here, where they become ms / tokens per second."""
    wanted = set(METRIC_UNITS) if metrics is None else set(metrics)
    if not wanted <= set(METRIC_UNITS):
        raise ValueError(f"unknown metrics {sorted(wanted - set(METRIC_UNITS))}; known: {', '.join(METRIC_UNITS)}")
    values: dict[str, list[float]] = {name: [] for name in METRIC_UNITS}
    calls: dict[str, list[int]] = {name: [] for name in METRIC_UNITS}
    itl_parts: list[FloatArray] = []
    itl_calls: list[IntArray] = []
    for call, trace in enumerate(traces):
        for row in distinct_requests(trace):
            stamps = trace.token_timestamps_ns[row]
            per_request = {
                name: formula(trace, row, stamps) / NS_PER_MS
                for name, formula in _PER_REQUEST_NS.items()
                if name in wanted and (name != "tpot_ms" or len(stamps) >= 2)  # a served answer may be 1 token
            }
            for name, value in per_request.items():
                values[name].append(value)
                calls[name].append(call)
            if "itl_ms" not in wanted:
                continue
            gaps = np.asarray(inter_token_latencies_ns(stamps), dtype=np.int64)  # integer ns until the division
            itl_parts.append(gaps / NS_PER_MS)
            itl_calls.append(np.full(gaps.size, call, dtype=np.int64))
        per_call = {}
        for name, formula in _PER_CALL.items():
            if name not in wanted:
                continue
            try:
                per_call[name] = formula(trace)
            except ValueError:
                # Requests timed on their own (a served block) can have every token of the block arrive in one
                # socket read: no duration, no throughput. A lockstep call without a duration is broken: raise.
                if not trace.per_request_timing:
                    raise
        for name, value in per_call.items():
            values[name].append(value)
            calls[name].append(call)
    result: dict[str, MetricSamples] = {}
    for name, unit in METRIC_UNITS.items():
        if name not in wanted:
            continue
        if name == "itl_ms":
            metric_values = np.concatenate(itl_parts) if itl_parts else np.empty(0)
            metric_calls = np.concatenate(itl_calls) if itl_calls else np.empty(0, dtype=np.int64)
        else:
            metric_values = np.asarray(values[name], dtype=np.float64)
            metric_calls = np.asarray(calls[name], dtype=np.int64)
        result[name] = MetricSamples(name, unit, metric_values.astype(np.float64), metric_calls)
    return result


def sample_values(traces: Sequence[GenerationTrace]) -> dict[str, list[float]]:
    """Every metric's sample values as plain lists (for reading and tests; statistics use ``metric_samples``)."""
    return {name: samples.values.tolist() for name, samples in metric_samples(traces).items()}

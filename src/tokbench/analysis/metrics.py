"""Pure metric functions: raw integer-ns traces in, metric samples out.

One set of definitions for every generation path (see docs/architecture.md). For one request:
``t0`` is the instant just before the generate call, ``t_i`` the instant its token ``i`` (1..N)
reached the host, ``t_end`` the instant generate returned. With continuous batching each request
has its own ``t0`` (its submission) and ``t_end`` (its finished output reaching the caller); the
call-level throughputs then run from the first submission to the last finish.

    TTFT  = t_1 - t0                 TPOT = (t_N - t_1) / (N - 1)
    ITL   = t_i - t_(i-1), i=2..N    E2E  = t_end - t0
    prefill throughput = prompt tokens of the batch / (last first-token instant - t0)
    decode throughput  = sum over requests of (N - 1) / (last t_N - first t_1)
    overall throughput = generated tokens of the batch / (t_end - t0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from tokbench.schema.records import GenerationTrace

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000

# Metric name -> unit, in the order reports show them.
METRIC_UNITS: dict[str, str] = {
    "ttft_ms": "ms",
    "tpot_ms": "ms",
    "itl_ms": "ms",
    "e2e_latency_ms": "ms",
    "prefill_throughput_tok_s": "tok/s",
    "decode_throughput_tok_s": "tok/s",
    "overall_throughput_tok_s": "tok/s",
}
# What each metric is called wherever a person reads it (terminal, Markdown, HTML).
METRIC_LABELS = {
    "ttft_ms": "TTFT",
    "tpot_ms": "TPOT",
    "itl_ms": "ITL",
    "e2e_latency_ms": "E2E latency",
    "prefill_throughput_tok_s": "prefill throughput",
    "decode_throughput_tok_s": "decode throughput",
    "overall_throughput_tok_s": "overall throughput",
}


def time_to_first_token_ns(t0_ns: int, token_timestamps_ns: Sequence[int]) -> int:
    return token_timestamps_ns[0] - t0_ns


def time_per_output_token_ns(token_timestamps_ns: Sequence[int]) -> float:
    """Mean decode time per token after the first; needs at least two tokens."""
    if len(token_timestamps_ns) < 2:
        raise ValueError("TPOT needs at least 2 generated tokens")
    return (token_timestamps_ns[-1] - token_timestamps_ns[0]) / (len(token_timestamps_ns) - 1)


def inter_token_latencies_ns(token_timestamps_ns: Sequence[int]) -> list[int]:
    """The N-1 gaps between consecutive tokens (never the gap to generate's return)."""
    return [later - earlier for earlier, later in pairwise(token_timestamps_ns)]


def end_to_end_latency_ns(t0_ns: int, end_ns: int) -> int:
    return end_ns - t0_ns


def tokens_per_second(tokens: int, duration_ns: int) -> float:
    if duration_ns <= 0:
        raise ValueError(f"a throughput needs a positive duration, got {duration_ns} ns")
    return tokens * NS_PER_S / duration_ns


def prefill_throughput(trace: GenerationTrace) -> float:
    last_first_token_ns = max(row[0] for row in trace.token_timestamps_ns)
    return tokens_per_second(sum(trace.prompt_tokens), last_first_token_ns - trace.t0_ns)


def decode_throughput(trace: GenerationTrace) -> float:
    decode_tokens = sum(len(row) - 1 for row in trace.token_timestamps_ns)
    first_ns = min(row[0] for row in trace.token_timestamps_ns)
    last_ns = max(row[-1] for row in trace.token_timestamps_ns)
    return tokens_per_second(decode_tokens, last_ns - first_ns)


def overall_throughput(trace: GenerationTrace) -> float:
    return tokens_per_second(sum(trace.generated_tokens), trace.e2e_ns)


def distinct_requests(trace: GenerationTrace) -> list[int]:
    """The row indices of a call that are distinct requests in time.

    Plain ``generate`` advances a batch in lockstep, so all its rows carry the same stamps: they are
    one timing sample, not B independent ones (counting them B times would inflate n and shrink
    the spread); the first row of each distinct stamp list stands for them. Requests submitted on
    their own (continuous batching) always each count.
    """
    if trace.per_request_timing:
        return list(range(trace.batch_size))
    first_row_of: dict[tuple[int, ...], int] = {}
    for row, stamps in enumerate(trace.token_timestamps_ns):
        first_row_of.setdefault(stamps, row)
    return list(first_row_of.values())


def request_ttft_ns(trace: GenerationTrace, row: int) -> int:
    return time_to_first_token_ns(trace.submitted_ns(row), trace.token_timestamps_ns[row])


def request_e2e_ns(trace: GenerationTrace, row: int) -> int:
    return end_to_end_latency_ns(trace.submitted_ns(row), trace.finished_ns(row))


@dataclass(frozen=True)
class RequestSamples:
    """One request position's samples over iterations: its prompt length and per-iteration latencies."""

    row: int
    prompt_tokens: int
    ttft_ms: tuple[float, ...]
    tpot_ms: tuple[float, ...]
    e2e_latency_ms: tuple[float, ...]


def per_request_samples(traces: Sequence[GenerationTrace]) -> list[RequestSamples]:
    """TTFT / TPOT / E2E of each request position (row) across ``traces``, for a per-request table.

    Meaningful when rows differ (varying prompt lengths, continuous batching); rows of a lockstep call
    all show the call's figures.
    """
    if not traces:
        return []
    rows = range(traces[0].batch_size)
    return [
        RequestSamples(
            row=row,
            prompt_tokens=traces[0].prompt_tokens[row],
            ttft_ms=tuple(request_ttft_ns(trace, row) / NS_PER_MS for trace in traces),
            tpot_ms=tuple(time_per_output_token_ns(trace.token_timestamps_ns[row]) / NS_PER_MS for trace in traces),
            e2e_latency_ms=tuple(request_e2e_ns(trace, row) / NS_PER_MS for trace in traces),
        )
        for row in rows
    ]

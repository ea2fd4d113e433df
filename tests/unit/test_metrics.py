"""Metric definitions against hand-computed traces."""

from __future__ import annotations

import pytest

from tokbench.analysis.metrics import (
    decode_throughput,
    end_to_end_latency_ns,
    inter_token_latencies_ns,
    overall_throughput,
    prefill_throughput,
    time_per_output_token_ns,
    time_to_first_token_ns,
)
from tokbench.analysis.samples import metric_samples, sample_values
from tokbench.schema.records import GenerationTrace

# ~12 days of uptime in ns: float32 seconds would have a 62 ms step here (peers.md defect 1).
UPTIME_NS = 12 * 24 * 3600 * 1_000_000_000


def make_trace(t0: int, stamps: list[int], end: int, batch: int = 1, prompt: int = 10) -> GenerationTrace:
    return GenerationTrace(
        t0_ns=t0,
        end_ns=end,
        token_timestamps_ns=tuple(tuple(stamps) for _ in range(batch)),
        prompt_tokens=(prompt,) * batch,
        generated_tokens=(len(stamps),) * batch,
        output_shape=(batch, prompt + len(stamps)),
    )


def test_single_request_metrics_by_hand() -> None:
    t0 = UPTIME_NS
    stamps = [t0 + 50_000_000, t0 + 60_000_000, t0 + 75_000_000, t0 + 80_000_001]
    assert time_to_first_token_ns(t0, stamps) == 50_000_000
    assert inter_token_latencies_ns(stamps) == [10_000_000, 15_000_000, 5_000_001]
    assert time_per_output_token_ns(stamps) == pytest.approx(30_000_001 / 3)
    assert end_to_end_latency_ns(t0, t0 + 90_000_000) == 90_000_000


def test_integer_ns_keeps_one_ns_resolution_after_days_of_uptime() -> None:
    t0 = UPTIME_NS
    stamps = [t0 + 1, t0 + 2, t0 + 4]
    assert time_to_first_token_ns(t0, stamps) == 1
    assert inter_token_latencies_ns(stamps) == [1, 2]


def test_itl_has_n_minus_one_gaps_and_excludes_the_end_of_generate() -> None:
    stamps = [100, 200, 300]
    trace = make_trace(0, stamps, end=10_000)
    samples = sample_values([trace])
    assert len(samples["itl_ms"]) == 2
    assert samples["itl_ms"] == [100 / 1e6, 100 / 1e6]


def test_throughputs_by_hand() -> None:
    # batch 2, 10 prompt tokens each, 5 tokens each: first token at 20 ms, last at 60 ms, end at 70 ms
    ms = 1_000_000
    trace = make_trace(0, [20 * ms, 30 * ms, 40 * ms, 50 * ms, 60 * ms], end=70 * ms, batch=2)
    assert prefill_throughput(trace) == pytest.approx(20 / 0.020)  # 1000 tok/s
    assert decode_throughput(trace) == pytest.approx(2 * 4 / 0.040)  # 200 tok/s
    assert overall_throughput(trace) == pytest.approx(10 / 0.070)


def test_metric_samples_pool_requests_and_iterations() -> None:
    ms = 1_000_000
    lockstep_batch = make_trace(0, [2 * ms, 3 * ms, 5 * ms], 6 * ms, batch=2)
    traces = [lockstep_batch, make_trace(0, [4 * ms, 5 * ms, 6 * ms], 7 * ms)]
    samples = sample_values(traces)
    # the lockstep batch's two identical rows are one timing sample
    assert samples["ttft_ms"] == [2.0, 4.0]
    assert samples["tpot_ms"] == [1.5, 1.0]
    assert samples["itl_ms"] == [1.0, 2.0, 1.0, 1.0]
    assert samples["e2e_latency_ms"] == [6.0, 7.0]
    assert len(samples["decode_throughput_tok_s"]) == 2
    # every value knows the call it came from: the bootstrap resamples whole calls
    clustered = metric_samples(traces)
    assert clustered["itl_ms"].calls.tolist() == [0, 0, 1, 1]
    assert clustered["ttft_ms"].calls.tolist() == [0, 1]
    assert clustered["itl_ms"].per_call_medians() == [1.5, 1.0]
    assert clustered["itl_ms"].trend_series() == [1.5, 1.0]  # pooled gaps: trend over per-call medians


def test_rows_with_their_own_stamps_each_count() -> None:
    ms = 1_000_000
    trace = GenerationTrace(
        t0_ns=0,
        end_ns=10 * ms,
        token_timestamps_ns=((1 * ms, 2 * ms, 4 * ms), (3 * ms, 5 * ms, 9 * ms)),
        prompt_tokens=(8, 4),
        generated_tokens=(3, 3),
        output_shape=(2, 11),
    )
    samples = sample_values([trace])
    assert samples["ttft_ms"] == [1.0, 3.0]
    assert samples["tpot_ms"] == [1.5, 3.0]
    assert samples["itl_ms"] == [1.0, 2.0, 2.0, 4.0]
    assert prefill_throughput(trace) == pytest.approx(12 / 0.003)  # until the last first token
    assert decode_throughput(trace) == pytest.approx(4 / 0.008)  # first t_1 (1 ms) to last t_N (9 ms)


def test_throughput_needs_positive_duration() -> None:
    with pytest.raises(ValueError, match="positive duration"):
        overall_throughput(make_trace(5, [5, 5], end=5))
    with pytest.raises(ValueError, match="2 generated tokens"):
        time_per_output_token_ns([1])


def test_metric_samples_of_some_metrics_compute_only_those() -> None:
    broken = make_trace(5, [5, 5], end=5)  # zero durations: every throughput raises
    only_e2e = metric_samples([broken], ("e2e_latency_ms",))
    assert list(only_e2e) == ["e2e_latency_ms"] and only_e2e["e2e_latency_ms"].values.tolist() == [0.0]
    with pytest.raises(ValueError, match="positive duration"):
        metric_samples([broken])
    with pytest.raises(ValueError, match="unknown metrics"):
        metric_samples([broken], ("latency",))

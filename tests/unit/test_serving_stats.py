"""Serving statistics (torch-free): SLO percentile bounds by seeded simulation, goodput intervals, traces from
requests, run figures by hand, saturation, the client's SSE and chunked decoding, and the serving record's
round trip through the one serializer."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tokbench.analysis.serving import (
    SaturationPoint,
    block_size_for,
    invalid_reason,
    percentile_bounds,
    proportion_interval,
    request_traces,
    saturation_verdict,
    serving_summary,
    slo_verdict,
)
from tokbench.analysis.summarize import summarize_traces
from tokbench.config import BenchmarkConfig
from tokbench.schema.results import BenchmarkResult
from tokbench.schema.serving import LengthSpec, RequestRecord, ServingRecord, ServingSettings, SloSpec
from tokbench.serving.client import EventParser, RequestSpec, StreamOutcome, build_payload, count_event_tokens
from tokbench.serving.http import BodyDecoder, Endpoint, EndpointError, EventSplitter, RequestFailed

MS = 1_000_000


def _request(index: int, intended: int, lag: int, ttft: int, gaps: list[int], tokens: list[int] | None = None,
             status: str = "ok") -> RequestRecord:  # fmt: skip
    events = [intended + lag + ttft]
    for gap in gaps:
        events.append(events[-1] + gap)
    return RequestRecord(index=index, intended_ns=intended, sent_ns=intended + lag, end_ns=events[-1] + MS,
                         status=status, prompt_tokens=10, event_ns=tuple(events) if status == "ok" else (),
                         event_tokens=tuple(tokens or [1] * len(events)) if status == "ok" else ())  # fmt: skip


def _settings(**changes: object) -> ServingSettings:
    base = {"api": "completions", "model": "m", "load": "rate", "rate": 10.0, "requests": 4}
    return ServingSettings(**{**base, **changes})  # type: ignore[arg-type]


def test_percentile_bounds_cover_the_true_quantile_at_least_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(1)
    truth = -math.log(1 - 0.9)  # p90 of Exp(1)
    covered = 0
    for _ in range(400):
        bound = percentile_bounds(rng.exponential(size=150), 90)
        covered += bound.low <= truth <= bound.high
    assert covered / 400 >= 0.93  # nominal 95% (conservative: discrete ranks); 0.93 allows the simulation's noise
    assert percentile_bounds([1.0, 2.0, 3.0], 50).estimate == 2.0


def test_a_p99_bound_of_few_requests_is_unbounded_so_the_slo_is_inconclusive_not_met() -> None:
    requests = [_request(i, i * 100 * MS, 0, 5 * MS, [MS] * 3) for i in range(40)]
    met, detail = slo_verdict(requests, SloSpec(ttft_ms=50, percentile=99))
    assert met is None and detail["ttft_ms"]["high"] is None  # 40 requests cannot bound a p99 from above
    met, _ = slo_verdict(requests, SloSpec(ttft_ms=50, percentile=50))
    assert met is True
    met, _ = slo_verdict(requests, SloSpec(ttft_ms=1, percentile=50))
    assert met is False


def test_errors_count_against_goodput_and_the_slo() -> None:
    ok = [_request(i, i * 100 * MS, 0, 5 * MS, [MS] * 3) for i in range(8)]
    failed = [_request(8 + i, (8 + i) * 100 * MS, 0, 0, [], status="http_5xx") for i in range(2)]
    summary = serving_summary(ok + failed, _settings(), SloSpec(ttft_ms=50, percentile=50))
    assert summary.completed == 8 and summary.failed == 2 and summary.errors == {"http_5xx": 2}
    assert summary.good_fraction == pytest.approx(0.8)
    low, high = summary.good_fraction_ci or (0, 0)
    assert low < 0.8 < high
    assert proportion_interval(0, 10)[0] == 0.0 and proportion_interval(10, 10)[1] == pytest.approx(1.0)


def test_run_figures_by_hand() -> None:
    # two requests 100 ms apart, each: 2 ms lag, first event 5 ms after the send, 3 events 1 ms apart with 2 tokens,
    # the last byte 1 ms after the last event
    requests = [_request(i, i * 100 * MS, 2 * MS, 5 * MS, [MS, MS], tokens=[2, 2, 2]) for i in range(2)]
    summary = serving_summary(requests, _settings())
    window_s = (100 + 2 + 5 + 2 + 1) * MS / 1e9  # first intended send to the last byte
    assert summary.duration_s == pytest.approx(window_s)
    assert summary.output_throughput_tok_s == pytest.approx(12 / window_s)
    assert summary.send_lag_p99_ms == pytest.approx(2.0)
    assert summary.events == 6 and summary.multi_token_events == 6 and summary.max_tokens_per_event == 2
    assert invalid_reason(summary, _settings(lag_budget_ms=1.0)).startswith("the client fell behind")
    assert invalid_reason(summary, _settings(lag_budget_ms=5.0)) == ""
    assert invalid_reason(summary, _settings(load="concurrency", concurrency=1, rate=None, lag_budget_ms=1.0)) == ""


def test_requests_become_traces_with_the_in_process_metric_definitions() -> None:
    requests = [_request(i, i * 10 * MS, MS, 4 * MS, [MS, 2 * MS], tokens=[1, 3, 1]) for i in range(5)]
    traces, placement = request_traces(requests, block_size=2)
    assert [t.batch_size for t in traces] == [2, 2, 1] and placement[4] == (2, 0)
    summary = summarize_traces(traces)
    assert summary["ttft_ms"].median == pytest.approx(5.0)  # from the intended send: lag 1 ms + 4 ms
    assert summary["tpot_ms"].median == pytest.approx(3.0 / 4)  # (t_N - t_1) / (N - 1) = 3 ms / 4
    assert summary["itl_ms"].count == 5 * 4 and summary["itl_ms"].min == 0.0  # tokens of one event share a stamp
    assert block_size_for(1000, 4) == 10 and block_size_for(8, 16) == 16


def test_saturation_verdicts() -> None:
    rising = [SaturationPoint(r, r * 0.99, False) for r in (1.0, 2.0, 4.0)]
    assert not saturation_verdict(rising, open_loop=True).saturated
    short = [*rising, SaturationPoint(8.0, 5.0, False)]
    verdict = saturation_verdict(short, open_loop=True)
    assert verdict.saturated and verdict.first_saturated == 8.0
    plateau = [SaturationPoint(1, 10.0, False), SaturationPoint(2, 19.0, False), SaturationPoint(4, 19.5, False)]
    assert saturation_verdict(plateau, open_loop=False).first_saturated == 4
    assert saturation_verdict([SaturationPoint(1.0, 1.0, True)], open_loop=True).saturated


def test_a_serving_result_round_trips_and_its_key_ignores_the_server_label() -> None:
    requests = [_request(i, i * 10 * MS, MS, 4 * MS, [MS, MS]) for i in range(4)]
    traces, _ = request_traces(requests, 2)

    def result(label: str) -> BenchmarkResult:
        settings = _settings(label=label, input_tokens=LengthSpec("fixed", value=10),
                             output_tokens=LengthSpec("fixed", value=3))  # fmt: skip
        record = ServingRecord(settings=settings, endpoint="http://127.0.0.1:1", requests=tuple(requests),
                               summary=serving_summary(requests, settings))  # fmt: skip
        return BenchmarkResult(config=BenchmarkConfig(model="m", sequence_length=10, new_tokens=3), status="ok",
                               iterations=traces, summary=summarize_traces(traces), serving=record)  # fmt: skip

    first, second = result("server-a"), result("server-b")
    assert first.workload_key == second.workload_key and first.config_hash == second.config_hash
    assert first.workload_key != BenchmarkResult(config=first.config, status="ok").workload_key
    again = BenchmarkResult.from_dict(json.loads(json.dumps(first.to_dict())))
    assert again == first
    other_rate = BenchmarkResult(config=first.config, status="ok",
                                 serving=ServingRecord(settings=_settings(rate=20.0), endpoint="x"))  # fmt: skip
    assert other_rate.workload_key != first.workload_key


def test_chunked_body_and_sse_events_split_anywhere() -> None:
    body = b"data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: [DONE]\n\n"
    wire = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    for cut in range(1, len(wire)):
        decoder, splitter, events = BodyDecoder({"transfer-encoding": "chunked"}), EventSplitter(1024), []
        for part in (wire[:cut], wire[cut:]):
            events += splitter.feed(decoder.feed(part))
        assert events == [b"data: {\"choices\":[{\"text\":\"a\"}]}", b"data: [DONE]"] and decoder.done
    with pytest.raises(RequestFailed, match="longer than"):
        EventSplitter(16).feed(b"data: " + b"x" * 100)


def test_the_parser_skips_role_only_chunks_and_counts_usage_deltas() -> None:
    outcome = StreamOutcome(intended_ns=0)
    parser = EventParser("chat", outcome)
    chunk = {"choices": [{"delta": {"role": "assistant", "content": ""}}]}
    parser.handle(b"data: " + json.dumps(chunk).encode(), 1)
    for stamp, (text, total) in enumerate((("a b", 2), ("c", 3)), start=2):
        chunk = {"choices": [{"delta": {"content": text}}], "usage": {"prompt_tokens": 4, "completion_tokens": total}}
        parser.handle(b"data: " + json.dumps(chunk).encode(), stamp)
    parser.handle(b"data: [DONE]", 9)
    assert outcome.role_only_first_chunk is True and outcome.saw_done and outcome.event_ns == [2, 3]
    assert count_event_tokens(outcome, None) == ([2, 1], "usage_deltas")
    with pytest.raises(RequestFailed) as failure:
        parser.handle(b"data: {not json", 10)
    assert failure.value.kind == "malformed_stream"


def test_urls_with_credentials_or_queries_are_refused_and_payloads_fix_the_length() -> None:
    for url in ("ftp://host", "http://user:secret@host:1", "http://host:1/v1?key=x", "http://"):
        with pytest.raises(EndpointError):
            Endpoint.parse(url)
    assert Endpoint.parse("http://127.0.0.1:8000/v1").url("/v1/completions") == "http://127.0.0.1:8000/v1/completions"
    spec = RequestSpec(0, "hi", 2, 7)
    assert build_payload("completions", "m", spec, "ignore_eos", None)["ignore_eos"] is True
    config = json.loads(build_payload("chat", "m", spec, "generation_config", None)["generation_config"])
    assert config["max_new_tokens"] == config["min_new_tokens"] == 7


def test_a_served_block_whose_tokens_came_in_one_read_has_no_decode_throughput() -> None:
    from tokbench.analysis.samples import metric_samples

    together = [_request(i, 0, 0, 5 * MS, [0, 0], tokens=[1, 1, 1]) for i in range(2)]  # every event in one read
    traces, _ = request_traces(together, 2)
    samples = metric_samples(traces)
    assert len(samples["decode_throughput_tok_s"]) == 0 and len(samples["ttft_ms"]) == 2
    assert "decode_throughput_tok_s" not in summarize_traces(traces) and "ttft_ms" in summarize_traces(traces)


def test_change_points_find_a_serving_slowdown_in_the_stored_history() -> None:
    from tokbench.results.history import find_history_changes
    from tokbench.results.selectors import SelectedRun

    runs = []
    for index in range(12):
        gap = MS if index < 6 else 2 * MS  # the server got twice as slow per token at run 6
        requests = [_request(i, i * 20 * MS, 0, 4 * MS, [gap] * 5) for i in range(8)]
        traces, _ = request_traces(requests, 2)
        settings = _settings(label=f"build-{index}")
        record = ServingRecord(settings=settings, endpoint="http://127.0.0.1:1", requests=tuple(requests))
        result = BenchmarkResult(config=BenchmarkConfig(model="m", sequence_length=10, new_tokens=6), status="ok",
                                 iterations=traces, summary=summarize_traces(traces), serving=record,
                                 started_at=f"2026-12-{index + 1:02d}T00:00:00+00:00")  # fmt: skip
        runs.append(SelectedRun(result, f"run {index}", run_id=index + 1, started_at=result.started_at))
    report = find_history_changes(runs, metric="tpot_ms")
    (workload,) = report.workloads
    assert [(change.index, change.direction) for change in workload.changes] == [(6, "slower")]

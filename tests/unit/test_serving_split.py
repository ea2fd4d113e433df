"""How one run's schedule is dealt out over client processes (``serving.clients.split_load``), and each client's
send lag in the summary: pure, no process started."""

from __future__ import annotations

from tokbench.analysis.serving import client_lags
from tokbench.schema.serving import RequestRecord
from tokbench.serving.client import RequestSpec
from tokbench.serving.clients import split_load, usable_clients
from tokbench.serving.http import Endpoint
from tokbench.serving.load import LoadPlan, arrival_offsets_ns

ENDPOINT = Endpoint.parse("http://127.0.0.1:9")


def _specs(measured: int, warmup: int = 0) -> list[RequestSpec]:
    return [RequestSpec(i, "tok", 1, 2, warmup=i < warmup) for i in range(warmup + measured)]


def test_an_open_loop_schedule_is_dealt_round_robin_and_loses_or_moves_no_arrival() -> None:
    plan = LoadPlan(ENDPOINT, "completions", "m", "rate", rate=250.0, arrival="gamma", burstiness=0.5, seed=7)
    shares = split_load(plan, _specs(100, warmup=5), 3)
    assert [share.client for share in shares] == [0, 1, 2]
    merged = sorted(
        (offset, spec.index) for share in shares for spec, offset in zip(share.measured, share.offsets_ns, strict=True)
    )
    assert [offset for offset, _ in merged] == arrival_offsets_ns(100, 250.0, "gamma", 0.5, 7)  # the one schedule
    assert [index for _, index in merged] == list(range(5, 105))  # in send order
    for share in shares:
        assert [spec.index for spec in share.measured] == list(range(5 + share.client, 105, 3))
    assert [[s.index for s in share.specs if s.warmup] for share in shares] == [[0, 3], [1, 4], [2]]


def test_a_closed_loop_deals_slots_and_each_slots_requests_to_one_client() -> None:
    plan = LoadPlan(ENDPOINT, "completions", "m", "concurrency", concurrency=5)
    shares = split_load(plan, _specs(20), 2)
    assert [share.workers for share in shares] == [3, 2]  # slots 0, 2, 4 and 1, 3
    assert [spec.index for spec in shares[1].specs] == [i for i in range(20) if (i % 5) % 2 == 1]
    assert all(share.offsets_ns == () for share in shares)


def test_no_client_is_started_without_work() -> None:
    rate = LoadPlan(ENDPOINT, "completions", "m", "rate", rate=10.0)
    closed = LoadPlan(ENDPOINT, "completions", "m", "concurrency", concurrency=3)
    assert usable_clients(rate, 4, 8) == 4 and usable_clients(closed, 100, 8) == 3 and usable_clients(rate, 0, 2) == 1
    assert len(split_load(closed, _specs(100), 8)) == 3


def test_each_clients_send_lag_is_summarized_on_its_own() -> None:
    def sent(index: int, lag_ms: float, client: int | None) -> RequestRecord:
        return RequestRecord(index, 1_000_000_000, 1_000_000_000 + int(lag_ms * 1e6), 2_000_000_000, client=client)

    requests = [sent(i, 0.1, 0) for i in range(50)] + [sent(50 + i, 5.0 if i == 0 else 0.2, 1) for i in range(50)]
    lags = client_lags(requests)
    assert lags is not None and [(lag.client, lag.requests) for lag in lags] == [(0, 50), (1, 50)]
    assert abs(lags[0].send_lag_max_ms - 0.1) < 1e-9 and abs(lags[1].send_lag_max_ms - 5.0) < 1e-9
    assert abs(lags[1].send_lag_p50_ms - 0.2) < 1e-9
    assert client_lags([sent(0, 1.0, None)]) is None  # one process, in tokbench itself: no per-client figures

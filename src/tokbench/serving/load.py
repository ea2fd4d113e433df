"""Offering load: a closed loop (N clients, each sending when its last answer ended) or an open loop (sends at
scheduled instants: constant, Poisson or gamma inter-arrivals), every request's outcome kept.

Open-loop latencies count from the *intended* send (coordinated omission: a client that falls behind must not
hide the server's queue), and each request records its send lag. Warmup requests run first, closed loop, and
never overlap the measured ones. asyncio's timers wake up to a millisecond late (epoll's resolution), so the
open loop sleeps until ``SPIN_WINDOW_NS`` before each send and then yields to the loop until the instant
(``benchmarks/serving_client.py`` measures the lag this leaves).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tokbench.clock import Clock, perf_counter_ns
from tokbench.schema.serving import RequestRecord
from tokbench.serving.client import (
    DEFAULT_MAX_EVENT_BYTES,
    EventTokenCounter,
    RequestSpec,
    StreamOutcome,
    build_payload,
    count_event_tokens,
    request_headers,
    short_error,
    stream_request,
)
from tokbench.serving.http import Connection, Endpoint, RequestFailed

SPIN_WINDOW_NS = 1_500_000
START_LEAD_NS = 20_000_000  # the first scheduled send, after the schedule is built


@dataclass(frozen=True)
class LoadPlan:
    endpoint: Endpoint
    api: str
    model: str
    load: str  # "concurrency" | "rate"
    concurrency: int = 1
    rate: float = 1.0
    arrival: str = "constant"
    burstiness: float = 1.0
    seed: int = 0
    timeout_s: float = 60.0
    stall_s: float = 30.0
    fixed_field: str | None = None
    stream_options: tuple[tuple[str, bool], ...] = ()
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES


def arrival_offsets_ns(count: int, rate: float, arrival: str, burstiness: float, seed: int) -> list[int]:
    """Intended send instants (ns after the start) of ``count`` requests at ``rate`` per second."""
    rng = np.random.default_rng(seed)
    mean_gap = 1e9 / rate
    if arrival == "constant":
        gaps = np.full(count, mean_gap)
    elif arrival == "poisson":
        gaps = rng.exponential(mean_gap, size=count)
    elif arrival == "gamma":  # shape = burstiness, mean kept at 1/rate
        gaps = rng.gamma(burstiness, mean_gap / burstiness, size=count)
    else:
        raise ValueError(f"unknown arrival process {arrival!r}")
    gaps[0] = 0.0
    return [int(v) for v in np.cumsum(gaps)]


class ConnectionPool:
    """Idle keep-alive connections to the one endpoint; a request takes one or opens one."""

    def __init__(self, endpoint: Endpoint, timeout_s: float) -> None:
        self.endpoint, self.timeout_s = endpoint, timeout_s
        self.idle: list[Connection] = []

    async def take(self) -> Connection:
        while self.idle:
            connection = self.idle.pop()
            if connection.reusable and not connection.reader.at_eof():
                return connection
            connection.close()
        return await Connection.open(self.endpoint, self.timeout_s)

    def give(self, connection: Connection) -> None:
        if connection.reusable:
            self.idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()


class LoadRunner:
    """Runs one plan's requests and returns each one's ``StreamOutcome`` (by request index)."""

    def __init__(self, plan: LoadPlan, api_key: str | None = None, clock: Clock = perf_counter_ns) -> None:
        self.plan, self.api_key, self.clock = plan, api_key, clock
        self.pool = ConnectionPool(plan.endpoint, plan.timeout_s)
        self.outcomes: dict[int, StreamOutcome] = {}

    def _payload(self, spec: RequestSpec) -> bytes:
        plan = self.plan
        options = dict(plan.stream_options) or None
        body = build_payload(plan.api, plan.model, spec, plan.fixed_field, options)
        return json.dumps(body, separators=(",", ":")).encode()

    async def one(self, spec: RequestSpec, payload: bytes, intended_ns: int) -> StreamOutcome:
        outcome = StreamOutcome(intended_ns=intended_ns)
        self.outcomes[spec.index] = outcome
        held: list[Connection] = []

        async def exchange() -> None:
            connection = await self.pool.take()
            held.append(connection)
            await stream_request(
                connection, self.plan.endpoint, self.plan.api, payload, request_headers(self.api_key, spec.index),
                outcome, stall_s=self.plan.stall_s, max_event_bytes=self.plan.max_event_bytes, clock=self.clock,
            )  # fmt: skip

        try:
            await asyncio.wait_for(exchange(), self.plan.timeout_s)
        except RequestFailed as error:
            _fail(outcome, error.kind, short_error(error), error.http_status, self.clock)
        except asyncio.TimeoutError:
            _fail(outcome, "timeout", f"no complete answer within {self.plan.timeout_s:g} s", None, self.clock)
        except (ConnectionError, OSError) as error:
            _fail(outcome, "connection_error", short_error(error), None, self.clock)
        for connection in held:
            if outcome.status != "ok":
                connection.close()
            self.pool.give(connection)
        if not outcome.sent_ns:
            outcome.sent_ns = outcome.end_ns
        return outcome

    async def closed_loop(self, specs: Sequence[RequestSpec], concurrency: int) -> None:
        queue = list(reversed(specs))
        payloads = {spec.index: self._payload(spec) for spec in specs}

        async def worker() -> None:
            while queue:
                spec = queue.pop()
                await self.one(spec, payloads[spec.index], self.clock())

        await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(specs))))))

    async def open_loop(self, specs: Sequence[RequestSpec]) -> None:
        plan = self.plan
        offsets = arrival_offsets_ns(len(specs), plan.rate, plan.arrival, plan.burstiness, plan.seed)
        start = self.clock() + START_LEAD_NS
        await self.send_at(specs, [start + offset for offset in offsets])

    async def send_at(self, specs: Sequence[RequestSpec], instants_ns: Sequence[int]) -> None:
        """Send each request at its absolute instant (the open loop's schedule, or a client process's share)."""
        payloads = [self._payload(spec) for spec in specs]
        tasks = []
        for spec, intended, payload in zip(specs, instants_ns, payloads, strict=True):
            await self.wait_until(intended)
            tasks.append(asyncio.ensure_future(self.one(spec, payload, intended)))
        await asyncio.gather(*tasks)

    async def preconnect(self) -> None:
        """Hold one open connection (a client process whose share had no warmup request must not pay the
        connect inside its first measured request; a refused connection is that request's error, not this)."""
        if self.pool.idle:
            return
        with contextlib.suppress(RequestFailed, OSError):
            self.pool.give(await Connection.open(self.plan.endpoint, self.plan.timeout_s))

    async def wait_until(self, instant_ns: int) -> None:
        remaining = instant_ns - self.clock()
        if remaining > SPIN_WINDOW_NS:
            await asyncio.sleep((remaining - SPIN_WINDOW_NS) / 1e9)
        while self.clock() < instant_ns:
            await asyncio.sleep(0)

    async def run(self, specs: Sequence[RequestSpec]) -> dict[int, StreamOutcome]:
        warmup = [s for s in specs if s.warmup]
        measured = [s for s in specs if not s.warmup]
        try:
            if warmup:
                await self.closed_loop(warmup, self.plan.concurrency if self.plan.load == "concurrency" else 1)
            if self.plan.load == "concurrency":
                await self.closed_loop(measured, self.plan.concurrency)
            else:
                await self.open_loop(measured)
        finally:
            self.pool.close()
        return self.outcomes


def _fail(outcome: StreamOutcome, kind: str, message: str, http_status: int | None, clock: Clock) -> None:
    outcome.status, outcome.error = kind, message
    outcome.http_status = http_status if http_status is not None else outcome.http_status
    outcome.end_ns = clock()


def run_requests(
    plan: LoadPlan, specs: Sequence[RequestSpec], api_key: str | None = None, clock: Clock = perf_counter_ns
) -> dict[int, StreamOutcome]:
    """Run ``specs`` under ``plan`` in a fresh event loop; every request's outcome, none lost."""
    return asyncio.run(LoadRunner(plan, api_key, clock).run(specs))


def to_records(
    specs: Sequence[RequestSpec], outcomes: dict[int, StreamOutcome], counter: EventTokenCounter | None,
    client_of: Mapping[int, int] | None = None,
) -> tuple[list[RequestRecord], str]:
    """Every request as a ``RequestRecord`` (tokens per event counted now, off the timed path), and the token
    source used (``mixed`` when requests differ); ``client_of`` names the client process of each request when
    several offered the load."""
    records, sources = [], set()
    for spec in specs:
        outcome = outcomes.get(spec.index)
        if outcome is None:  # never started (the run was stopped): recorded, not dropped
            records.append(RequestRecord(spec.index, 0, 0, 0, status="connection_error", error="never sent",
                                         warmup=spec.warmup, prompt_tokens=spec.prompt_tokens,
                                         client=client_of.get(spec.index) if client_of else None))  # fmt: skip
            continue
        counts, source = count_event_tokens(outcome, counter) if outcome.texts else ([], "")
        if source:
            sources.add(source)
        status, error = outcome.status, outcome.error
        if status == "ok" and sum(counts) == 0:
            status, error = "no_tokens", "the stream ended without generated text"
        records.append(
            RequestRecord(
                index=spec.index, intended_ns=outcome.intended_ns, sent_ns=outcome.sent_ns,
                end_ns=outcome.end_ns or outcome.sent_ns, status=status, error=error,
                http_status=outcome.http_status, warmup=spec.warmup, prompt_tokens=spec.prompt_tokens,
                usage_prompt_tokens=outcome.usage_prompt_tokens,
                usage_completion_tokens=outcome.usage_completion_tokens,
                event_ns=tuple(outcome.event_ns), event_tokens=tuple(counts),
                first_byte_ns=outcome.first_byte_ns, role_only_first_chunk=outcome.role_only_first_chunk,
                saw_done=outcome.saw_done, finish_reason=outcome.finish_reason, reads=outcome.reads or None,
                client=client_of.get(spec.index) if client_of else None,
            )
        )  # fmt: skip
    source = sources.pop() if len(sources) == 1 else ("mixed" if sources else "none")
    return records, source

"""The serving client's own cost on this machine, against the mock server in other processes.

Prints, for tokbench's raw-asyncio client and (when installed) aiohttp and httpx streaming the same requests:
client CPU per request and per SSE event (a linear fit of client CPU time over answers of 1 and 64 events), and
then the highest open-loop rate one tokbench client process sustains with p99 send lag under 1 ms, and the same
with ``--clients N`` processes splitting the schedule (``serving.clients``; each one's p99 lag is printed): rates
doubled from 250 req/s until the lag passes the budget or errors appear (halved when 250 already does), then
bisected. The mock runs in ``--mock-workers`` processes sharing a port.

    .venv/bin/python benchmarks/serving_client.py [--requests 2000] [--mock-workers 2] [--clients 2] [--max-rate 16000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokbench.serving.client import RequestSpec
from tokbench.serving.clients import run_in_clients
from tokbench.serving.http import Endpoint
from tokbench.serving.launch import free_loopback_port
from tokbench.serving.load import LoadPlan, LoadRunner
from tokbench.serving.mock import MockScript

Client = Callable[[str, bytes, int], Awaitable[int]]
MIN_RATE = 15.0  # the rate search's floor (req/s)


def start_mock(workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_loopback_port()
    script = MockScript(usage="none", default_output_tokens=64).to_json()
    command = [sys.executable, "-m", "tokbench.serving.mock", "--port", str(port), "--script", script, "--workers",
               str(workers)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    for _ in range(workers):
        process.stdout.readline()
    return process, f"http://127.0.0.1:{port}"


def payload(tokens: int) -> bytes:
    return json.dumps({"model": "mock-model", "prompt": "tok tok", "max_tokens": tokens, "stream": True}).encode()


async def tokbench_closed(url: str, tokens: int, requests: int, concurrency: int) -> float:
    plan = LoadPlan(Endpoint.parse(url), "completions", "mock-model", "concurrency", concurrency=concurrency)
    runner = LoadRunner(plan)
    specs = [RequestSpec(i, "tok tok", 2, tokens) for i in range(requests)]
    start = time.process_time()
    await runner.closed_loop(specs, concurrency)
    elapsed = time.process_time() - start
    bad = [o for o in runner.outcomes.values() if o.status != "ok" or len(o.event_ns) != tokens]
    assert not bad, bad[0]
    runner.pool.close()
    return elapsed


async def count_events(chunks: AsyncIterator[bytes]) -> int:
    """What every client must do per read: stamp it, split SSE events, parse each event's JSON."""
    events, buffer = 0, b""
    async for data in chunks:
        _ = time.perf_counter_ns()
        buffer += data
        *complete, buffer = buffer.split(b"\n\n")
        for event in complete:
            if event.startswith(b"data: {"):
                events += bool(json.loads(event[6:])["choices"][0].get("text"))
    return events


async def closed_loop(stream: Callable[[], Any], tokens: int, requests: int, concurrency: int) -> float:
    """Client CPU seconds for ``requests`` streamed answers, ``concurrency`` at a time; ``stream()`` opens one
    response (an async context manager) and ``chunks(response)`` its raw reads."""
    queue = list(range(requests))

    async def worker() -> None:
        while queue:
            queue.pop()
            opened, chunks = stream()
            async with opened as response:
                assert await count_events(chunks(response)) == tokens

    start = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - start


async def aiohttp_closed(url: str, tokens: int, requests: int, concurrency: int) -> float:
    import aiohttp

    body, headers = payload(tokens), {"content-type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        return await closed_loop(
            lambda: (session.post(url + "/v1/completions", data=body, headers=headers),
                     lambda response: response.content.iter_any()),
            tokens, requests, concurrency,
        )  # fmt: skip


async def httpx_closed(url: str, tokens: int, requests: int, concurrency: int) -> float:
    import httpx

    body, headers = payload(tokens), {"content-type": "application/json"}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency), timeout=60) as client:
        return await closed_loop(
            lambda: (client.stream("POST", url + "/v1/completions", content=body, headers=headers),
                     lambda response: response.aiter_raw()),
            tokens, requests, concurrency,
        )  # fmt: skip


def cost(name: str, client: Callable[..., Awaitable[float]], url: str, requests: int) -> None:
    """Client CPU seconds for answers of 1 and 64 events: per-event = slope, per-request = intercept."""
    try:
        asyncio.run(client(url, 4, 50, 4))  # warm connections and imports
        short = min(asyncio.run(client(url, 1, requests, 4)) for _ in range(3))
        long = min(asyncio.run(client(url, 64, requests // 4, 4)) for _ in range(3))
    except ImportError:
        print(f"{name:9s} not installed")
        return
    per_event = (long / (requests // 4) - short / requests) / 63
    per_request = short / requests - per_event
    print(f"{name:9s} client CPU per request {per_request * 1e6:7.1f} µs, per event {per_event * 1e6:6.2f} µs "
          f"({requests} 1-event and {requests // 4} 64-event answers, best of 3)")  # fmt: skip


@dataclass(frozen=True)
class LagFigures:
    p50_ms: float
    p99_ms: float
    failed: int
    per_client_p99_ms: tuple[float, ...] = ()


def lag_at(url: str, rate: float, requests: int, clients: int) -> LagFigures:
    """Send lag of ``requests`` Poisson arrivals at ``rate`` (after 50 warmup requests), from this process
    (``clients`` 0) or from ``clients`` fresh client processes."""
    plan = LoadPlan(Endpoint.parse(url), "completions", "mock-model", "rate", rate=rate, arrival="poisson")
    specs = [RequestSpec(i, "tok tok", 2, 4, warmup=i < 50) for i in range(requests + 50)]
    client_of: dict[int, int] = {}
    if clients:
        driven = run_in_clients(plan, specs, clients)
        outcomes, client_of = driven.outcomes, driven.client_of
    else:
        outcomes = asyncio.run(LoadRunner(plan).run(specs))
    measured = [s.index for s in specs if not s.warmup]
    lags = np.array([outcomes[i].sent_ns - outcomes[i].intended_ns for i in measured]) / 1e6
    failed = sum(outcomes[i].status != "ok" for i in measured)
    per_client = tuple(
        float(np.percentile([lag for i, lag in zip(measured, lags, strict=True) if client_of[i] == c], 99))
        for c in sorted(set(client_of.values()))
    )
    return LagFigures(float(np.percentile(lags, 50)), float(np.percentile(lags, 99)), failed, per_client)


def highest_rate(url: str, clients: int, max_rate: float, bisections: int = 3) -> float | None:
    """The highest rate whose p99 send lag stays under 1 ms without errors: doubled from 250 req/s, then bisected."""
    who = f"{clients} client processes" if clients else "one client process (this one)"

    def keeps_up(rate: float) -> bool:
        figures = lag_at(url, rate, max(500, int(rate * 2)), clients)
        each = f" (per client p99 {', '.join(f'{v:.3f}' for v in figures.per_client_p99_ms)})" if clients else ""
        print(f"  {who}, open loop {rate:8.0f} req/s: send lag p50 {figures.p50_ms:.3f} ms, p99 "
              f"{figures.p99_ms:.3f} ms{each}, failed {figures.failed}")  # fmt: skip
        return figures.p99_ms < 1.0 and not figures.failed

    rate, best, worst = 250.0, None, None
    while rate <= max_rate:
        if not keeps_up(rate):
            worst = rate
            break
        best, rate = rate, rate * 2
    while best is None and worst is not None and worst > MIN_RATE:  # not even 250 req/s: halve down to one that is
        if keeps_up(worst / 2):
            best = worst / 2
        else:
            worst /= 2
    for _ in range(bisections if best is not None and worst is not None else 0):
        middle = (best + worst) / 2  # type: ignore[operator]
        best, worst = (middle, worst) if keeps_up(middle) else (best, middle)
    found = f"{best:.0f} req/s" if best else f"none down to {MIN_RATE:g} req/s"
    print(f"highest rate with p99 send lag < 1 ms, {who}: {found}")
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--mock-workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--max-rate", type=float, default=16000.0)
    parser.add_argument("--clients", type=int, default=2, help="client processes for the second rate search")
    parser.add_argument("--skip-cost", action="store_true", help="only the rate searches")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}, {os.cpu_count()} CPUs, mock workers "
          f"{args.mock_workers}")  # fmt: skip
    process, url = start_mock(args.mock_workers)
    try:
        for name, client in (("tokbench", tokbench_closed), ("aiohttp", aiohttp_closed), ("httpx", httpx_closed)):
            if not args.skip_cost:
                cost(name, client, url, args.requests)
        highest_rate(url, 0, args.max_rate)
        if args.clients > 1:
            highest_rate(url, args.clients, args.max_rate)
        print(f"load average after {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    finally:
        process.terminate()
        process.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())

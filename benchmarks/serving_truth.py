"""How close the serving client's figures are to the truth: the mock server's own stamps, on loopback.

The mock (another process) scripts its delays and records, per request, when it read the request and when it
wrote each event (``perf_counter_ns``: on Linux one CLOCK_MONOTONIC for every process). For each measured request
this prints how far the client's TTFT, TPOT, event gaps and E2E are from the same figures on the server's stamps,
and the share within 1% or 50 µs (the target), for answers of 1 and 3 tokens per event, one and four requests in
flight. What remains is loopback delivery plus the client's own scheduling: on a loaded machine it grows.

    .venv/bin/python benchmarks/serving_truth.py [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.request

import numpy as np

from tokbench.schema.serving import LengthSpec, ServingSettings
from tokbench.serving.launch import free_loopback_port
from tokbench.serving.mock import MockScript
from tokbench.serving.runner import MOCK_TOKENIZER, ServingRun, run_serving


def start(script: MockScript) -> tuple[subprocess.Popen[bytes], str]:
    port = free_loopback_port()
    command = [sys.executable, "-m", "tokbench.serving.mock", "--port", str(port), "--script", script.to_json()]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    process.stdout.readline()
    return process, f"http://127.0.0.1:{port}"


def within(errors: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(errors <= np.maximum(0.01 * np.abs(truth), 50_000)))


def measure(tokens_per_event: int, concurrency: int, requests: int) -> None:
    script = MockScript(ttft_us=20_000, tpot_us=5_000, tokens_per_event=tokens_per_event, usage="continuous",
                        default_output_tokens=24)  # fmt: skip
    process, url = start(script)
    try:
        settings = ServingSettings(api="chat", model="mock-model", load="concurrency", concurrency=concurrency,
                                   requests=requests, warmup_requests=4, input_tokens=LengthSpec("fixed", value=8),
                                   output_tokens=LengthSpec("fixed", value=24))  # fmt: skip
        result = run_serving(ServingRun(url, settings, tokenizer=MOCK_TOKENIZER))
        with urllib.request.urlopen(url + "/mock/log", timeout=30) as response:
            log = {entry["request_id"]: entry for entry in json.loads(response.read())}
    finally:
        process.terminate()
        process.wait(10)
    rows: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in ("TTFT", "TPOT", "event gap", "E2E")}
    for request in result.serving.requests:  # type: ignore[union-attr]
        if request.warmup or not request.ok:
            continue
        served = log[f"tokbench-{request.index}"]
        writes = served["write_ns"]
        client = request.event_ns
        n = request.output_tokens
        pairs = {
            "TTFT": (client[0] - request.sent_ns, writes[0] - served["received_ns"]),
            "TPOT": ((client[-1] - client[0]) / (n - 1), (writes[-1] - writes[0]) / (n - 1)),
            "E2E": (client[-1] - request.sent_ns, writes[-1] - served["received_ns"]),
        }
        for name, (mine, truth) in pairs.items():
            rows[name][0].append(abs(mine - truth))
            rows[name][1].append(truth)
        for a, b, c, d in zip(client, client[1:], writes, writes[1:], strict=False):
            rows["event gap"][0].append(abs((b - a) - (d - c)))
            rows["event gap"][1].append(d - c)
    print(f"{tokens_per_event} token(s) per event, concurrency {concurrency}, {requests} requests:")
    for name, (errors, truth) in rows.items():
        e, t = np.asarray(errors, dtype=float), np.asarray(truth, dtype=float)
        median_us, p99_us = np.median(e) / 1e3, np.percentile(e, 99) / 1e3
        print(f"  {name:10s} |client - server| median {median_us:8.1f} µs, p99 {p99_us:8.1f} µs; within 1% or "
              f"50 µs: {within(e, t):6.1%}  (truth median {np.median(t) / 1e6:.3f} ms)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}, {os.cpu_count()} CPUs")
    for tokens_per_event, concurrency in ((1, 1), (3, 1), (1, 4)):
        measure(tokens_per_event, concurrency, args.requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())

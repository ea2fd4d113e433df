"""tokbench and GuideLLM side by side on the same server and workload, each recomputed into the other's definitions.

GuideLLM runs from its own virtualenv (``python3 -m venv /tmp/guidellm-venv && /tmp/guidellm-venv/bin/pip install
-c .venv/torch-constraint.txt guidellm``), against the bundled mock (completions, 24 output tokens, 20 ms to the
first token, 4 ms per token, one token per event), two requests in flight, 60 requests; then tokbench runs the same.
The mock's own write stamps referee both. GuideLLM's per-request timings (``request_start``,
``first_token_iteration``, ``last_token_iteration``, ``request_end``: wall-clock floats) are recomputed into
tokbench's TTFT / TPOT / E2E, and tokbench's stamps into GuideLLM's ITL and TPOT (its TPOT includes the TTFT).

    .venv/bin/python benchmarks/serving_guidellm.py [--guidellm /tmp/guidellm-venv/bin/guidellm]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from tokbench import presets
from tokbench.schema.serving import LengthSpec, ServingSettings
from tokbench.serving.launch import free_loopback_port
from tokbench.serving.mock import MockScript
from tokbench.serving.runner import MOCK_TOKENIZER, ServingRun, run_serving

REQUESTS, STREAMS, OUTPUT, PROMPT = 60, 2, 24, 32


def scenario(url: str, output: Path) -> dict:
    return {
        "metadata": {"name": "tokbench-side-by-side", "description": "completions, 2 streams"},
        "spec": {
            "backend": {"kind": "openai_http", "target": url, "model": "mock-model",
                        "request_format": "/v1/completions"},
            "profile": {"kind": "concurrent", "streams": [STREAMS]},
            "data": [{"kind": "synthetic_text", "prompt_tokens": PROMPT, "output_tokens": OUTPUT}],
            "tokenizer": {"kind": "hf_auto", "model": str(presets.tokenizer_dir())},
            "constraints": [{"kind": "max_requests", "count": REQUESTS}],
            "outputs": [{"kind": "json", "path": str(output)}],
        },
    }  # fmt: skip


def median_ms(values: list[float]) -> float:
    return float(np.median(values)) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guidellm", default="/tmp/guidellm-venv/bin/guidellm")
    args = parser.parse_args()
    if not Path(args.guidellm).is_file():
        print(f"no GuideLLM at {args.guidellm}: install it in its own virtualenv (see the docstring)")
        return 2
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}, {os.cpu_count()} CPUs")
    port = free_loopback_port()
    script = MockScript(ttft_us=20_000, tpot_us=4_000, usage="final").to_json()
    mock = subprocess.Popen([sys.executable, "-m", "tokbench.serving.mock", "--port", str(port), "--script", script],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    assert mock.stdout is not None
    mock.stdout.readline()
    url = f"http://127.0.0.1:{port}"
    try:
        with tempfile.TemporaryDirectory() as folder:
            output = Path(folder) / "guidellm.json"
            (Path(folder) / "scenario.json").write_text(json.dumps(scenario(url, output)))
            subprocess.run([args.guidellm, "run", "--scenario", str(Path(folder) / "scenario.json"),
                            "--disable-console"], check=True, cwd=folder, timeout=900)  # fmt: skip
            guide = json.loads(output.read_text())["benchmarks"][0]
        settings = ServingSettings(api="completions", model="mock-model", load="concurrency", concurrency=STREAMS,
                                   requests=REQUESTS, warmup_requests=0, input_tokens=LengthSpec("fixed", value=PROMPT),
                                   output_tokens=LengthSpec("fixed", value=OUTPUT))  # fmt: skip
        ours = run_serving(ServingRun(url, settings, tokenizer=MOCK_TOKENIZER))
        with urllib.request.urlopen(url + "/mock/log", timeout=30) as response:
            log = json.loads(response.read())
    finally:
        mock.terminate()
        mock.wait(10)
    g: dict[str, list[float]] = {"ttft": [], "tpot_ours": [], "tpot_theirs": [], "e2e": []}
    for request in guide["requests"]["successful"]:
        t = request["info"]["timings"]
        n = request["output_metrics"]["text_tokens"]
        start, first = t["request_start"], t["first_token_iteration"]
        last, end = t["last_token_iteration"], t["request_end"]
        g["ttft"].append(first - start)
        g["tpot_ours"].append((last - first) / (n - 1))  # = GuideLLM's own "ITL"
        g["tpot_theirs"].append((last - start) / n)
        g["e2e"].append(end - start)
    t_: dict[str, list[float]] = {"ttft": [], "tpot_ours": [], "tpot_theirs": [], "e2e": []}
    for request in ours.serving.requests:  # type: ignore[union-attr]
        if not request.ok:
            continue
        stamps = request.token_stamps()
        n = len(stamps)
        t_["ttft"].append((stamps[0] - request.intended_ns) / 1e9)
        t_["tpot_ours"].append((stamps[-1] - stamps[0]) / (n - 1) / 1e9)
        t_["tpot_theirs"].append((stamps[-1] - request.sent_ns) / n / 1e9)
        t_["e2e"].append((request.end_ns - request.intended_ns) / 1e9)
    served = [e for e in log if e["request_id"].startswith("tokbench-")]
    truth_tpot = [(e["write_ns"][-1] - e["write_ns"][0]) / (len(e["write_ns"]) - 1) / 1e9 for e in served]
    truth_ttft = [(e["write_ns"][0] - e["received_ns"]) / 1e9 for e in served]
    print(f"same mock, completions, {PROMPT} prompt words, {OUTPUT} tokens, {STREAMS} in flight, {REQUESTS} requests; "
          "medians in ms")  # fmt: skip
    print(f"{'figure':52s} {'tokbench':>10s} {'GuideLLM':>10s}")
    rows = (
        ("TTFT (tokbench: from the send; GuideLLM: time_to_first_token)", t_["ttft"], g["ttft"]),
        ("TPOT = (t_N - t_1)/(N-1)  (GuideLLM calls it ITL)", t_["tpot_ours"], g["tpot_ours"]),
        ("GuideLLM's TPOT = (t_N - start)/N, includes TTFT", t_["tpot_theirs"], g["tpot_theirs"]),
        ("E2E / request_latency", t_["e2e"], g["e2e"]),
    )
    for name, mine, theirs in rows:
        print(f"{name:52s} {median_ms(mine):10.3f} {median_ms(theirs):10.3f}")
    print(f"the mock's own stamps (tokbench's requests): TTFT {median_ms(truth_ttft):.3f} ms from reading the request, "
          f"TPOT {median_ms(truth_tpot):.3f} ms")  # fmt: skip
    print(f"GuideLLM's table: ITL {guide['metrics']['inter_token_latency_ms']['successful']['median']:.3f} ms, "
          f"TPOT {guide['metrics']['time_per_output_token_ms']['successful']['median']:.3f} ms, "
          f"TTFT {guide['metrics']['time_to_first_token_ms']['successful']['median']:.3f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

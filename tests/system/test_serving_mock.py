"""The serving client against the scripted mock on loopback: the stream's structure exactly, the stamps bounded by
the mock's own write stamps (never by a tolerance a loaded machine could break), hostile servers, saturation
against a known capacity, and the CLI end to end (store, compare, API key hygiene)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tokbench.schema.serving import LengthSpec, ServingSettings, SloSpec
from tokbench.serving.mock import MockScript, MockThread
from tokbench.serving.runner import MOCK_TOKENIZER, ServingRun, run_serving, slo_search, sweep

VENV_BIN = Path(sys.executable).parent


def _settings(**changes: object) -> ServingSettings:
    base = {"api": "chat", "model": "mock-model", "load": "concurrency", "concurrency": 2, "requests": 12,
            "warmup_requests": 2, "input_tokens": LengthSpec("fixed", value=8),
            "output_tokens": LengthSpec("fixed", value=10), "timeout_s": 30.0}  # fmt: skip
    return ServingSettings(**{**base, **changes})  # type: ignore[arg-type]


def test_k_tokens_per_event_role_chunk_and_no_done_are_recorded_exactly_and_stamps_follow_the_server() -> None:
    script = MockScript(ttft_us=20_000, tpot_us=2_000, tokens_per_event=3, role_chunk=True, send_done=False,
                        usage="continuous")  # fmt: skip
    with MockThread(script) as mock:
        result = run_serving(ServingRun(mock.url, _settings(), tokenizer=MOCK_TOKENIZER))
        log = {served.request_id: served for served in mock.log}
    assert result.status == "ok", result.reason
    serving = result.serving
    assert serving is not None and serving.capabilities is not None
    capabilities = serving.capabilities
    assert capabilities.role_only_first_chunk is True and capabilities.done_sentinel is False
    assert capabilities.usage_per_chunk is True and serving.token_source == "usage_deltas"
    summary = serving.summary
    assert summary is not None and summary.completed == 12 and summary.failed == 0
    assert summary.multi_token_events == 12 * 3 and summary.max_tokens_per_event == 3  # 3+3+3+1 per answer
    for request in serving.requests:
        served = log[f"tokbench-{request.index}"]
        assert request.event_tokens == (3, 3, 3, 1) == tuple(served.event_tokens)
        assert request.role_only_first_chunk is True and request.saw_done is False
        # causality, whatever the machine's load: the client reads an event after the mock wrote it, and sends
        # before the mock reads the request; so the client's TTFT is never below the server's own
        assert all(read >= wrote for read, wrote in zip(request.event_ns, served.write_ns, strict=True))
        assert request.sent_ns <= served.received_ns
        assert request.event_ns[0] - request.sent_ns >= served.write_ns[0] - served.received_ns
        # the mock kept its schedule (absolute deadlines: 20 ms, + 2 ms per token after the first of an event)
        since_admission = [wrote - served.admitted_ns for wrote in served.write_ns]
        assert all(at >= due for at, due in zip(since_admission, (24e6, 30e6, 36e6, 38e6), strict=True))
    assert result.summary["tpot_ms"].count == 12 and result.summary["itl_ms"].count == 12 * 9
    assert len(result.iterations) == len({r.iteration for r in serving.requests if not r.warmup})


def test_a_hostile_server_fails_requests_one_by_one_and_the_run_goes_on(tmp_path: Path) -> None:
    # arrivals 0 and 1 are the pre-flight probes (plain, then ignore_eos); warmup 0; one request at a time
    faults = {3: "http_500", 4: "http_429", 5: "die_mid_stream", 6: "malformed", 7: "gigantic_line", 8: "stall",
              9: "close_at_once", 10: "http_422", 11: "redirect"}  # fmt: skip
    script = MockScript(tpot_us=500, default_output_tokens=6, faults=faults, usage="final")
    settings = _settings(api="completions", concurrency=1, requests=12, warmup_requests=0, stall_timeout_s=1.0)
    with MockThread(script) as mock:
        result = run_serving(ServingRun(mock.url, settings, tokenizer=MOCK_TOKENIZER))
    assert result.status == "ok"
    statuses = [r.status for r in result.serving.requests]  # type: ignore[union-attr]
    assert statuses == ["ok", "http_5xx", "http_429", "disconnected", "malformed_stream", "line_too_long", "stalled",
                        "disconnected", "http_4xx", "redirect_refused", "ok", "ok"]  # fmt: skip
    summary = result.serving.summary  # type: ignore[union-attr]
    assert summary is not None and summary.completed == 3 and summary.failed == 9
    assert all(r.error for r in result.serving.requests if not r.ok)  # type: ignore[union-attr]
    assert result.summary["e2e_latency_ms"].count == 3  # what succeeded is measured; nothing else is lost


def test_an_unreachable_server_is_a_skipped_result_that_says_why() -> None:
    from tokbench.serving.launch import free_loopback_port

    url = f"http://127.0.0.1:{free_loopback_port()}"
    result = run_serving(ServingRun(url, _settings(), tokenizer=MOCK_TOKENIZER))
    assert result.status == "skipped" and "connection_refused" in result.reason


def test_a_server_that_rejects_every_fixed_length_field_is_skipped_unless_early_stops_are_allowed() -> None:
    script = MockScript(rejected_fields=("ignore_eos", "min_tokens", "generation_config"), early_stop_tokens=3)
    with MockThread(script) as mock:
        skipped = run_serving(ServingRun(mock.url, _settings(requests=4), tokenizer=MOCK_TOKENIZER))
        allowed = run_serving(ServingRun(mock.url, _settings(requests=4), tokenizer=MOCK_TOKENIZER,
                                         allow_early_stop=True))  # fmt: skip
    assert skipped.status == "skipped" and "exactly the asked output length" in skipped.reason
    assert skipped.serving.capabilities.rejected_fields == ("ignore_eos", "min_tokens", "generation_config")  # type: ignore[union-attr]
    assert allowed.status == "ok"
    assert {r.output_tokens for r in allowed.serving.requests} == {3}  # type: ignore[union-attr]


def test_saturation_is_found_at_the_mock_capacity_and_the_slo_search_stays_below_it() -> None:
    # capacity 2 requests at once, 10 tokens 2 ms apart: about 100 requests/s at most
    script = MockScript(tpot_us=2_000, default_output_tokens=10, capacity=2, usage="final")
    settings = _settings(api="completions", load="rate", rate=10.0, concurrency=None, requests=60, arrival="constant",
                         output_tokens=LengthSpec("fixed", value=10), lag_budget_ms=1000.0)  # fmt: skip
    with MockThread(script) as mock:
        run = ServingRun(mock.url, settings, tokenizer=MOCK_TOKENIZER)
        outcome = sweep(run, [10.0, 400.0], lambda result: None)
        searched = slo_search(replace_slo(run, SloSpec(e2e_ms=100.0, percentile=50.0)), 5.0, 400.0,
                              lambda result: None, steps=4)  # fmt: skip
    verdict = outcome.saturation
    assert verdict is not None and verdict.saturated and verdict.first_saturated == 400.0
    assert verdict.max_throughput < 150  # the mock cannot serve more than its capacity
    assert searched.slo_failed_rate is not None and (searched.slo_rate is None or searched.slo_rate < 200)


def replace_slo(run: ServingRun, slo: SloSpec) -> ServingRun:
    from dataclasses import replace

    return replace(run, slo=slo)


@pytest.fixture
def mock_server(tmp_path: Path):
    from tokbench.serving.launch import free_loopback_port

    port = free_loopback_port()
    script = MockScript(ttft_us=2_000, tpot_us=500, usage="final", default_output_tokens=8).to_json()
    process = subprocess.Popen([sys.executable, "-m", "tokbench.serving.mock", "--port", str(port), "--script", script],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    assert process.stdout is not None
    assert b"listening" in process.stdout.readline()
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "tokbench"), *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})  # fmt: skip


def test_the_cli_stores_results_compare_reads_them_and_the_api_key_is_never_kept(mock_server: str,
                                                                               tmp_path: Path) -> None:  # fmt: skip
    secret = "sk-tokbench-test-NEVER-STORED"
    common = ("--requests", "24", "--warmup", "2", "--rate", "40", "--lag-budget-ms", "1000", "--db", "s.db",
              "--api-key-env", "TB_TEST_KEY", "--output-tokens", "8")  # fmt: skip
    first = _cli("serve-bench", mock_server, *common, "--label", "a", cwd=tmp_path, env={"TB_TEST_KEY": secret})
    second = _cli("serve-bench", mock_server, *common, "--label", "b", cwd=tmp_path, env={"TB_TEST_KEY": secret})
    assert first.returncode == 0, first.stderr[-2000:]
    assert second.returncode == 0, second.stderr[-2000:]
    assert "TPOT" in first.stdout and "vLLM" in first.stdout  # the table and the definitions card
    compared = _cli("compare", "s.db:run=1", "s.db:run=2", cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr[-2000:]
    assert "TTFT" in compared.stdout
    everything = first.stdout + first.stderr + second.stdout + (tmp_path / "s.db").read_bytes().decode("latin-1")
    everything += "".join(p.read_text() for p in (tmp_path / "tokbench-results").glob("*.json"))
    assert secret not in everything


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for args in (("http://user:pw@127.0.0.1:9",), ("http://127.0.0.1:9", "--rate", "abc"),
                 ("http://127.0.0.1:9", "--input-tokens", "uniform:9:2"),
                 ("http://127.0.0.1:9", "--api-key-env", "TB_SURELY_UNSET_VARIABLE")):  # fmt: skip
        completed = _cli("serve-bench", *args, cwd=tmp_path)
        assert completed.returncode == 2, (args, completed.stderr)
        assert completed.stderr.count("\n") == 1 and "Traceback" not in completed.stderr
    assert json.loads("{}") == {}


def test_serving_report_pages_render_in_a_browser(tmp_path: Path) -> None:
    from tokbench.cli import main
    from tokbench.report.browser import report_browser, unavailable_reason
    from tokbench.schema.results import save_result

    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"browser tests need a headless Chromium: {reason}")
    script = MockScript(ttft_us=3_000, tpot_us=1_000, default_output_tokens=8, faults={5: "http_500"})
    settings = _settings(api="completions", load="rate", rate=20.0, concurrency=None, requests=20,
                         lag_budget_ms=1000.0, label="<script>alert(1)</script>")  # fmt: skip
    with MockThread(script) as mock:
        outcome = sweep(ServingRun(mock.url, settings, tokenizer=MOCK_TOKENIZER), [20.0, 40.0], lambda r: None)
    for index, result in enumerate(outcome.results):
        save_result(result, tmp_path / f"run{index}.json")
    output = tmp_path / "report.html"
    assert main(["report", str(tmp_path), "--output", str(output)]) == 0
    with report_browser() as browser:
        opened = browser.open(output)
        assert opened.console_errors == [] and opened.page_errors == [] and opened.outside_requests == []
        assert opened.dialogs == []
        page = opened.page
        titles = page.evaluate("Array.from(document.querySelectorAll('summary, h3')).map(e => e.textContent)")
        assert any("Serving sweep" in t for t in titles) and any("timeline" in t.lower() for t in titles)
        assert opened.plots_rendered >= 2


def test_versus_runs_two_servers_interleaved_and_compare_calls_the_slower_one_slower(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tokbench.cli import main

    monkeypatch.chdir(tmp_path)
    key_file = tmp_path / "key.txt"
    key_file.write_text("sk-from-a-file\n")
    fast = MockScript(ttft_us=2_000, tpot_us=1_000, default_output_tokens=12)
    slow = MockScript(ttft_us=2_000, tpot_us=4_000, default_output_tokens=12)
    with MockThread(fast) as a, MockThread(slow) as b:
        code = main(["serve-bench", a.url, "--versus", b.url, "--rounds", "2", "--concurrency", "2", "--requests",
                     "24", "--output-tokens", "12", "--api-key-file", str(key_file), "--db", "ab.db"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out[-2000:]
    assert "slower" in out and "TPOT" in out
    assert "sk-from-a-file" not in out + (tmp_path / "ab.db").read_bytes().decode("latin-1")
    from tokbench.results.store import ResultStore

    with ResultStore(tmp_path / "ab.db", read_only=True) as store:
        labels = [store.result(run.run_id).serving.settings.label for run in store.runs()]
    assert labels == ["baseline", "contender", "contender", "baseline"]  # ABBA


def test_auto_sweep_dataset_and_gamma_arrivals(tmp_path: Path) -> None:
    from tokbench.serving.runner import auto_sweep

    dataset = tmp_path / "sharegpt.json"
    dataset.write_text(json.dumps([
        {"conversations": [{"from": "human", "value": "tok " * 5}, {"from": "gpt", "value": "tok " * 7}]},
        {"conversations": [{"from": "human", "value": "tok " * 9}, {"from": "gpt", "value": "tok " * 3}]},
    ]))  # fmt: skip
    script = MockScript(tpot_us=1_000, capacity=2, usage="final")
    settings = _settings(api="completions", requests=16, warmup_requests=0, arrival="gamma", burstiness=0.5,
                         input_tokens=LengthSpec("dataset"), output_tokens=LengthSpec("dataset"),
                         lag_budget_ms=1000.0)  # fmt: skip
    delivered = []
    with MockThread(script) as mock:
        run = ServingRun(mock.url, settings, tokenizer=MOCK_TOKENIZER, dataset=str(dataset))
        outcome = auto_sweep(run, 2, delivered.append, max_concurrency=8)
    assert [r.serving.settings.load for r in outcome.results] == ["concurrency", "concurrency", "rate", "rate"]
    assert len(delivered) == 4 and all(r.status == "ok" for r in delivered)
    low, high = (r.serving.summary.request_throughput for r in outcome.results[:2])
    rates = [r.serving.settings.rate for r in outcome.results[2:]]
    assert low < rates[0] < rates[1] < high
    outputs = {r.usage_completion_tokens for r in outcome.results[0].serving.requests}
    assert outputs <= {7, 3}  # output lengths from the dataset's answers (words are the mock's tokens)

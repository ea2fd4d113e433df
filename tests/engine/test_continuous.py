"""Continuous batching and profiling end to end on the real tiny model."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

import tokbench
from tokbench.analysis.summarize import recompute_summary
from tokbench.config import BenchmarkConfig
from tokbench.engine.continuous import cache_sizing
from tokbench.engine.loading import load
from tokbench.engine.profiling import FORWARD_EVENT
from tokbench.schema.results import load_result, save_result

MIXED_PROMPTS = {"distribution": "uniform", "min": 4, "max": 24, "seed": 0}


def _fields(**changes: object) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "model": "tiny-llama",
        "batch_size": 8,
        "sequence_length": MIXED_PROMPTS,
        "new_tokens": 6,
        "dtype": "float32",
        "warmup_iterations": 1,
        "measurement_iterations": 2,
        "device": "cpu",
        "monitor": False,
    }
    fields.update(changes)
    return fields


def test_manager_is_set_up_once_outside_every_iteration(tmp_path: Path) -> None:
    config = BenchmarkConfig(**_fields(continuous_batching=True))
    assert len(set(config.prompt_lengths)) > 1
    loaded = load(config)
    model = loaded.model
    created: list[object] = []
    library_init = model.init_continuous_batching

    def counting_init(*args: Any, **kwargs: Any) -> Any:  # a spy: the real manager is created
        manager = library_init(*args, **kwargs)
        created.append(manager)
        return manager

    model.init_continuous_batching = counting_init
    result = tokbench.run(config, model=model, tokenizer=loaded.tokenizer, progress=False, device_warmup_s=0.01)
    assert result.status == "ok", result.reason
    assert len(created) == 1  # one manager for validation, warmup and every measured iteration

    setup = result.phases.continuous_batching_setup
    cold = result.phases.cold_call
    assert setup is not None and cold is not None and setup.elapsed_ns > 0
    assert setup.end_ns <= cold.t0_ns  # setup precedes the validation call ...
    for trace in result.iterations:  # ... and so lies outside every measured iteration
        assert not trace.t0_ns <= setup.start_ns <= trace.end_ns and setup.end_ns <= trace.t0_ns
    assert setup.settings["resolved"]["num_blocks"] == cache_sizing(config).num_blocks
    assert model.config._attn_implementation == "sdpa"  # given back after the manager stopped

    for trace in result.iterations:
        assert trace.per_request_timing
        assert trace.prompt_tokens == config.prompt_lengths
        assert trace.generated_tokens == (config.new_tokens,) * config.batch_size
        assert all(len(row) == config.new_tokens for row in trace.token_timestamps_ns)
        for row in range(config.batch_size):
            assert trace.t0_ns <= trace.submitted_ns(row) < trace.token_timestamps_ns[row][0]
            assert trace.token_timestamps_ns[row][-1] <= trace.finished_ns(row) <= trace.end_ns
    # every request is its own sample: 8 requests x 2 iterations
    assert result.summary["ttft_ms"].count == 16 and result.summary["tpot_ms"].count == 16
    assert result.summary == recompute_summary(result)
    assert len(result.sample_output) > 0
    assert load_result(save_result(result, tmp_path / "cb.json")) == result


def test_auto_measurement_stops_on_the_interval_the_summary_stores() -> None:
    # continuous batching: E2E samples are per request (own submission -> own finish); the policy's
    # precision must be the stored median CI's half-width, not one computed from the call's span
    config = BenchmarkConfig(
        **_fields(
            continuous_batching=True,
            batch_size=4,
            measurement_iterations="auto",
            measurement_min_iterations=3,
            measurement_max_iterations=4,
            measurement_budget_s=60.0,
            target_relative_precision=0.001,
        )
    )
    result = tokbench.run(config, progress=False, device_warmup_s=0.01)
    assert result.status == "ok", result.reason
    measurement = result.phases.measurement
    assert measurement is not None and measurement.policy == "auto"
    assert 3 <= measurement.iterations == len(result.iterations) <= 4
    stored = result.summary["e2e_latency_ms"]
    assert stored.count == 4 * len(result.iterations)  # one sample per request
    assert measurement.relative_precision == stored.median_relative_precision


def test_flex_attention_is_skipped_with_the_library_reason() -> None:
    config = BenchmarkConfig(**_fields(continuous_batching=True, attn_implementation="flex_attention"))
    result = tokbench.run(config, progress=False, device_warmup_s=0.01)
    assert result.status == "skipped"
    assert "not supported for continuous batching" in result.reason
    assert result.reason.startswith("attn_implementation")


def test_plain_path_left_pads_and_counts_real_prompt_tokens() -> None:
    fields = _fields(batch_size=3, sequence_length=[4, 11, 7], warmup_iterations=0, measurement_iterations=1)
    result = tokbench.run(BenchmarkConfig(**fields), progress=False, device_warmup_s=0.01)
    assert result.status == "ok", result.reason
    trace = result.iterations[0]
    assert trace.prompt_tokens == (4, 11, 7) and not trace.per_request_timing
    assert trace.output_shape == (3, 11 + fields["new_tokens"])
    assert result.summary["ttft_ms"].count == 1  # lockstep rows: one sample per call
    # the same workload through continuous batching generates the same tokens for the left-padded row 0
    batched = tokbench.run(BenchmarkConfig(**fields, continuous_batching=True), progress=False, device_warmup_s=0.01)
    assert batched.status == "ok", batched.reason
    cold, batched_cold = result.phases.cold_call, batched.phases.cold_call
    assert cold is not None and batched_cold is not None
    assert batched_cold.sample_token_ids == cold.sample_token_ids


def _forward_events(path: str) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        trace = json.load(handle)
    return [event for event in trace["traceEvents"] if event.get("name") == FORWARD_EVENT]


@pytest.mark.parametrize("continuous_batching", [False, True])
def test_profiled_run_leaves_a_trace_of_the_forward_passes(tmp_path: Path, continuous_batching: bool) -> None:
    config = BenchmarkConfig(
        **_fields(continuous_batching=continuous_batching, batch_size=4, profile_tokens=3, warmup_iterations=0)
    )
    trace_path = tmp_path / "run.trace.json.gz"
    result = tokbench.run(config, progress=False, device_warmup_s=0.01, profile_path=trace_path)
    assert result.status == "ok", result.reason
    assert not any("profil" in note for note in result.notes)
    profile = result.profile
    assert profile is not None and profile.trace_path == str(trace_path) and trace_path.is_file()
    # one forward per generated token: a prefill (all requests in one step) then a decode step per token
    assert profile.forward_passes == config.profile_tokens
    events = _forward_events(profile.trace_path)
    assert len(events) == profile.forward_passes
    assert profile.top_operators and profile.top_operators[0].self_cpu_us > 0
    assert any(op.name == "aten::mm" or op.name == "aten::addmm" for op in profile.top_operators)
    # the measured iterations are the config's, untouched by the profiled generation
    assert len(result.iterations) == config.measurement_iterations
    assert all(trace.generated_tokens == (config.new_tokens,) * 4 for trace in result.iterations)
    assert load_result(save_result(result, tmp_path / "run.json")).profile == profile


def test_a_failed_profile_keeps_the_measurement_and_says_why(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    config = BenchmarkConfig(**_fields(batch_size=1, sequence_length=8, profile_tokens=2, warmup_iterations=0))
    result = tokbench.run(config, progress=False, device_warmup_s=0.01, profile_path=blocker / "t.trace.json.gz")
    assert result.status == "ok" and result.profile is None
    assert len(result.iterations) == config.measurement_iterations
    assert [note for note in result.notes if note.startswith("profile_tokens: profiling failed")]

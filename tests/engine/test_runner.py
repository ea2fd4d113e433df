"""End to end on the real tiny model: statuses, reasons, raw stamps, and summaries that recompute."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

import tokbench
from tokbench.analysis.summarize import recompute_summary
from tokbench.clock import FakeClock
from tokbench.config import BenchmarkConfig
from tokbench.engine.loading import load
from tokbench.schema.results import load_result, save_result


def _check_complete(result: tokbench.BenchmarkResult) -> None:
    config = result.config
    assert result.status == "ok", result.reason
    warmup, measurement = result.phases.warmup, result.phases.measurement
    assert warmup is not None and measurement is not None
    assert len(result.iterations) == measurement.iterations
    assert len(result.phases.warmup_curve_ns) == warmup.iterations
    if config.measurement_iterations != "auto":
        assert measurement.iterations == config.measurement_iterations
    if config.warmup_iterations != "auto":
        assert warmup.iterations == config.warmup_iterations
    for trace in result.iterations:
        assert len(trace.token_timestamps_ns) == config.batch_size
        assert all(len(row) == config.new_tokens for row in trace.token_timestamps_ns)
        assert trace.prompt_tokens == (config.sequence_length,) * config.batch_size
    assert result.summary == recompute_summary(result)
    # a plain generate batch runs in lockstep: one timing sample per call, not one per row
    assert result.summary["ttft_ms"].count == measurement.iterations
    assert result.summary["itl_ms"].count == measurement.iterations * (config.new_tokens - 1)
    assert result.summary["e2e_latency_ms"].median_relative_precision == measurement.relative_precision


# Every attention × dtype × batch for eager and sdpa; flex attention compiles its kernels for each dtype and batch
# (a minute each on 2 busy cores), so it runs the diagonal: both dtypes and both batch sizes, each once.
MATRIX = [
    *itertools.product(("eager", "sdpa"), ("bfloat16", "float32"), (1, 4)),
    ("flex_attention", "bfloat16", 1),
    ("flex_attention", "float32", 4),
]


@pytest.mark.parametrize(("attention", "dtype", "batch_size"), MATRIX)
def test_attention_dtype_batch_matrix(
    fast_config_fields: dict[str, object], attention: str, dtype: str, batch_size: int
) -> None:
    config = BenchmarkConfig(
        **fast_config_fields,  # type: ignore[arg-type]
        attn_implementation=attention,
        dtype=dtype,
        batch_size=batch_size,
    )
    result = tokbench.run(config, progress=False, device_warmup_s=0.01)
    _check_complete(result)
    assert result.effective_settings.attn_implementation == attention
    assert result.effective_settings.dtype == dtype


def test_result_survives_a_json_round_trip(fast_config_fields: dict[str, object], tmp_path: Path) -> None:
    result = tokbench.run(BenchmarkConfig(**fast_config_fields), progress=False, device_warmup_s=0.01)  # type: ignore[arg-type]
    path = save_result(result, tmp_path / "r.json")
    assert load_result(path) == result
    assert tokbench.load_result(path).summary == result.summary
    assert result.environment.torch == torch.__version__
    assert result.phases.device_warmup is not None and result.phases.device_warmup.matmuls > 0
    cold = result.phases.cold_call
    assert cold is not None and cold.generated_tokens == (result.config.new_tokens,)
    assert result.sample_output == cold.decoded_sample


@pytest.mark.parametrize(
    ("fields", "field_name"),
    [({"attn_implementation": "flash_attention_2"}, "attn_implementation"), ({"kernels": True}, "kernels")],
)
def test_features_missing_here_are_skipped_with_the_reason(
    fast_config_fields: dict[str, object], fields: dict[str, object], field_name: str
) -> None:
    import importlib.util

    if field_name == "kernels" and importlib.util.find_spec("kernels") is not None:
        pytest.skip("the kernels library is installed here")
    result = tokbench.run(BenchmarkConfig(**{**fast_config_fields, **fields}), progress=False)  # type: ignore[arg-type]
    assert result.status == "skipped"
    assert result.reason.startswith(field_name)
    assert not result.iterations and not result.summary


def test_a_config_that_raises_is_recorded_as_failed(fast_config_fields: dict[str, object]) -> None:
    config = BenchmarkConfig(**fast_config_fields)  # type: ignore[arg-type]
    loaded = load(config)

    def explode(module: torch.nn.Module, args: object) -> None:
        raise RuntimeError("simulated kernel failure")

    handle = loaded.model.model.layers[0].register_forward_pre_hook(explode)
    try:
        result = tokbench.run(config, model=loaded.model, tokenizer=loaded.tokenizer, progress=False)
    finally:
        handle.remove()
    assert result.status == "failed"
    assert result.reason == "validation call failed: RuntimeError: simulated kernel failure"
    assert not result.iterations


def test_a_model_that_cannot_be_loaded_is_recorded_as_failed(fast_config_fields: dict[str, object]) -> None:
    config = BenchmarkConfig(**{**fast_config_fields, "model": "tokbench-test/does-not-exist"})  # type: ignore[arg-type]
    result = tokbench.run(config, progress=False)  # offline (conftest): the Hub is never reached
    assert result.status == "failed"
    assert result.reason.startswith("loading failed: ModelSourceError: cannot load the tokenizer")
    assert result.environment.torch == torch.__version__


def test_a_provided_model_is_measured_and_left_as_it_was(fast_config_fields: dict[str, object]) -> None:
    config = BenchmarkConfig(**fast_config_fields)  # type: ignore[arg-type]
    loaded = load(config)
    model, tokenizer = loaded.model, loaded.tokenizer
    tokenizer.pad_token = None  # tokbench must pad with EOS without writing into the tokenizer
    model.train()
    own_generation_config = model.generation_config
    own_generation_config.eos_token_id = 1
    rng_state = torch.random.get_rng_state()
    result = tokbench.run(config, model=model, tokenizer=tokenizer, progress=False)
    _check_complete(result)
    assert result.model_source.kind == "provided"
    assert result.phases.load.weights_ns is None
    assert model.training and model.generation_config is own_generation_config
    assert own_generation_config.eos_token_id == 1 and tokenizer.pad_token is None
    assert torch.equal(torch.random.get_rng_state(), rng_state)


def test_the_models_own_generation_defaults_do_not_leak_into_the_run(fast_config_fields: dict[str, object]) -> None:
    config = BenchmarkConfig(**fast_config_fields)  # type: ignore[arg-type]
    clean = tokbench.run(config, progress=False)
    loaded = load(config)
    # what a Hub generation_config.json can carry: each would change what or how much is generated
    loaded.model.generation_config.repetition_penalty = 5.0
    loaded.model.generation_config.cache_implementation = "static"
    loaded.model.generation_config.no_repeat_ngram_size = 1
    result = tokbench.run(config, model=loaded.model, tokenizer=loaded.tokenizer, progress=False)
    _check_complete(result)
    assert result.phases.cold_call is not None and clean.phases.cold_call is not None
    assert result.phases.cold_call.sample_token_ids == clean.phases.cold_call.sample_token_ids
    assert "cache_implementation" not in result.effective_settings.generation_config
    assert "repetition_penalty" not in result.effective_settings.generation_config


def test_run_never_raises_even_when_the_clock_breaks(fast_config_fields: dict[str, object]) -> None:
    frozen_clock = FakeClock(start_ns=5)  # every reading is the same instant: every duration is 0
    config = BenchmarkConfig(**fast_config_fields)  # type: ignore[arg-type]
    result = tokbench.run(config, progress=False, clock=frozen_clock, device_warmup_s=0.0)
    assert result.status == "failed"
    assert result.reason.startswith("metrics could not be computed from the raw stamps: ValueError")
    assert len(result.iterations) == 2  # the raw data is kept for inspection


def test_flex_attention_with_a_static_cache_is_skipped_with_the_libraries_reason(
    fast_config_fields: dict[str, object],
) -> None:
    config = BenchmarkConfig(**{**fast_config_fields, "attn_implementation": "flex_attention", "static_cache": True})  # type: ignore[arg-type]
    result = tokbench.run(config, progress=False)
    assert result.status == "skipped"
    assert "flex_attention with a static KV cache" in result.reason


def test_no_monitor_records_no_samples_and_no_notes(fast_config_fields: dict[str, object]) -> None:
    config = BenchmarkConfig(**{**fast_config_fields, "monitor": False})  # type: ignore[arg-type]
    result = tokbench.run(config, progress=False, device_warmup_s=0.01)
    assert result.status == "ok"
    assert result.notes == ()  # every accepted field is implemented: nothing is merely noted
    # --no-monitor: no samples, no memory peaks, no efficiency figures
    assert (result.monitor, result.memory_peaks, result.efficiency) == (None, (), None)


def test_auto_warmup_and_measurement_on_the_real_model(fast_config_fields: dict[str, object]) -> None:
    bounds = {
        "measurement_min_iterations": 3,
        "measurement_max_iterations": 4,
        "warmup_min_iterations": 3,
        "warmup_max_iterations": 6,
    }
    config = BenchmarkConfig(
        **{**fast_config_fields, "warmup_iterations": "auto", "measurement_iterations": "auto", **bounds}
    )  # type: ignore[arg-type]
    result = tokbench.run(config, progress=False, device_warmup_s=0.01)
    _check_complete(result)
    warmup, measurement = result.phases.warmup, result.phases.measurement
    assert warmup is not None and measurement is not None
    assert warmup.policy == "auto" and 3 <= warmup.iterations <= 6
    assert warmup.steady_state == (warmup.stop_reason == "steady state")
    assert warmup.compiled_in == ()  # eager: nothing compiles
    assert measurement.policy == "auto" and 3 <= measurement.iterations <= 4
    assert measurement.target_met == (measurement.stop_reason == "target precision reached")
    assert ("precision_not_reached" in result.flags) == (not measurement.target_met)


@pytest.mark.slow
def test_compiled_run_really_compiles_and_its_first_call_is_the_slow_one(fast_config_fields: dict[str, object]) -> None:
    config = BenchmarkConfig(
        **{
            **fast_config_fields,
            "compile_mode": "default",
            "measurement_iterations": 3,
            "batch_size": 2,
            "warmup_iterations": "auto",
            "warmup_max_iterations": 10,
        }
    )  # type: ignore[arg-type]
    result = tokbench.run(config, progress=False, device_warmup_s=0.01)
    _check_complete(result)
    # auto warmup: the validation call did all the compiling, so the test runs from the first warmup
    # iteration on, and the seeds' 5 iterations are the floor
    warmup = result.phases.warmup
    assert warmup is not None and warmup.policy == "auto" and warmup.compiled_in == ()
    assert 5 <= warmup.iterations <= 10
    record = result.phases.compile
    assert record is not None and record.requested and record.compiled
    assert record.graphs_after_validation > record.graphs_before
    assert result.effective_settings.generation_config["cache_implementation"] == "static"
    assert record.forward_compiled
    # under inference_mode (the default): warmup and measured calls reuse the validation call's graphs
    assert result.effective_settings.grad_mode == "inference_mode"
    assert record.graphs_after_measurement == record.graphs_after_warmup == record.graphs_after_validation
    # The first call is the slow one because it is the only one that compiled (the graph counts above say so);
    # how much slower is a timing, which a busy machine changes: benchmarks/cold_call.py prints the ratio.
    assert result.phases.cold_call_ns is not None and result.phases.cold_call_ns > 0

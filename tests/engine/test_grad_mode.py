"""grad_mode on the real tiny model: every path runs, and records, the mode its forwards really ran under."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import torch

import tokbench
from tokbench.config import BenchmarkConfig
from tokbench.engine.generation import time_generate
from tokbench.engine.gradmode import GradModeProbe, check_grad_mode, current_grad_mode, grad_mode_context
from tokbench.engine.loading import benchmark_mode, load
from tokbench.errors import GenerationError


def _config(fast_config_fields: dict[str, object], **changes: object) -> BenchmarkConfig:
    return BenchmarkConfig(**{**fast_config_fields, "monitor": False, **changes})  # type: ignore[arg-type]


def test_contexts_and_what_a_thread_reports() -> None:
    assert current_grad_mode() == "grad_enabled"
    with grad_mode_context("inference_mode"):
        assert current_grad_mode() == "inference_mode"
        seen: list[str] = []
        thread = threading.Thread(target=lambda: seen.append(current_grad_mode()))
        thread.start()
        thread.join()
        assert seen == ["grad_enabled"]  # thread-local: a new thread does not inherit it
    with grad_mode_context("no_grad"):
        assert current_grad_mode() == "no_grad"
    with pytest.raises(GenerationError, match="no_grad, not the configured grad_mode inference_mode"):
        check_grad_mode("inference_mode", "no_grad", "generate")
    with pytest.raises(GenerationError, match="unknown"):
        check_grad_mode("inference_mode", None, "generate")


def test_the_probe_sees_the_forwarding_threads_mode_once(fast_config_fields: dict[str, object]) -> None:
    loaded = load(_config(fast_config_fields))
    model, ids = loaded.model, loaded.inputs.input_ids

    def forward_in_thread(mode: str) -> None:
        def body() -> None:
            with grad_mode_context(mode):
                model(input_ids=ids)
                model(input_ids=ids)

        thread = threading.Thread(target=body)
        thread.start()
        thread.join()

    for mode in ("inference_mode", "no_grad"):
        with GradModeProbe(model) as probe:
            forward_in_thread(mode)
            assert probe.seen == mode
            assert not model._forward_pre_hooks  # gone after the first forward: measured forwards carry no hook


@pytest.mark.parametrize("static_cache", [False, True])
def test_time_generate_runs_under_the_asked_mode_and_refuses_a_path_that_switches(
    fast_config_fields: dict[str, object], static_cache: bool
) -> None:
    config = _config(fast_config_fields, static_cache=static_cache)
    loaded = load(config)
    inputs = loaded.inputs

    class SwitchesToNoGrad:  # the real model, whose generate leaves inference_mode (as a library path might)
        @property
        def generation_config(self) -> Any:
            return loaded.model.generation_config

        def generate(self, **kwargs: Any) -> Any:
            with torch.inference_mode(False):
                return loaded.model.generate(**kwargs)

    with benchmark_mode(loaded.model):
        # transformers 5.x makes a fresh StaticCache per call (same length, so compiled graphs fit): its
        # tensors are inference tensors, made and updated under the same mode in every call
        for _ in range(3):
            trace = time_generate(
                loaded.model, inputs.input_ids, inputs.attention_mask, loaded.generation_config, config.new_tokens
            )
            assert trace.generated_tokens == (config.new_tokens,)
        with pytest.raises(GenerationError, match="ran under no_grad"):
            time_generate(
                SwitchesToNoGrad(),
                inputs.input_ids,
                inputs.attention_mask,
                loaded.generation_config,
                config.new_tokens,
                grad_mode="inference_mode",
            )


@pytest.mark.parametrize("grad_mode", ["inference_mode", "no_grad"])
def test_static_cache_and_continuous_batching_runs_record_their_mode(
    fast_config_fields: dict[str, object], grad_mode: str
) -> None:
    for changes in ({"static_cache": True}, {"continuous_batching": True, "batch_size": 2, "dtype": "float32"}):
        config = _config(fast_config_fields, grad_mode=grad_mode, **changes)
        result = tokbench.run(config, progress=False, device_warmup_s=0.01)
        assert result.status == "ok", result.reason
        assert result.effective_settings.grad_mode == grad_mode
        assert result.workload_key == config.workload_key("cpu")

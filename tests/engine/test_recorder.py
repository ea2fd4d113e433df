"""The run recorder and the backends on the real tiny model: every exit keeps what was measured."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

import tokbench
from tokbench.analysis.summarize import recompute_summary
from tokbench.clock import perf_counter_ns
from tokbench.config import BenchmarkConfig
from tokbench.engine import compat
from tokbench.engine.backends import open_backend
from tokbench.engine.loading import benchmark_mode, load
from tokbench.engine.progress import STAGE_COLD_CALL, STAGE_LOAD, STAGE_MEASUREMENT, STAGE_WARMUP
from tokbench.engine.recorder import STOP_INTERRUPTED
from tokbench.engine.runner import RunInterrupted
from tokbench.interrupts import Interrupted
from tokbench.schema.results import load_result, save_result


class RecordingHook:
    """A progress hook that keeps every event; optionally interrupts once measurement reaches a count."""

    def __init__(self, interrupt_at: int | None = None, signal_number: int = signal.SIGTERM) -> None:
        self.events: list[tuple[str, str, int | None]] = []
        self._interrupt_at = interrupt_at
        self._signal_number = signal_number

    def stage_started(self, stage: str, expected: int | None) -> None:
        self.events.append(("started", stage, expected))

    def advanced(self, stage: str, done: int, detail: str = "") -> None:
        self.events.append(("advanced", stage, done))
        if stage == STAGE_MEASUREMENT and done == self._interrupt_at:
            raise Interrupted(self._signal_number)  # what the signal handler raises, at a known iteration

    def stage_finished(self, stage: str) -> None:
        self.events.append(("finished", stage, None))


def test_a_failure_after_measurement_keeps_the_iterations_and_summary(
    fast_config_fields: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = BenchmarkConfig(**{**fast_config_fields, "measurement_iterations": 3})  # type: ignore[arg-type]

    def broken(model: object) -> bool:
        raise RuntimeError("compile bookkeeping broke")

    # The compile-record stage runs after the measured loop on the real model; make it raise there.
    monkeypatch.setattr(compat, "generate_used_compiled_forward", broken)
    result = tokbench.run(config, device_warmup_s=0.01)
    assert result.status == "failed"
    assert result.reason == "measurement failed: RuntimeError: compile bookkeeping broke"
    assert len(result.iterations) == 3
    assert result.summary and result.summary == recompute_summary(result)
    assert result.summary["e2e_latency_ms"].count == 3
    measurement = result.phases.measurement
    assert measurement is not None and measurement.iterations == 3 and measurement.stop_reason == "fixed count"
    assert result.phases.measurement_wall_ns is not None and result.phases.measurement_wall_ns > 0
    assert result.phases.cold_call is not None and len(result.phases.warmup_curve_ns) == 1
    assert result.monitor is not None and len(result.memory_peaks) == 3  # monitoring kept too
    assert not result.ok


def test_a_failing_efficiency_stage_keeps_an_ok_result_with_a_note(
    fast_config_fields: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tokbench.engine.runner as runner

    def broken(*args: object) -> object:
        raise KeyError("num_attention_heads")

    monkeypatch.setattr(runner, "measure_efficiency", broken)
    result = tokbench.run(BenchmarkConfig(**fast_config_fields), device_warmup_s=0.01)  # type: ignore[arg-type]
    assert result.status == "ok", result.reason
    assert result.efficiency is None and len(result.iterations) == 2 and result.summary
    assert result.notes == ("efficiency: not computed: KeyError: 'num_attention_heads'",)


def test_an_interrupted_run_keeps_what_was_measured(fast_config_fields: dict[str, object], tmp_path: Path) -> None:
    config = BenchmarkConfig(**{**fast_config_fields, "measurement_iterations": 50})  # type: ignore[arg-type]
    hook = RecordingHook(interrupt_at=3)
    with pytest.raises(RunInterrupted) as raised:
        tokbench.run(config, progress=hook, device_warmup_s=0.01)
    interrupt = raised.value
    assert isinstance(interrupt, KeyboardInterrupt) and interrupt.exit_code == 143
    result = interrupt.result
    assert result.status == "interrupted" and not result.ok
    assert result.reason == "interrupted by SIGTERM after 1 warmup and 3 measured iterations"
    assert len(result.iterations) == 3 and result.summary == recompute_summary(result)
    measurement = result.phases.measurement
    assert measurement is not None
    assert (measurement.policy, measurement.iterations, measurement.stop_reason) == ("fixed", 3, STOP_INTERRUPTED)
    assert measurement.relative_precision is None  # a stopped loop reports no precision it did not compute
    assert result.phases.warmup is not None and result.phases.warmup.stop_reason == "fixed count"
    # it saves and loads like any result (the status is part of the schema)
    assert load_result(save_result(result, tmp_path / "r.json")) == result
    # the hook saw both stages start and end, also the interrupted one
    assert ("started", STAGE_WARMUP, 1) in hook.events and ("finished", STAGE_WARMUP, None) in hook.events
    assert ("started", STAGE_MEASUREMENT, 50) in hook.events and hook.events[-1] == (
        "finished",
        STAGE_MEASUREMENT,
        None,
    )


def test_progress_reaches_the_hook_and_never_the_result(fast_config_fields: dict[str, object]) -> None:
    hook = RecordingHook()
    result = tokbench.run(BenchmarkConfig(**fast_config_fields), progress=hook, device_warmup_s=0.01)  # type: ignore[arg-type]
    assert result.ok, result.reason
    assert hook.events == [
        ("started", STAGE_LOAD, None),  # stages without a count are shown too (issue 25)
        ("finished", STAGE_LOAD, None),
        ("started", STAGE_COLD_CALL, None),
        ("finished", STAGE_COLD_CALL, None),
        ("started", STAGE_WARMUP, 1),
        ("advanced", STAGE_WARMUP, 1),
        ("finished", STAGE_WARMUP, None),
        ("started", STAGE_MEASUREMENT, 2),
        ("advanced", STAGE_MEASUREMENT, 1),
        ("advanced", STAGE_MEASUREMENT, 2),
        ("finished", STAGE_MEASUREMENT, None),
    ]
    assert "progress" not in str(result.to_dict()).lower()


@pytest.mark.parametrize("continuous_batching", [False, True])
def test_backends_generate_exactly_the_tokens_asked(
    fast_config_fields: dict[str, object], continuous_batching: bool
) -> None:
    fields = {**fast_config_fields, "batch_size": 2, "dtype": "float32", "continuous_batching": continuous_batching}
    config = BenchmarkConfig(**fields)  # type: ignore[arg-type]
    loaded = load(config)
    shared_max_new_tokens = loaded.generation_config.max_new_tokens
    with benchmark_mode(loaded.model), open_backend(loaded, config, perf_counter_ns) as backend:
        assert (backend.setup is not None) == continuous_batching
        validation = backend.generate_once(decode_sample=True)
        shorter = backend.generate_once(new_tokens=3)  # the profiled generation's path
    assert validation.generated_tokens == (config.new_tokens,) * 2 and validation.sample_token_ids
    assert shorter.generated_tokens == (3, 3) and all(len(row) == 3 for row in shorter.token_timestamps_ns)
    assert loaded.generation_config.max_new_tokens == shared_max_new_tokens  # never changed under the run

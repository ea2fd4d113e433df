"""The runner only orchestrates: load → device warmup → validation → warmup → measurement.

Every way a config can go wrong ends as a result with a status and a reason; ``run`` does not
raise for a bad config or a failing stage, so a caller running many configs always gets one
result per config.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from datetime import datetime, timezone
from typing import Any

from tqdm import tqdm

from tokbench import compat
from tokbench.clock import Clock, monotonic_ns
from tokbench.config import BenchmarkConfig, check_runnable
from tokbench.efficiency import measure_efficiency
from tokbench.environment import capture_environment
from tokbench.errors import ModelMismatchError, UnavailableFeatureError
from tokbench.generation import time_generate
from tokbench.loading import LoadedModel, TokenizerCache, benchmark_mode, load
from tokbench.monitor import PeakMemoryTracker, Sampler
from tokbench.records import GenerationTrace
from tokbench.results import (
    STATUS_FAILED,
    STATUS_OK,
    STATUS_SKIPPED,
    BenchmarkResult,
    CompileRecord,
    Phases,
    summarize_traces,
)
from tokbench.warmup import device_warmup

DEFAULT_DEVICE_WARMUP_S = 0.5

# Accepted config fields whose stage does not exist yet: the result says so instead of implying it ran.
_NOT_YET_IMPLEMENTED = {
    "profile_tokens": "profiling is not implemented in this version: no trace was written",
}

Finish = Callable[..., BenchmarkResult]


def _describe(error: BaseException) -> str:
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _generate(
    loaded: LoadedModel, config: BenchmarkConfig, clock: Clock, decode_sample: bool = False
) -> GenerationTrace:
    return time_generate(
        loaded.model,
        loaded.inputs.input_ids,
        loaded.inputs.attention_mask,
        loaded.generation_config,
        config.new_tokens,
        tokenizer=loaded.tokenizer,
        clock=clock,
        decode_sample=decode_sample,
    )


def _progress(count: int, label: str, enabled: bool) -> Iterable[int]:
    return tqdm(range(count), desc=label, disable=not enabled, leave=False, file=sys.stderr, unit="it")


def _environment() -> dict[str, Any]:
    try:
        environment = capture_environment()
    except Exception as error:  # a broken driver must not cost the measurement its result
        environment = {"capture_error": _describe(error)}
    notes = compat.check_versions()
    if notes:
        environment["compat_warnings"] = notes
    return environment


def _notes(config: BenchmarkConfig) -> tuple[str, ...]:
    notes = []
    if config.profile_tokens:
        notes.append(f"profile_tokens: {_NOT_YET_IMPLEMENTED['profile_tokens']}")
    return tuple(notes)


def run(
    config: BenchmarkConfig,
    model: Any = None,
    tokenizer: Any = None,
    *,
    tokenizers: TokenizerCache | None = None,
    clock: Clock = monotonic_ns,
    progress: bool = True,
    device_warmup_s: float = DEFAULT_DEVICE_WARMUP_S,
) -> BenchmarkResult:
    """Benchmark ``config`` and return its result; a model and tokenizer may be passed in ready-made.

    Pass one ``tokenizers`` cache to many calls to load each model's tokenizer once.
    """
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    environment = _environment()
    notes = _notes(config)

    def finished(status: str, reason: str = "", **fields: Any) -> BenchmarkResult:
        return BenchmarkResult(
            config=config,
            status=status,
            reason=reason,
            environment=environment,
            started_at=started_at,
            notes=notes + tuple(fields.pop("extra_notes", ())),
            **fields,
        )

    try:
        check_runnable(config)
        if config.compile_mode is not None:
            compat.reset_compiler()  # a cold compile every time, not graphs left by an earlier config
        loaded = load(config, tokenizers, model, tokenizer, clock)
    except UnavailableFeatureError as error:
        return finished(STATUS_SKIPPED, str(error))
    except ModelMismatchError as error:
        return finished(STATUS_FAILED, f"the model passed in does not match the config: {error}")
    except ModuleNotFoundError as error:  # an optional package a feature needs is missing
        return finished(STATUS_SKIPPED, f"a package this config needs is missing: {_describe(error)}")
    except Exception as error:
        return finished(STATUS_FAILED, f"loading failed: {_describe(error)}")

    try:
        with benchmark_mode(loaded.model):
            return _measure(config, loaded, clock, progress, device_warmup_s, finished)
    except Exception as error:  # anything _measure did not classify itself
        return finished(STATUS_FAILED, f"measurement failed: {_describe(error)}")


def _measure(
    config: BenchmarkConfig,
    loaded: LoadedModel,
    clock: Clock,
    progress: bool,
    device_warmup_s: float,
    finished: Finish,
) -> BenchmarkResult:
    common: dict[str, Any] = {
        "effective_settings": loaded.effective_settings,
        "model_source": loaded.source.to_dict(),
    }
    try:
        warmup_report = device_warmup(loaded.device, budget_s=device_warmup_s, clock=clock)
    except Exception as error:
        phases = Phases(load=loaded.timings)
        return finished(STATUS_FAILED, f"device warmup failed: {_describe(error)}", phases=phases, **common)
    if config.compile_mode is not None:
        compat.forget_compiled_forward(loaded.model)  # observe this run's own compile
    graphs_before = compat.compiled_graph_count()

    # Validation: one full generation that fails fast; it is also the cold-start record.
    try:
        cold_trace = _generate(loaded, config, clock, decode_sample=True)
    except Exception as error:
        phases = Phases(load=loaded.timings, device_warmup=warmup_report)
        return finished(STATUS_FAILED, f"validation call failed: {_describe(error)}", phases=phases, **common)
    graphs_after_validation = compat.compiled_graph_count()

    warmup_curve_ns: list[int] = []
    traces: list[GenerationTrace] = []
    # Monitoring: backends opened here (outside the measurement), sampling only around the measured loop.
    sampler = Sampler.for_device(loaded.device, config.monitor_interval_ms, clock) if config.monitor else None
    tracker = PeakMemoryTracker(loaded.device) if config.monitor else None
    try:
        for _ in _progress(config.warmup_iterations, "Warmup", progress):
            warmup_curve_ns.append(_generate(loaded, config, clock).e2e_ns)
        graphs_after_warmup = compat.compiled_graph_count()
        generate_once = lambda: _generate(loaded, config, clock)  # noqa: E731
        measured_once = tracker.wrap(generate_once) if tracker is not None else generate_once
        measurement_start_ns = clock()
        with sampler if sampler is not None else nullcontext():
            for _ in _progress(config.measurement_iterations, "Measure", progress):
                traces.append(measured_once())
        measurement_end_ns = clock()
    except Exception as error:
        common.update(_monitoring(sampler, tracker))
        failure = f"generation failed after {len(warmup_curve_ns)} warmup and {len(traces)} measured iterations: "
        phases = Phases(
            load=loaded.timings,
            device_warmup=warmup_report,
            cold_call=cold_trace,
            warmup_curve_ns=tuple(warmup_curve_ns),
        )
        return finished(STATUS_FAILED, failure + _describe(error), phases=phases, iterations=tuple(traces), **common)
    finally:
        if sampler is not None:
            sampler.close()  # idempotent; releases the vendor libraries if measurement never started
    common.update(_monitoring(sampler, tracker))

    compile_record = CompileRecord(
        requested=config.compile_mode is not None,
        forward_compiled=compat.generate_used_compiled_forward(loaded.model),
        graphs_before=graphs_before,
        graphs_after_validation=graphs_after_validation,
        graphs_after_warmup=graphs_after_warmup,
        graphs_after_measurement=compat.compiled_graph_count(),
    )
    phases = Phases(
        load=loaded.timings,
        device_warmup=warmup_report,
        cold_call=cold_trace,
        warmup_curve_ns=tuple(warmup_curve_ns),
        measurement_wall_ns=measurement_end_ns - measurement_start_ns,
        compile=compile_record,
    )
    if compile_record.requested and not compile_record.compiled:
        reason = "torch.compile was requested but generate ran the model's forward uncompiled"
        return finished(STATUS_FAILED, reason, phases=phases, iterations=tuple(traces), **common)
    try:
        summary = summarize_traces(traces)
    except ValueError as error:  # e.g. a zero-length interval from a broken clock
        reason = f"metrics could not be computed from the raw stamps: {_describe(error)}"
        return finished(STATUS_FAILED, reason, phases=phases, iterations=tuple(traces), **common)
    if config.monitor:
        common.update(_efficiency(config, loaded, traces, tracker, sampler))
    return finished(STATUS_OK, phases=phases, iterations=tuple(traces), summary=summary, **common)


def _monitoring(sampler: Sampler | None, tracker: PeakMemoryTracker | None) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if sampler is not None:
        fields["monitor"] = sampler.record
    if tracker is not None:
        fields["memory_peaks"] = tuple(tracker.peaks)
    return fields


def _efficiency(
    config: BenchmarkConfig,
    loaded: LoadedModel,
    traces: list[GenerationTrace],
    tracker: PeakMemoryTracker | None,
    sampler: Sampler | None,
) -> dict[str, Any]:
    try:
        report = measure_efficiency(
            loaded.model,
            loaded.device,
            config.dtype,
            config.batch_size,
            config.sequence_length,
            config.new_tokens,
            traces,
            tracker.peaks if tracker is not None else (),
            sampler.record if sampler is not None else None,
        )
    except Exception as error:  # e.g. a model config without the usual attention fields
        return {"extra_notes": (f"efficiency: not computed: {_describe(error)}",)}
    return {"efficiency": report}

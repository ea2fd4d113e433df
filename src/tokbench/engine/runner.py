"""The runner only orchestrates: load → device warmup → validation → warmup → measurement.

Every way a config can go wrong ends as a result with a status and a reason; ``run`` does not
raise for a bad config or a failing stage, so a caller running many configs always gets one
result per config.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tokbench import compat
from tokbench.analysis.efficiency import EfficiencyReport, measure_efficiency
from tokbench.clock import Clock, monotonic_ns
from tokbench.config import BenchmarkConfig, check_runnable
from tokbench.engine import profiling
from tokbench.engine.continuous import ContinuousBatchingSession
from tokbench.engine.generation import time_generate
from tokbench.engine.loading import LoadedModel, TokenizerCache, benchmark_mode, load, record_output_fingerprint
from tokbench.engine.policy import MeasurementPlan, WarmupPlan, measure, warm_up
from tokbench.engine.warmup import device_warmup
from tokbench.errors import ModelMismatchError, UnavailableFeatureError
from tokbench.hardware.environment import capture_environment
from tokbench.hardware.monitor import PeakMemoryTracker, Sampler
from tokbench.quant.kernels import KernelUnavailableError
from tokbench.schema.records import GenerationTrace, ProfileRecord
from tokbench.schema.results import (
    STATUS_FAILED,
    STATUS_OK,
    STATUS_SKIPPED,
    BenchmarkResult,
    CompileRecord,
    Phases,
    summarize_traces,
)

DEFAULT_DEVICE_WARMUP_S = 0.5

Finish = Callable[..., BenchmarkResult]


def _describe(error: BaseException) -> str:
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _generate(
    loaded: LoadedModel,
    config: BenchmarkConfig,
    clock: Clock,
    decode_sample: bool = False,
    session: ContinuousBatchingSession | None = None,
) -> GenerationTrace:
    if session is not None:  # continuous batching: the manager built once before validation, reused
        return session.generate_once(decode_sample=decode_sample)
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


def _environment() -> dict[str, Any]:
    try:
        environment = capture_environment()
    except Exception as error:  # a broken driver must not cost the measurement its result
        environment = {"capture_error": _describe(error)}
    notes = compat.check_versions()
    if notes:
        environment["compat_warnings"] = notes
    return environment


def run(
    config: BenchmarkConfig,
    model: Any = None,
    tokenizer: Any = None,
    *,
    tokenizers: TokenizerCache | None = None,
    clock: Clock = monotonic_ns,
    progress: bool = True,
    device_warmup_s: float = DEFAULT_DEVICE_WARMUP_S,
    profile_path: str | Path | None = None,
) -> BenchmarkResult:
    """Benchmark ``config`` and return its result; a model and tokenizer may be passed in ready-made.

    Pass one ``tokenizers`` cache to many calls to load each model's tokenizer once. With
    ``profile_tokens`` set, the profiler trace goes to ``profile_path`` (default: tokbench-results/).
    """
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    environment = _environment()

    def finished(status: str, reason: str = "", extra_notes: tuple[str, ...] = (), **fields: Any) -> BenchmarkResult:
        return BenchmarkResult(
            config=config,
            status=status,
            reason=reason,
            environment=environment,
            started_at=started_at,
            notes=extra_notes,
            **fields,
        )

    try:
        check_runnable(config)
        if config.compile_mode is not None:
            compat.reset_compiler()  # a cold compile every time, not graphs left by an earlier config
        loaded = load(config, tokenizers, model, tokenizer, clock)
    except (UnavailableFeatureError, KernelUnavailableError) as error:
        return finished(STATUS_SKIPPED, str(error))
    except ModelMismatchError as error:
        return finished(STATUS_FAILED, f"the model passed in does not match the config: {error}")
    except ModuleNotFoundError as error:  # an optional package a feature needs is missing
        return finished(STATUS_SKIPPED, f"a package this config needs is missing: {_describe(error)}")
    except Exception as error:
        return finished(STATUS_FAILED, f"loading failed: {_describe(error)}")

    profile_target = Path(profile_path) if profile_path else profiling.default_trace_path(config.name)
    try:
        with benchmark_mode(loaded.model), ExitStack() as resources:
            return _measure(config, loaded, clock, progress, device_warmup_s, finished, resources, profile_target)
    except Exception as error:  # anything _measure did not classify itself
        return finished(STATUS_FAILED, f"measurement failed: {_describe(error)}")


def _measure(
    config: BenchmarkConfig,
    loaded: LoadedModel,
    clock: Clock,
    progress: bool,
    device_warmup_s: float,
    finished: Finish,
    resources: ExitStack,
    profile_path: Path,
) -> BenchmarkResult:
    common: dict[str, Any] = {
        "effective_settings": loaded.effective_settings,
        "model_source": loaded.source.to_dict(),
        "quantization": loaded.quantization,
    }
    try:
        warmup_report = device_warmup(loaded.device, budget_s=device_warmup_s, clock=clock)
    except Exception as error:
        phases = Phases(load=loaded.timings)
        return finished(STATUS_FAILED, f"device warmup failed: {_describe(error)}", phases=phases, **common)
    session: ContinuousBatchingSession | None = None
    if config.continuous_batching:  # built, warmed up and timed once, outside every iteration
        try:
            session = resources.enter_context(ContinuousBatchingSession.open(loaded, config, clock))
        except UnavailableFeatureError as error:
            return finished(STATUS_SKIPPED, str(error), phases=Phases(load=loaded.timings), **common)
        except Exception as error:
            phases = Phases(load=loaded.timings, device_warmup=warmup_report)
            reason = f"continuous-batching setup failed: {_describe(error)}"
            return finished(STATUS_FAILED, reason, phases=phases, **common)
    cb_setup = session.setup if session is not None else None
    if config.compile_mode is not None:
        compat.forget_compiled_forward(loaded.model)  # observe this run's own compile
    graphs_before = compat.compiled_graph_count()

    # Validation: one full generation that fails fast; it is also the cold-start record.
    try:
        cold_trace = _generate(loaded, config, clock, decode_sample=True, session=session)
    except Exception as error:
        phases = Phases(load=loaded.timings, device_warmup=warmup_report, continuous_batching_setup=cb_setup)
        return finished(STATUS_FAILED, f"validation call failed: {_describe(error)}", phases=phases, **common)
    graphs_after_validation = compat.compiled_graph_count()
    record_output_fingerprint(loaded, cold_trace.sample_token_ids)  # quantized only: tokens vs the unquantized

    warmup_curve_ns: list[int] = []
    traces: list[GenerationTrace] = []

    def generate_once() -> GenerationTrace:
        return _generate(loaded, config, clock, session=session)

    # Monitoring: backends opened here (outside the measurement), sampling only around the measured loop.
    sampler = Sampler.for_device(loaded.device, config.monitor_interval_ms, clock) if config.monitor else None
    tracker = PeakMemoryTracker(loaded.device) if config.monitor else None
    try:
        warmup_record = warm_up(
            generate_once,
            WarmupPlan.from_config(config),
            clock=clock,
            graph_count=compat.compiled_graph_count,
            curve_into=warmup_curve_ns,
            progress=progress,
        )
        graphs_after_warmup = compat.compiled_graph_count()
        measured_once = tracker.wrap(generate_once) if tracker is not None else generate_once
        measurement_start_ns = clock()
        plan = MeasurementPlan.from_config(config)
        with sampler if sampler is not None else nullcontext():
            measurement_record = measure(measured_once, plan, clock=clock, into=traces, progress=progress)
        measurement_end_ns = clock()
    except Exception as error:
        common.update(_monitoring(sampler, tracker))
        failure = f"generation failed after {len(warmup_curve_ns)} warmup and {len(traces)} measured iterations: "
        phases = Phases(
            load=loaded.timings,
            device_warmup=warmup_report,
            cold_call=cold_trace,
            warmup_curve_ns=tuple(warmup_curve_ns),
            continuous_batching_setup=cb_setup,
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
        continuous_batching_setup=cb_setup,
        warmup=warmup_record,
        measurement=measurement_record,
    )
    if compile_record.requested and not compile_record.compiled:
        reason = "torch.compile was requested but generate ran the model's forward uncompiled"
        return finished(STATUS_FAILED, reason, phases=phases, iterations=tuple(traces), **common)
    try:
        summary = summarize_traces(traces)
    except ValueError as error:  # e.g. a zero-length interval from a broken clock
        reason = f"metrics could not be computed from the raw stamps: {_describe(error)}"
        return finished(STATUS_FAILED, reason, phases=phases, iterations=tuple(traces), **common)
    efficiency, efficiency_notes = _efficiency(config, loaded, traces, tracker, sampler)
    profile, profile_notes = _profile(config, loaded, clock, session, profile_path)
    return finished(
        STATUS_OK,
        phases=phases,
        iterations=tuple(traces),
        summary=summary,
        profile=profile,
        efficiency=efficiency,
        extra_notes=efficiency_notes + profile_notes,
        **common,
    )


def _profile(
    config: BenchmarkConfig,
    loaded: LoadedModel,
    clock: Clock,
    session: ContinuousBatchingSession | None,
    trace_path: Path,
) -> tuple[ProfileRecord | None, tuple[str, ...]]:
    """One extra generation of ``profile_tokens`` tokens under the profiler, after measurement.

    A failure here leaves the measurement intact: the result stays ok and notes why there is no trace.
    """
    if not config.profile_tokens:
        return None, ()
    tokens = config.profile_tokens

    def generate() -> GenerationTrace:
        if session is not None:
            return session.generate_once(new_tokens=tokens)
        generation_config = copy.deepcopy(loaded.generation_config)
        generation_config.max_new_tokens = tokens
        inputs = loaded.inputs
        return time_generate(
            loaded.model, inputs.input_ids, inputs.attention_mask, generation_config, tokens, clock=clock
        )

    try:
        return profiling.profile_generation(generate, loaded.model, loaded.device, tokens, trace_path, clock), ()
    except Exception as error:
        return None, (f"profile_tokens: profiling failed, no trace was written: {_describe(error)}",)


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
) -> tuple[EfficiencyReport | None, tuple[str, ...]]:
    """Memory breakdown and MBU / MFU; a failure leaves the measurement intact and says why in a note."""
    if not config.monitor:
        return None, ()
    try:
        report = measure_efficiency(
            loaded.model,
            loaded.device,
            config.dtype,
            config.batch_size,
            # Prompt positions per row: the padded length on the plain path, the mean with continuous batching.
            config.prefill_rows // config.batch_size,
            config.new_tokens,
            traces,
            tracker.peaks if tracker is not None else (),
            sampler.record if sampler is not None else None,
        )
    except Exception as error:  # e.g. a model config without the usual attention fields
        return None, (f"efficiency: not computed: {_describe(error)}",)
    return report, ()

"""The runner only orchestrates: load → device warmup → backend → validation → warmup → measurement.

Every way a config can go wrong ends as a result with a status and a reason; ``run`` does not
raise for a bad config or a failing stage, so a caller running many configs always gets one
result per config. Each stage hands its output to a ``RunRecorder`` as it finishes, so every exit
is one ``recorder.finish(status, reason)`` and keeps everything measured before it. An interruption
(SIGINT, or SIGTERM under ``interrupts.interruptible``) is the one exception that leaves ``run``:
``RunInterrupted``, a ``KeyboardInterrupt`` that carries the ``interrupted`` result.
"""

from __future__ import annotations

import signal
from contextlib import ExitStack, nullcontext
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tokbench.clock import Clock, perf_counter_ns
from tokbench.config import BenchmarkConfig, require_config
from tokbench.engine import compat, profiling
from tokbench.engine.backends import GenerationBackend, backend_name, open_backend
from tokbench.engine.efficiency import measure_efficiency
from tokbench.engine.gradmode import run_grad_mode
from tokbench.engine.loading import LoadedModel, TokenizerCache, benchmark_mode, load, quantization_fingerprint
from tokbench.engine.policy import MeasurementGate, MeasurementPlan, WarmupPlan, measure, overrun_note, warm_up
from tokbench.engine.preflight import check_runnable
from tokbench.engine.progress import STAGE_COLD_CALL, STAGE_LOAD, ProgressHook, as_hook, stage
from tokbench.engine.quiet import HeldBack, libraries_quiet, merged
from tokbench.engine.recorder import RunRecorder, describe
from tokbench.errors import ModelMismatchError, UnavailableFeatureError
from tokbench.hardware.environment import capture_environment
from tokbench.hardware.interference import InterferenceWatch
from tokbench.hardware.monitor import PeakMemoryTracker, Sampler
from tokbench.hardware.warmup import device_warmup
from tokbench.interrupts import Interrupted, signal_of
from tokbench.quant.kernels import KernelUnavailableError
from tokbench.schema.comparison import OutputFingerprint
from tokbench.schema.efficiency import EfficiencyReport
from tokbench.schema.environment import EnvironmentRecord
from tokbench.schema.records import GenerationTrace, ProfileRecord
from tokbench.schema.results import (
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    STATUS_OK,
    STATUS_SKIPPED,
    BenchmarkResult,
    CompileRecord,
)

DEFAULT_DEVICE_WARMUP_S = 0.5

_describe = describe  # the name the rest of the engine used before the recorder owned it


class RunInterrupted(Interrupted):
    """The run was stopped by a signal; ``result`` is its ``interrupted`` result with what was measured."""

    def __init__(self, result: BenchmarkResult, signal_number: int = signal.SIGINT) -> None:
        super().__init__(signal_number)
        self.result = result


def _environment() -> EnvironmentRecord:
    try:
        environment = capture_environment()
    except Exception as error:  # a broken driver must not cost the measurement its result
        environment = EnvironmentRecord(capture_error=_describe(error))
    return replace(environment, compat_warnings=tuple(compat.check_versions()))


def run(
    config: BenchmarkConfig,
    model: Any = None,
    tokenizer: Any = None,
    *,
    tokenizers: TokenizerCache | None = None,
    clock: Clock = perf_counter_ns,
    progress: ProgressHook | bool | None = None,
    device_warmup_s: float = DEFAULT_DEVICE_WARMUP_S,
    profile_path: str | Path | None = None,
    gate: MeasurementGate | None = None,
) -> BenchmarkResult:
    """Benchmark ``config`` and return its result; a model and tokenizer may be passed in ready-made.

    Pass one ``tokenizers`` cache to many calls to load each model's tokenizer once. With
    ``profile_tokens`` set, the profiler trace goes to ``profile_path`` (default: tokbench-results/).
    ``progress``: a ``ProgressHook`` told of every warmup / measured iteration (the engine draws nothing;
    booleans are accepted and mean no hook). Raises ``RunInterrupted`` (a ``KeyboardInterrupt``) with the
    ``interrupted`` result on Ctrl-C, or on SIGTERM inside ``interrupts.interruptible()``. ``gate`` paces the
    measured calls (``policy.MeasurementGate``; default: the measurement policy alone).
    """
    require_config(config, "tokbench.engine.runner.run")  # a wrong type is a programming error: raise, not a result
    recorder = RunRecorder(config, datetime.now(timezone.utc).isoformat(timespec="seconds"), clock)
    with libraries_quiet() as held:  # library output goes into the result, not onto the terminal
        try:
            recorder.environment = _environment()
            result = _run(recorder, model, tokenizer, tokenizers, clock, progress, device_warmup_s, profile_path, gate)
        except KeyboardInterrupt as interrupt:
            number = signal_of(interrupt)
            stage = f"after {len(recorder.warmup_curve_ns)} warmup and {len(recorder.traces)} measured iterations"
            result = recorder.finish(STATUS_INTERRUPTED, f"interrupted by {signal.Signals(number).name} {stage}")
            raise RunInterrupted(with_library_output(result, held), number) from None
    return with_library_output(result, held)


def with_library_output(result: BenchmarkResult, held: HeldBack, *, notes: bool = True) -> BenchmarkResult:
    """``result`` with what the libraries said while it was made (``engine.quiet``): every message in
    ``library_output``, and (``notes``) the warnings that came while it ran as notes, since they may concern
    the measurement."""
    added = tuple(f"library {note}" for note in held.warning_notes()) if notes else ()
    return replace(
        result,
        notes=(*result.notes, *added),
        library_output=merged(result.library_output, held.messages()),
    )


def _run(
    recorder: RunRecorder,
    model: Any,
    tokenizer: Any,
    tokenizers: TokenizerCache | None,
    clock: Clock,
    progress: ProgressHook | bool | None,
    device_warmup_s: float,
    profile_path: str | Path | None,
    gate: MeasurementGate | None = None,
) -> BenchmarkResult:
    config = recorder.config
    try:
        check_runnable(config)
        if config.compile_mode is not None:
            compat.reset_compiler()  # a cold compile every time, not graphs left by an earlier config
        with stage(as_hook(progress), STAGE_LOAD, None):  # weights, quantization and tuning: can take minutes
            loaded = load(config, tokenizers, model, tokenizer, clock)
    except (UnavailableFeatureError, KernelUnavailableError) as error:
        return recorder.finish(STATUS_SKIPPED, str(error))
    except ModelMismatchError as error:
        return recorder.finish(STATUS_FAILED, f"the model passed in does not match the config: {error}")
    except ModuleNotFoundError as error:  # an optional package a feature needs is missing
        return recorder.finish(STATUS_SKIPPED, f"a package this config needs is missing: {_describe(error)}")
    except Exception as error:
        return recorder.finish(STATUS_FAILED, f"loading failed: {_describe(error)}")
    recorder.loaded(loaded.timings, loaded.effective_settings, loaded.source, loaded.quantization)
    _, grad_mode_fallback = run_grad_mode(config)
    if grad_mode_fallback:
        recorder.note(f"grad mode: {grad_mode_fallback}")

    profile_target = Path(profile_path) if profile_path else profiling.default_trace_path(config.name)
    try:
        with benchmark_mode(loaded.model), ExitStack() as resources:
            return _measure(recorder, loaded, clock, progress, device_warmup_s, resources, profile_target, gate)
    except Exception as error:  # anything _measure did not classify itself: what was measured stays
        return recorder.finish(STATUS_FAILED, f"measurement failed: {_describe(error)}")


def _measure(
    recorder: RunRecorder,
    loaded: LoadedModel,
    clock: Clock,
    progress: ProgressHook | bool | None,
    device_warmup_s: float,
    resources: ExitStack,
    profile_path: Path,
    gate: MeasurementGate | None = None,
) -> BenchmarkResult:
    config = recorder.config
    try:
        recorder.device_warmup = device_warmup(loaded.device, budget_s=device_warmup_s, clock=clock)
    except Exception as error:
        return recorder.finish(STATUS_FAILED, f"device warmup failed: {_describe(error)}")
    try:  # a backend with a setup (continuous batching) is built, warmed up and timed once, outside every iteration
        backend: GenerationBackend = resources.enter_context(open_backend(loaded, config, clock))
    except UnavailableFeatureError as error:
        return recorder.finish(STATUS_SKIPPED, str(error))
    except Exception as error:
        return recorder.finish(STATUS_FAILED, f"{backend_name(config)} setup failed: {_describe(error)}")
    recorder.continuous_batching_setup = backend.setup
    if config.compile_mode is not None:
        compat.forget_compiled_forward(loaded.model)  # observe this run's own compile
    graphs_before = compat.compiled_graph_count()

    # Validation: one full generation that fails fast; it is also the cold-start record (a compile happens here).
    try:
        with stage(as_hook(progress), STAGE_COLD_CALL, None):
            recorder.cold_call = backend.generate_once(decode_sample=True)
    except Exception as error:
        return recorder.finish(STATUS_FAILED, f"validation call failed: {_describe(error)}")
    graphs_after_validation = compat.compiled_graph_count()
    if recorder.cold_call.sample_token_ids:  # what the model generated: compare flags a change of output
        recorder.output_fingerprint = OutputFingerprint.of(recorder.cold_call.sample_token_ids)
    fingerprint = quantization_fingerprint(loaded, recorder.cold_call.sample_token_ids)  # tokens vs unquantized
    if fingerprint is not None:
        recorder.quantization = replace(recorder.quantization, fingerprint=fingerprint)

    def generate_once() -> GenerationTrace:
        return backend.generate_once()

    # Monitoring: backends opened here (outside the measurement), sampling only around the measured loop.
    sampler = Sampler.for_device(loaded.device, config.monitor_interval_ms, clock) if config.monitor else None
    tracker = PeakMemoryTracker(loaded.device) if config.monitor else None
    # Always on, monitor or not: a busy machine flags the result (host_busy); a duet partner's calls are no
    # interference (they run between ours by design).
    watch = InterferenceWatch(companion_pids=gate.companion_pids if gate is not None else ())
    try:
        warmup_plan = WarmupPlan.from_config(config)
        recorder.warmup_started(warmup_plan)
        recorder.warmup = warm_up(
            generate_once,
            warmup_plan,
            clock=clock,
            graph_count=compat.compiled_graph_count,
            curve_into=recorder.warmup_curve_ns,
            progress=progress,
        )
        graphs_after_warmup = compat.compiled_graph_count()
        measured_once = watch.wrap(tracker.wrap(generate_once) if tracker is not None else generate_once)
        plan = MeasurementPlan.from_config(config)
        recorder.measurement_started(plan)
        last_call_ns = (recorder.warmup_curve_ns or [recorder.cold_call.e2e_ns])[-1]
        with sampler if sampler is not None else nullcontext():
            watch.start()
            record = measure(measured_once, plan, clock=clock, into=recorder.traces, progress=progress,
                             expected_call_ns=last_call_ns, gate=gate)  # fmt: skip
        recorder.measurement_finished(record)
        recorder.note(*_overruns(recorder, warmup_plan, plan))
    except BaseException as error:  # a failure, or an interruption: the samples so far go with the result
        _stop_monitoring(recorder, sampler, tracker, watch)
        if not isinstance(error, Exception):
            raise
        warmed, measured = len(recorder.warmup_curve_ns), len(recorder.traces)
        failure = f"generation failed after {warmed} warmup and {measured} measured iterations: "
        return recorder.finish(STATUS_FAILED, failure + _describe(error))
    _stop_monitoring(recorder, sampler, tracker, watch)

    compile_record = CompileRecord(
        requested=config.compile_mode is not None,
        forward_compiled=compat.generate_used_compiled_forward(loaded.model),
        graphs_before=graphs_before,
        graphs_after_validation=graphs_after_validation,
        graphs_after_warmup=graphs_after_warmup,
        graphs_after_measurement=compat.compiled_graph_count(),
    )
    recorder.compile = compile_record
    if compile_record.requested and not compile_record.compiled:
        reason = "torch.compile was requested but generate ran the model's forward uncompiled"
        return recorder.finish(STATUS_FAILED, reason)
    recorder.efficiency, efficiency_notes = _efficiency(config, loaded, recorder.traces, tracker, sampler)
    recorder.note(*efficiency_notes)
    recorder.profile, profile_notes = _profile(config, loaded, clock, backend, profile_path)
    recorder.note(*profile_notes)
    return recorder.finish(STATUS_OK)


def _overruns(recorder: RunRecorder, warmup_plan: WarmupPlan, plan: MeasurementPlan) -> tuple[str, ...]:
    """Notes for auto stages that ran well past their budgets (their minimum iterations were slow)."""
    notes = []
    warmup, measurement = recorder.warmup, recorder.measurement
    if warmup is not None and warmup_plan.iterations is None:
        notes.append(overrun_note("warmup", warmup_plan.budget_s, warmup.elapsed_ns, warmup.iterations))
    if measurement is not None and plan.iterations is None:
        notes.append(overrun_note("measurement", plan.budget_s, measurement.elapsed_ns, measurement.iterations))
    return tuple(note for note in notes if note)


def _profile(
    config: BenchmarkConfig,
    loaded: LoadedModel,
    clock: Clock,
    backend: GenerationBackend,
    trace_path: Path,
) -> tuple[ProfileRecord | None, tuple[str, ...]]:
    """One extra generation of ``profile_tokens`` tokens under the profiler, after measurement.

    A failure here leaves the measurement intact: the result stays ok and notes why there is no trace.
    """
    if not config.profile_tokens:
        return None, ()
    tokens = config.profile_tokens

    def generate() -> GenerationTrace:
        return backend.generate_once(new_tokens=tokens)

    try:
        return profiling.profile_generation(generate, loaded.model, loaded.device, tokens, trace_path, clock), ()
    except Exception as error:
        return None, (f"profile_tokens: profiling failed, no trace was written: {_describe(error)}",)


def _stop_monitoring(
    recorder: RunRecorder, sampler: Sampler | None, tracker: PeakMemoryTracker | None, watch: InterferenceWatch
) -> None:
    if sampler is not None:
        sampler.close()  # idempotent; releases the vendor libraries if measurement never started
        recorder.monitor = sampler.record
    if tracker is not None:
        recorder.memory_peaks = tuple(tracker.peaks)
    try:
        recorder.interference = watch.record(recorder.monitor)
    except Exception as error:  # the kernel's counters unreadable here: no verdict, and the result says so
        recorder.note(f"interference: not assessed: {_describe(error)}")


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

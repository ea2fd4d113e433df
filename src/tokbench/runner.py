"""The runner only orchestrates: load → device warmup → validation → warmup → measurement.

Every way a config can go wrong ends as a result with a status and a reason; nothing here
raises for a bad config, so a caller running many configs always gets one result per config.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from tqdm import tqdm

from tokbench import compat
from tokbench.clock import Clock, monotonic_ns
from tokbench.config import BenchmarkConfig, check_runnable
from tokbench.environment import capture_environment
from tokbench.errors import UnavailableFeatureError
from tokbench.generation import GenerationTrace, time_generate
from tokbench.loading import LoadedModel, TokenizerCache, load
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
    """Benchmark ``config`` and return its result; a model and tokenizer may be passed in ready-made."""
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    environment = capture_environment()
    compat_notes = compat.check_versions()
    if compat_notes:
        environment["compat_warnings"] = compat_notes

    def finished(status: str, reason: str = "", **fields: Any) -> BenchmarkResult:
        return BenchmarkResult(
            config=config, status=status, reason=reason, environment=environment, started_at=started_at, **fields
        )

    original_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    try:
        check_runnable(config)
        if config.compile_mode is not None:
            compat.reset_compiler()  # a cold compile every time, not graphs left by an earlier config
        loaded = load(config, tokenizers, model, tokenizer, clock)
    except UnavailableFeatureError as error:
        return finished(STATUS_SKIPPED, str(error))
    except ImportError as error:  # an optional package a feature needs is missing
        return finished(STATUS_SKIPPED, f"a package this config needs is missing: {_describe(error)}")
    except Exception as error:
        return finished(STATUS_FAILED, f"loading failed: {_describe(error)}")

    try:
        return _measure(config, loaded, clock, progress, device_warmup_s, finished)
    finally:
        if model is not None and getattr(model, "generation_config", None) is not None:
            model.generation_config.eos_token_id = original_eos  # leave a caller's model as it was


def _measure(
    config: BenchmarkConfig,
    loaded: LoadedModel,
    clock: Clock,
    progress: bool,
    device_warmup_s: float,
    finished: Any,
) -> BenchmarkResult:
    common: dict[str, Any] = {
        "effective_settings": loaded.effective_settings,
        "model_source": loaded.source.to_dict(),
    }
    warmup_report = device_warmup(loaded.device, budget_s=device_warmup_s, clock=clock)
    graphs_before = compat.compile_counters().get("unique_graphs", 0)

    # Validation: one full generation that fails fast; it is also the cold-start figure.
    try:
        cold_trace = _generate(loaded, config, clock, decode_sample=True)
    except Exception as error:
        phases = Phases(load=loaded.timings, device_warmup=warmup_report)
        return finished(STATUS_FAILED, f"validation call failed: {_describe(error)}", phases=phases, **common)
    graphs_after_validation = compat.compile_counters().get("unique_graphs", 0)

    warmup_curve_ns: list[int] = []
    traces: list[GenerationTrace] = []
    measurement_start_ns = measurement_end_ns = None
    graphs_after_warmup = graphs_after_validation
    try:
        for _ in _progress(config.warmup_iterations, "Warmup", progress):
            warmup_curve_ns.append(_generate(loaded, config, clock).e2e_ns)
        graphs_after_warmup = compat.compile_counters().get("unique_graphs", 0)
        measurement_start_ns = clock()
        for _ in _progress(config.measurement_iterations, "Measure", progress):
            traces.append(_generate(loaded, config, clock))
        measurement_end_ns = clock()
    except Exception as error:
        failure = f"generation failed after {len(warmup_curve_ns)} warmup and {len(traces)} measured iterations: "
        phases = Phases(
            load=loaded.timings,
            device_warmup=warmup_report,
            cold_call=cold_trace,
            warmup_curve_ns=tuple(warmup_curve_ns),
        )
        return finished(STATUS_FAILED, failure + _describe(error), phases=phases, iterations=tuple(traces), **common)

    compile_record = CompileRecord(
        requested=config.compile_mode is not None,
        graphs_before=graphs_before,
        graphs_after_validation=graphs_after_validation,
        graphs_after_warmup=graphs_after_warmup,
        graphs_after_measurement=compat.compile_counters().get("unique_graphs", 0),
    )
    phases = Phases(
        load=loaded.timings,
        device_warmup=warmup_report,
        cold_call=cold_trace,
        warmup_curve_ns=tuple(warmup_curve_ns),
        measurement_wall_ns=measurement_end_ns - measurement_start_ns,
        compile=compile_record,
    )
    reason = ""
    if compile_record.requested and not compile_record.compiled:
        reason = "torch.compile was requested but dynamo compiled no graph: this result ran eagerly"
        return finished(STATUS_FAILED, reason, phases=phases, iterations=tuple(traces), **common)
    return finished(
        STATUS_OK,
        reason,
        phases=phases,
        iterations=tuple(traces),
        summary=summarize_traces(traces),
        **common,
    )

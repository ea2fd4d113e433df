"""One serving measurement end to end, and the sweeps built from it: endpoint in, ``BenchmarkResult`` out.

``run_serving(ServingRun)`` probes the endpoint (``preflight``), builds the requests (``workload``), offers the
load (``load``), and records every request with the run's figures: a result like an in-process one (its config
names the served model and the request shape; its iterations are blocks of requests; its summary is
``analysis.summarize.summarize_traces``), plus the ``serving`` record. A ``ServingRun`` is self-contained, so
any driver can run it: the CLI, the sweeps below, ``interleaved`` (two endpoints in ABBA order, what
``serve-bench --versus`` runs), or an A/B runner in ``sweep`` handed ``run_serving`` by the CLI (``sweep`` may not
import ``serving``: they are sibling layers).
"""

from __future__ import annotations

import asyncio
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tokbench.analysis.serving import (
    SaturationPoint,
    SaturationVerdict,
    block_size_for,
    invalid_reason,
    queue_growth,
    request_traces,
    saturation_verdict,
    serving_summary,
)
from tokbench.analysis.summarize import summarize_traces
from tokbench.clock import Clock, perf_counter_ns
from tokbench.config import BenchmarkConfig
from tokbench.errors import InputShapeError, TokbenchError
from tokbench.hardware.environment import capture_environment_or_reason
from tokbench.schema.records import EffectiveSettings, ModelSource
from tokbench.schema.results import STATUS_FAILED, STATUS_OK, STATUS_SKIPPED, BenchmarkResult
from tokbench.schema.serving import (
    EndpointCapabilities,
    RequestRecord,
    ServerRecord,
    ServingRecord,
    ServingSettings,
    SloSpec,
)
from tokbench.serving.client import EventTokenCounter, RequestSpec, tokenizer_counter, word_counter
from tokbench.serving.clients import run_in_clients
from tokbench.serving.http import Endpoint, RequestFailed
from tokbench.serving.load import LoadPlan, run_requests, to_records
from tokbench.serving.preflight import PROBE_TOKENS, STREAM_OPTIONS, ProbeNeeds, check_endpoint
from tokbench.serving.workload import PromptBuilder, dataset_requests, load_dataset, synthetic_requests

SERVING_DEVICE = "http"  # the device kind of a serving run's workload key: the server's hardware is its own
MOCK_TOKENIZER = "mock-words"  # count the mock's words as tokens (no model tokenizer)


@dataclass(frozen=True)
class ServingRun:
    """Everything one serving measurement needs; ``url`` is the only host contacted."""

    url: str
    settings: ServingSettings
    served_model: str | None = None  # the model name sent in requests (default: the first the server lists)
    tokenizer: str | None = None  # preset / folder / Hub id for exact prompts and token counts; None: words
    slo: SloSpec | None = None
    dataset: str | None = None
    allow_early_stop: bool = False
    server: ServerRecord = field(default_factory=ServerRecord)
    sweep_point: int | None = None
    notes: tuple[str, ...] = ()
    clients: int = 0  # fresh client processes that offer the load (``serving.clients``); 0: this process
    deadline_s: float | None = None  # with clients: end them this many seconds after they started


def _counter_and_builder(run: ServingRun) -> tuple[EventTokenCounter | None, PromptBuilder]:
    if run.tokenizer in (None, MOCK_TOKENIZER):
        return (word_counter if run.tokenizer == MOCK_TOKENIZER else None), PromptBuilder(None, run.settings.api)
    from tokbench.engine.loading import load_tokenizer, resolve_model_source  # transformers: only with a tokenizer

    tokenizer = load_tokenizer(resolve_model_source(run.tokenizer))
    return tokenizer_counter(tokenizer), PromptBuilder(tokenizer, run.settings.api)


def build_specs(run: ServingRun, builder: PromptBuilder) -> list[RequestSpec]:
    settings = run.settings
    if run.dataset:
        rows, _ = load_dataset(run.dataset)
        outputs = settings.output_tokens if settings.output_tokens.kind != "dataset" else None
        return dataset_requests(rows, builder, outputs, settings.requests, settings.warmup_requests, settings.seed)
    return synthetic_requests(builder, settings.input_tokens, settings.output_tokens, settings.requests,
                              settings.warmup_requests, settings.seed)  # fmt: skip


def _config(settings: ServingSettings, specs: Sequence[RequestSpec], iterations: int) -> BenchmarkConfig:
    """The request shape as a config: the served model, one request per call, the prompt and output lengths
    (a distribution's median: the distribution itself is in the serving settings, and in the workload key)."""
    measured = [s for s in specs if not s.warmup] or list(specs)
    inputs = settings.input_tokens
    if inputs.kind == "fixed":
        sequence_length: Any = inputs.value
    elif inputs.kind == "uniform":
        sequence_length = {"distribution": "uniform", "min": inputs.minimum, "max": inputs.maximum,
                           "seed": settings.seed}  # fmt: skip
    else:
        sequence_length = max(1, int(statistics.median(s.prompt_tokens for s in measured)))
    outputs = settings.output_tokens
    new_tokens = outputs.value if outputs.kind == "fixed" else int(statistics.median(s.output_tokens for s in measured))
    label = f"-{settings.label}" if settings.label else ""
    load = settings.describe_load().replace(" req/s", "rps").replace("concurrency ", "c")
    name = f"serve-{settings.model.rstrip('/').split('/')[-1]}-{settings.api}-{load}{label}"
    return BenchmarkConfig(
        model=settings.model, batch_size=1, sequence_length=sequence_length, new_tokens=max(2, int(new_tokens or 2)),
        warmup_iterations=0, measurement_iterations=max(1, iterations), monitor=False, seed=settings.seed,
        name=name.replace(" ", "_"),
    )  # fmt: skip


def _result(
    run: ServingRun, specs: Sequence[RequestSpec], status: str, reason: str, started_at: str,
    capabilities: EndpointCapabilities | None, requests: Sequence[RequestRecord] = (), token_source: str = "none",
    served_model: str = "", notes: Sequence[str] = (), client_processes: int | None = None,
) -> BenchmarkResult:  # fmt: skip
    settings = run.settings
    concurrency_hint = settings.concurrency or 1
    completed = sum(1 for r in requests if r.ok and not r.warmup)
    block = block_size_for(completed, concurrency_hint)
    traces, placement = request_traces(requests, block)
    placed = tuple(
        replace(r, iteration=placement[r.index][0], row=placement[r.index][1]) if r.index in placement else r
        for r in requests
    )
    summary = serving_summary(placed, settings, run.slo) if placed else None
    why_invalid = invalid_reason(summary, settings) if summary is not None else ""
    record = ServingRecord(
        settings=settings, endpoint=Endpoint.parse(run.url).url(""), served_model=served_model or None,
        server=run.server, capabilities=capabilities, requests=placed, token_source=token_source, block_size=block,
        slo=run.slo, summary=summary, valid=not why_invalid, invalid_reason=why_invalid, sweep_point=run.sweep_point,
        client_processes=client_processes,
    )  # fmt: skip
    all_notes = [*run.notes, *notes]
    if settings.input_tokens.kind not in ("fixed", "uniform") or settings.output_tokens.kind != "fixed":
        all_notes.append("config.sequence_length / new_tokens are medians: serving.settings holds the distributions")
    all_notes.append("dtype, attention and the other in-process fields of the config are the server's business: "
                     "they do not describe this run")  # fmt: skip
    source = ModelSource("hub", settings.model) if "/" in settings.model else ModelSource("provided", settings.model)
    return BenchmarkResult(
        config=_config(settings, specs, len(traces)), status=status, reason=reason,
        environment=capture_environment_or_reason(), iterations=traces,
        summary=summarize_traces(traces) if traces else {}, effective_settings=EffectiveSettings(device=SERVING_DEVICE),
        model_source=source, started_at=started_at, notes=tuple(all_notes), serving=record,
    )  # fmt: skip


def run_serving(run: ServingRun, api_key: str | None = None, clock: Clock = perf_counter_ns) -> BenchmarkResult:
    """Probe, load and record one serving measurement. A server that cannot run the workload gives a skipped
    result (with the reason); a run where no request succeeded a failed one; either way every request is kept."""
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    settings = run.settings
    endpoint = Endpoint.parse(run.url)
    counter, builder = _counter_and_builder(run)
    specs = build_specs(run, builder)
    probe_input = min(16, max(4, specs[0].prompt_tokens)) if builder.tokenizer is not None else 8
    try:
        probe = RequestSpec(-1, builder.build(probe_input, 10_000), probe_input, PROBE_TOKENS)
    except InputShapeError:
        probe = RequestSpec(-1, specs[0].prompt, specs[0].prompt_tokens, PROBE_TOKENS)
    needs = ProbeNeeds(settings.api, run.served_model, probe, fixed_output=not run.allow_early_stop,
                       check_prompt_tokens=builder.tokenizer is not None)  # fmt: skip
    try:
        capabilities, served = asyncio.run(check_endpoint(endpoint, needs, api_key, counter, settings.timeout_s, clock))
    except RequestFailed as error:  # unreachable: nothing was measured, and the result says why
        capabilities, served = EndpointCapabilities(api=settings.api, skip_reasons=(f"{error.kind}: {error}",)), ""
    if not settings.model:  # named after what the server serves (the first model it lists, or the one asked)
        settings = replace(settings, model=served or "unnamed-model")
        run = replace(run, settings=settings)
    if capabilities.skip_reasons:
        reason = "; ".join(capabilities.skip_reasons)
        return _result(run, specs, STATUS_SKIPPED, reason, started_at, capabilities, served_model=served)
    options: tuple[tuple[str, bool], ...] = ()
    if "stream_options" not in capabilities.rejected_fields:
        options = tuple(STREAM_OPTIONS.items()) if capabilities.usage_per_chunk else (("include_usage", True),)
    plan = LoadPlan(
        endpoint=endpoint, api=settings.api, model=served, load=settings.load,
        concurrency=settings.concurrency or 1, rate=settings.rate or 1.0, arrival=settings.arrival,
        burstiness=settings.burstiness, seed=settings.seed, timeout_s=settings.timeout_s,
        stall_s=settings.stall_timeout_s, fixed_field=capabilities.fixed_output_field, stream_options=options,
    )  # fmt: skip
    client_of: dict[int, int] | None = None
    processes, notes = None, []
    if run.clients:
        driven = run_in_clients(plan, specs, run.clients, api_key, run.deadline_s)
        outcomes, client_of, processes = driven.outcomes, driven.client_of, driven.processes
        notes = driven.failures
        if processes < run.clients:
            notes.append(f"{processes} client processes, not {run.clients}: no more than the measured requests "
                         "(closed loop: the concurrency) can keep one busy")  # fmt: skip
    else:
        outcomes = run_requests(plan, specs, api_key, clock)
    records, source = to_records(specs, outcomes, counter, client_of)
    measured = [r for r in records if not r.warmup]
    completed = sum(1 for r in measured if r.ok)
    status, reason = STATUS_OK, ""
    if completed == 0:
        kinds = sorted({r.status for r in measured})
        status, reason = STATUS_FAILED, f"no measured request succeeded ({', '.join(kinds)})"
    return _result(run, specs, status, reason, started_at, capabilities, records, source, served, notes, processes)


def failed_run(run: ServingRun, reason: str) -> BenchmarkResult:
    """A failed result for a run that could not start (its server did not come up): nothing was sent."""
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    _, builder = _counter_and_builder(run)
    return _result(run, build_specs(run, builder), STATUS_FAILED, reason, started_at, None)


def check_run(run: ServingRun) -> None:
    """Build the run's requests once, so a tokenizer or dataset that cannot be read is refused before any server
    starts (raises ``TokbenchError``)."""
    _, builder = _counter_and_builder(run)
    build_specs(run, builder)


# --- sweeps, the automatic sweep, the SLO search ------------------------------------------------------------


@dataclass(frozen=True)
class SweepOutcome:
    results: tuple[BenchmarkResult, ...]
    saturation: SaturationVerdict | None = None
    slo_rate: float | None = None  # the highest rate that met the SLO with 95% confidence
    slo_failed_rate: float | None = None  # the lowest rate found to miss it
    notes: tuple[str, ...] = ()


Deliver = Callable[[BenchmarkResult], None]


def _point(result: BenchmarkResult) -> SaturationPoint | None:
    serving = result.serving
    if serving is None or serving.summary is None or not result.ok:
        return None
    offered = serving.settings.rate if serving.settings.load == "rate" else serving.settings.concurrency
    growth = queue_growth(serving.requests)
    summary = serving.summary
    return SaturationPoint(float(offered or 0), summary.request_throughput, growth.growing, summary.offered_rate)


def sweep(
    run: ServingRun, loads: Sequence[float], deliver: Deliver, api_key: str | None = None
) -> SweepOutcome:
    """One run per rate (open loop) or concurrency (closed loop) in ``loads``, each delivered as it ends."""
    results = []
    for index, value in enumerate(loads):
        settings = run.settings
        settings = replace(settings, rate=float(value)) if settings.load == "rate" else replace(
            settings, concurrency=int(value))  # fmt: skip
        result = run_serving(replace(run, settings=settings, sweep_point=index), api_key)
        deliver(result)
        results.append(result)
    points = [p for r in results if (p := _point(r)) is not None]
    verdict = saturation_verdict(points, open_loop=run.settings.load == "rate") if points else None
    return SweepOutcome(tuple(results), verdict)


def auto_sweep(
    run: ServingRun, points: int, deliver: Deliver, api_key: str | None = None, max_concurrency: int = 64
) -> SweepOutcome:
    """GuideLLM's plan, with tokbench's records: one request at a time (the synchronous rate), then a closed loop
    at ``max_concurrency`` (the maximum throughput), then ``points`` open-loop rates spread evenly between."""
    synchronous = run_serving(replace(run, settings=replace(run.settings, load="concurrency", concurrency=1),
                                      sweep_point=0), api_key)  # fmt: skip
    deliver(synchronous)
    busiest = replace(run.settings, load="concurrency", concurrency=max_concurrency)
    saturated = run_serving(replace(run, settings=busiest, sweep_point=1), api_key)
    deliver(saturated)
    low = _throughput(synchronous)
    high = _throughput(saturated)
    if not low or not high:
        return SweepOutcome((synchronous, saturated), notes=("a bounding run failed: no rates to sweep",))
    rates = [low + (high - low) * (i + 1) / (points + 1) for i in range(points)] if high > low else [low]
    rated = sweep(replace(run, settings=replace(run.settings, load="rate")), rates, deliver, api_key)
    return SweepOutcome((synchronous, saturated, *rated.results), rated.saturation,
                        notes=(f"synchronous {low:.3g} req/s, max throughput {high:.3g} req/s",))  # fmt: skip


def _throughput(result: BenchmarkResult) -> float | None:
    summary = result.serving.summary if result.serving is not None else None
    return summary.request_throughput if result.ok and summary is not None and summary.completed else None


def slo_search(
    run: ServingRun, low: float, high: float, deliver: Deliver, api_key: str | None = None, steps: int = 6,
    repeats: int = 2,
) -> SweepOutcome:  # fmt: skip
    """The highest open-loop rate in [low, high] whose requests meet the SLO with 95% confidence: bisection on
    the rate, where a rate passes only when each objective's percentile interval lies within its limit and the
    run is valid (an inconclusive rate is run again, up to ``repeats`` times, then counts as a miss)."""
    if run.slo is None:
        raise TokbenchError("the SLO search needs --slo")
    results: list[BenchmarkResult] = []

    def meets(rate: float) -> bool:
        for _ in range(repeats):
            settings = replace(run.settings, load="rate", rate=rate)
            result = run_serving(replace(run, settings=settings, sweep_point=len(results)), api_key)
            deliver(result)
            results.append(result)
            serving = result.serving
            summary = serving.summary if serving is not None else None
            if summary is None or not result.ok or not serving.valid:  # type: ignore[union-attr]
                return False
            if summary.slo_met is not None:
                return summary.slo_met
        return False

    passed: float | None = None
    failed: float | None = None
    if meets(high):
        passed = high
    elif not meets(low):
        failed = low
    else:
        passed, failed = low, high
        for _ in range(steps):
            if failed / passed < 1.05:
                break
            middle = (passed + failed) / 2
            if meets(middle):
                passed = middle
            else:
                failed = middle
    points = [p for r in results if (p := _point(r)) is not None]
    verdict = saturation_verdict(points, open_loop=True) if points else None
    return SweepOutcome(tuple(results), verdict, passed, failed)


def interleaved(
    baseline: ServingRun, contender: ServingRun, rounds: int, deliver: Deliver, api_keys: tuple[str | None, str | None]
    = (None, None),
) -> tuple[list[BenchmarkResult], list[BenchmarkResult]]:  # fmt: skip
    """Two endpoints (or two versions of one) under the same workload, in ABBA order for ``rounds`` pairs, so a
    drift of the machine falls on both sides alike: every run is one process of its side for ``compare``'s
    pooled verdict. This is the serving workload an A/B runner runs: ``run_serving`` on one side at a time."""
    if baseline.settings.workload_hash != contender.settings.workload_hash:
        raise TokbenchError("the two sides must run the same workload (API, load, lengths)")
    sides: tuple[list[BenchmarkResult], list[BenchmarkResult]] = ([], [])
    for round_index in range(rounds):
        order = (0, 1) if round_index % 2 == 0 else (1, 0)
        for side in order:
            run = (baseline, contender)[side]
            result = run_serving(replace(run, sweep_point=round_index), api_keys[side])
            deliver(result)
            sides[side].append(result)
    return sides


def parse_slo(text: str, percentile: float) -> SloSpec:
    """``ttft=200ms,tpot=50ms,e2e=2s`` (ms or s) at ``percentile``."""
    limits: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        key = {"ttft": "ttft_ms", "tpot": "tpot_ms", "e2e": "e2e_ms"}.get(name.strip().lower())
        if not sep or key is None:
            raise TokbenchError(f"--slo {part!r}: use ttft=, tpot= or e2e= with a time, e.g. ttft=200ms")
        number = value.strip().lower()
        scale = 1000.0 if number.endswith("s") and not number.endswith("ms") else 1.0
        number = number.removesuffix("ms").removesuffix("s")
        try:
            limit = float(number) * scale
        except ValueError:
            raise TokbenchError(f"--slo {part!r}: {value!r} is not a time such as 200ms or 1.5s") from None
        if not math.isfinite(limit) or limit <= 0:
            raise TokbenchError(f"--slo {part!r}: the limit must be a positive time")
        limits[key] = limit
    if not limits:
        raise TokbenchError("--slo needs at least one of ttft=, tpot=, e2e=")
    return SloSpec(**limits, percentile=percentile)


def default_dataset_path(path: str | None) -> str | None:
    return str(Path(path).expanduser()) if path else None

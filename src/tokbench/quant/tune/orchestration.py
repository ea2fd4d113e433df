"""Tuning a model: every unique layer shape at each M it will run, through the cache, into a TuningReport."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tokbench.clock import Clock, perf_counter_ns
from tokbench.hardware.devices import device_name
from tokbench.hardware.interference import InterferenceWatch
from tokbench.quant.int4 import QuantizedLinear
from tokbench.quant.kernels import (
    TUNABLE_KERNELS,
    candidate_choices,
    default_choice,
    prepare_choice,
    run_kernel,
    unavailable_reason,
)
from tokbench.quant.tune.cache import TuningCache, TuningCacheWarning, cache_key
from tokbench.quant.tune.selection import (
    HIGH_DISPERSION,
    candidate_timing,
    pick_confidence,
    pick_winner,
    warn_dispersion,
)
from tokbench.quant.tune.timing import RoundTimer, TuningError, default_timer, measure_round_robin
from tokbench.schema.quant import (
    CandidateTiming,
    KernelChoice,
    MeasurePlan,
    PickConfidence,
    ShapeTuning,
    TuningReport,
)


class CandidateRejectedWarning(UserWarning):
    """A candidate kernel failed its first (untimed) call and was dropped from the tuning run."""


def tuned_ms(batch_size: int, sequence_length: int, prefill_rows: int | None = None) -> dict[int, str]:
    """The M values the model will run: prefill ``batch * sequence_length`` (or ``prefill_rows``), decode ``batch``."""
    if batch_size < 1 or sequence_length < 1:
        raise TuningError(f"batch_size and sequence_length must be >= 1, got {batch_size}, {sequence_length}")
    prefill, decode = prefill_rows or batch_size * sequence_length, batch_size
    if prefill == decode:
        return {decode: "prefill+decode"}
    return {decode: "decode", prefill: "prefill"}


def time_layer(
    layer: QuantizedLinear,
    m: int,
    candidates: Sequence[KernelChoice],
    *,
    timer: RoundTimer,
    budget_ns: int,
    min_rounds: int = 5,
    max_rounds: int = 1000,
    seed: int = 0,
) -> tuple[list[CandidateTiming], MeasurePlan | None, list[tuple[KernelChoice, str]]]:
    """Time ``candidates`` on ``layer`` with a random ``[m, in_features]`` input in the layer's runtime dtype.

    Each candidate is prepared and called once untimed first; one that raises is dropped (with a
    :class:`CandidateRejectedWarning`) and returned with its reason instead of aborting the run.
    Returns the timings, the plan (None when every candidate was rejected) and the rejections.
    """
    device, dtype = layer.qweight.device, layer.compute_dtype
    generator = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(m, layer.in_features, generator=generator).to(device=device, dtype=dtype)

    def make_call(choice: KernelChoice) -> Callable[[], object]:
        def call() -> object:
            with torch.no_grad():
                return run_kernel(layer, x, choice)

        return call

    runnable: list[KernelChoice] = []
    calls: list[Callable[[], object]] = []
    rejected: list[tuple[KernelChoice, str]] = []
    for choice in candidates:
        call = make_call(choice)
        try:
            prepare_choice(layer, choice, dtype)
            call()
        # Any error: a kernel can fail in its compiler, driver or op with arbitrary exception types,
        # and one broken candidate must not cost the whole tuning run.
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"
            rejected.append((choice, reason))
            warnings.warn(
                f"{layer.in_features}x{layer.out_features} M={m}: {choice.label} failed its first call and "
                f"is not timed ({reason})",
                CandidateRejectedWarning,
                stacklevel=2,
            )
            continue
        runnable.append(choice)
        calls.append(call)
    if not runnable:
        return [], None, rejected
    samples, plan = measure_round_robin(calls, timer, budget_ns, min_rounds=min_rounds, max_rounds=max_rounds)
    timings = [candidate_timing(c, s) for c, s in zip(runnable, samples, strict=True)]
    return timings, plan, rejected


def _shape_groups(model: nn.Module) -> dict[tuple[int, int, int, torch.dtype], list[QuantizedLinear]]:
    groups: dict[tuple[int, int, int, torch.dtype], list[QuantizedLinear]] = {}
    for module in model.modules():
        if isinstance(module, QuantizedLinear):
            key = (module.in_features, module.out_features, module.group_size, module.compute_dtype)
            groups.setdefault(key, []).append(module)
    return groups


def _validated_entry(
    entry: dict[str, Any],
    path: Path,
    layer: QuantizedLinear,
    candidates: Sequence[KernelChoice],
    timed: Sequence[KernelChoice],
    dtype: torch.dtype,
) -> dict[str, Any] | None:
    """``entry`` if its winner can be applied to ``layer`` now, else None with a TuningCacheWarning.

    The key already pins the shape and candidates; this guards against hand-edited, foreign or stale
    files whose winner would make the next forward raise.
    """
    winner = KernelChoice.from_dict(entry["winner"])
    seen = [CandidateTiming.from_dict(t).choice.label for t in entry["candidates"]]
    try:
        seen += [KernelChoice.from_dict(c).label for c, _ in entry.get("rejected", [])]
    except (KeyError, TypeError, ValueError):
        seen = []
    problem: str | None = None
    if sorted(seen) != sorted(c.label for c in timed):
        problem = f"its candidates {sorted(seen)} are not the current ones {sorted(c.label for c in timed)}"
    elif winner not in candidates:
        problem = f"its winner {winner.label} is not among the current candidates"
    elif winner.label not in {CandidateTiming.from_dict(t).choice.label for t in entry["candidates"]}:
        problem = f"its winner {winner.label} was never timed"
    else:
        reason = unavailable_reason(layer, winner, layer.qweight.device, dtype)
        if reason is not None:
            problem = f"its winner {winner.label} cannot run this layer: {reason}"
    if problem is None:
        return entry
    warnings.warn(
        f"tuning cache entry {path} is invalid ({problem}); ignoring it and re-tuning", TuningCacheWarning, stacklevel=3
    )
    return None


CACHE_USE = "use"  # read cached picks, write new ones
CACHE_REFRESH = "refresh"  # time everything again and replace the cached picks (tokbench tune / run --retune)
CACHE_OFF = "off"  # neither read nor write (tokbench tune --no-cache)
CACHE_MODES = (CACHE_USE, CACHE_REFRESH, CACHE_OFF)
RETUNE_ENV = "TOKBENCH_RETUNE"  # "1": every tune_model of this process re-tunes and replaces its cache entries


def default_cache_mode() -> str:
    """``refresh`` under ``TOKBENCH_RETUNE=1`` (``tokbench run --retune`` sets it), else ``use``."""
    return CACHE_REFRESH if os.environ.get(RETUNE_ENV) == "1" else CACHE_USE


class PickNotCachedWarning(UserWarning):
    """A pick the tuner could not separate from noise: used for this run, not cached."""


@dataclass
class _Tuning:
    """One tune_model call's settings and running state (device warmup done once, on the first timing)."""

    device: torch.device
    cache: TuningCache | None
    cache_mode: str
    timer: RoundTimer
    budget_ns: int
    warmup_s: float
    min_rounds: int
    max_rounds: int
    clock: Clock
    interference: Callable[[], InterferenceWatch] | None
    warmup_ns: int = 0
    warmed: bool = False


def tune_model(
    model: nn.Module,
    batch_size: int,
    sequence_length: int,
    *,
    device: torch.device | str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    cache_mode: str | None = None,
    budget_s_per_shape: float = 2.0,
    warmup_s: float = 0.5,
    kernels: tuple[str, ...] = TUNABLE_KERNELS,
    clock: Clock = perf_counter_ns,
    timer: RoundTimer | None = None,
    min_rounds: int = 5,
    max_rounds: int = 1000,
    prefill_rows: int | None = None,
    interference: Callable[[], InterferenceWatch] | None = InterferenceWatch,
) -> TuningReport:
    """Pick and APPLY the fastest kernel per (layer shape, M) of ``model``'s QuantizedLinear layers.

    ``prefill_rows`` overrides the prefill M when prompts differ in length (a padded batch, or continuous
    batching's packed prompts). ``budget_s_per_shape`` is split evenly over the M values (prefill and
    decode). Winners go to each layer's ``dispatch`` table. ``cache_mode``: ``use`` (default; ``refresh`` under
    ``TOKBENCH_RETUNE=1``) reuses cached picks (``cache_dir``, else ``$TOKBENCH_CACHE_DIR/tuning``, else
    ``~/.cache/tokbench/tuning``) without timing; ``refresh`` times everything and replaces them; ``off`` (or
    ``use_cache=False``) neither reads nor writes. A pick is cached only when it is separated from noise
    (``analysis.picks``: each entry's ``confidence``); ``interference`` watches the machine while timing (None:
    a scripted timer, which no other process can disturb). The device warmup runs only if something is timed.
    """
    start_ns = clock()
    groups = _shape_groups(model)
    if not groups:
        raise TuningError("the model has no QuantizedLinear layers; run quantize_model first")
    device = torch.device(device) if device is not None else next(iter(groups.values()))[0].qweight.device
    ms = tuned_ms(batch_size, sequence_length, prefill_rows)
    mode = CACHE_OFF if not use_cache else (cache_mode or default_cache_mode())
    if mode not in CACHE_MODES:
        raise TuningError(f"unknown cache mode {mode!r}; use one of {', '.join(CACHE_MODES)}")
    state = _Tuning(
        device=device,
        cache=TuningCache(cache_dir) if mode != CACHE_OFF else None,
        cache_mode=mode,
        timer=timer if timer is not None else default_timer(device, clock),
        budget_ns=int(budget_s_per_shape * 1e9 / len(ms)),
        warmup_s=warmup_s,
        min_rounds=min_rounds,
        max_rounds=max_rounds,
        clock=clock,
        interference=interference,
    )
    entries = [
        _tune_shape(state, key, layers, m, phase, kernels) for key, layers in groups.items() for m, phase in ms.items()
    ]
    return TuningReport(
        device=device_name(device),
        device_type=device.type,
        dtype=",".join(sorted({str(key[3]).removeprefix("torch.") for key in groups})),
        torch_version=torch.__version__,
        batch_size=batch_size,
        sequence_length=sequence_length,
        budget_s_per_shape=budget_s_per_shape,
        entries=tuple(entries),
        warmup_ns=state.warmup_ns,
        total_tuning_ns=clock() - start_ns,
        cache_dir=str(state.cache.directory) if state.cache is not None else None,
    )


def _tune_shape(
    state: _Tuning,
    shape: tuple[int, int, int, torch.dtype],
    layers: list[QuantizedLinear],
    m: int,
    phase: str,
    kernels: tuple[str, ...],
) -> ShapeTuning:
    """One (layer shape, M): from the cache, or timed and picked (and cached when sure); applied to every layer."""
    in_features, out_features, group_size, dtype = shape
    entry_start = state.clock()
    representative = layers[0]
    if representative.qweight.device != state.device:
        raise TuningError(f"layers live on {representative.qweight.device}, tuning asked for {state.device}")
    candidates = candidate_choices(representative, state.device, dtype, kernels)
    if not candidates:
        raise TuningError(f"no runnable kernel among {kernels} for a {in_features}x{out_features} layer")
    default = default_choice(representative, m, state.device, dtype)
    # The default is always timed so the speedup is measured, but only requested kernels can win.
    baseline = None if default in candidates else default
    timed = [*candidates, baseline] if baseline is not None else list(candidates)
    key = cache_key(device=state.device, dtype=dtype, group_size=group_size, in_features=in_features,
                    out_features=out_features, m=m, candidates=candidates, baseline=baseline)  # fmt: skip
    picked = _cached_pick(state, key, representative, candidates, timed, dtype)
    if picked is None:
        picked = _timed_pick(state, representative, m, candidates, timed, f"{in_features}x{out_features} M={m}")
        _cache_pick(state, key, picked, f"{in_features}x{out_features} M={m}")
    for layer in layers:
        layer.set_tuned(m, picked.winner)
        prepare_choice(layer, picked.winner, dtype)
    return ShapeTuning(
        in_features=in_features,
        out_features=out_features,
        group_size=group_size,
        m=m,
        phase=phase,
        layers=len(layers),
        candidates=tuple(picked.timings),
        winner=picked.winner,
        default=default,
        speedup_vs_default=_speedup(picked.timings, picked.winner, default),
        from_cache=picked.from_cache,
        tie_break=picked.tie_break,
        high_dispersion=picked.high_dispersion,
        plan=picked.plan,
        tuning_ns=state.clock() - entry_start,
        rejected=tuple((c.label, r) for c, r in picked.rejected),
        confidence=picked.confidence,
    )


@dataclass(frozen=True)
class _Pick:
    """What a (shape, M) settled on, from the cache or timed now."""

    winner: KernelChoice
    timings: list[CandidateTiming]
    tie_break: bool
    rejected: list[tuple[KernelChoice, str]]
    from_cache: bool
    high_dispersion: bool
    confidence: PickConfidence | None
    plan: MeasurePlan | None = None


def _cached_pick(
    state: _Tuning,
    key: dict[str, Any],
    layer: QuantizedLinear,
    candidates: Sequence[KernelChoice],
    timed: Sequence[KernelChoice],
    dtype: torch.dtype,
) -> _Pick | None:
    """The cached pick for ``key`` if the cache may be read and holds a valid one."""
    cache = state.cache
    if cache is None or state.cache_mode != CACHE_USE:
        return None
    entry = cache.load(key)
    if entry is not None:
        entry = _validated_entry(entry, cache.path_for(key), layer, candidates, timed, dtype)
    if entry is None:
        return None
    timings = [CandidateTiming.from_dict(t) for t in entry["candidates"]]
    confidence = entry.get("confidence")
    return _Pick(
        winner=KernelChoice.from_dict(entry["winner"]),
        timings=timings,
        tie_break=bool(entry.get("tie_break", False)),
        rejected=[(KernelChoice.from_dict(c), str(r)) for c, r in entry.get("rejected", [])],
        from_cache=True,
        high_dispersion=any(t.dispersion > HIGH_DISPERSION for t in timings),
        confidence=PickConfidence.from_dict(confidence) if isinstance(confidence, dict) else None,
    )


def _timed_pick(
    state: _Tuning,
    layer: QuantizedLinear,
    m: int,
    candidates: Sequence[KernelChoice],
    timed: Sequence[KernelChoice],
    context: str,
) -> _Pick:
    """Time every candidate round-robin (the machine watched meanwhile), pick the winner and say how sure it is."""
    from tokbench.hardware.warmup import device_warmup

    if not state.warmed:
        state.warmup_ns = device_warmup(state.device, state.warmup_s, clock=state.clock).elapsed_ns
        state.warmed = True
    watch = state.interference() if state.interference is not None else None
    if watch is not None:
        watch.start()
    timings, plan, rejected = time_layer(layer, m, timed, timer=state.timer, budget_ns=state.budget_ns,
                                         min_rounds=state.min_rounds, max_rounds=state.max_rounds)  # fmt: skip
    record = watch.record() if watch is not None else None
    contenders = [t for t in timings if t.choice in candidates]
    if not contenders:
        reasons = "; ".join(f"{c.label}: {r}" for c, r in rejected) or "nothing was timed"
        raise TuningError(f"every candidate failed for a {layer.in_features}x{layer.out_features} layer ({reasons})")
    winner, tie_break = pick_winner(contenders)
    busy = "; ".join(record.host_busy_reasons) if record is not None and record.host_busy else ""
    return _Pick(
        winner=winner,
        timings=timings,
        tie_break=tie_break,
        rejected=rejected,
        from_cache=False,
        high_dispersion=warn_dispersion(timings, context),
        confidence=pick_confidence(contenders, winner, busy),
        plan=plan,
    )


def _cache_pick(state: _Tuning, key: dict[str, Any], picked: _Pick, context: str) -> None:
    """Cache a pick that is separated from noise (replacing any entry); say so when one is not."""
    if state.cache is None:
        return
    confidence = picked.confidence
    if confidence is not None and not confidence.cacheable:
        warnings.warn(
            f"{context}: {picked.winner.label} is used for this run but not cached: {confidence.reason}. "
            "Tune again on a quieter machine or with a larger --tune-budget-s",
            PickNotCachedWarning,
            stacklevel=3,
        )
        return
    state.cache.store(key, {
        "winner": picked.winner.to_dict(),
        "tie_break": picked.tie_break,
        "candidates": [t.to_dict() for t in picked.timings],
        "rejected": [[c.to_dict(), r] for c, r in picked.rejected],
        "confidence": confidence.to_dict() if confidence is not None else None,
    })  # fmt: skip


def _speedup(timings: Sequence[CandidateTiming], winner: KernelChoice, default: KernelChoice) -> float | None:
    """The default's median over the winner's (None when either was not timed)."""
    by_choice = {t.choice: t for t in timings}
    winner_timing, default_timing = by_choice.get(winner), by_choice.get(default)
    if winner_timing is None or default_timing is None or winner_timing.median_ns <= 0:
        return None
    return default_timing.median_ns / winner_timing.median_ns

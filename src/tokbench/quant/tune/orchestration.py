"""Tuning a model: every unique layer shape at each M it will run, through the cache, into a TuningReport."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tokbench.clock import Clock, perf_counter_ns
from tokbench.hardware.devices import device_name
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
from tokbench.quant.tune.selection import HIGH_DISPERSION, candidate_timing, pick_winner, warn_dispersion
from tokbench.quant.tune.timing import RoundTimer, TuningError, default_timer, measure_round_robin
from tokbench.schema.quant import CandidateTiming, KernelChoice, MeasurePlan, ShapeTuning, TuningReport


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


def tune_model(
    model: nn.Module,
    batch_size: int,
    sequence_length: int,
    *,
    device: torch.device | str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    budget_s_per_shape: float = 2.0,
    warmup_s: float = 0.5,
    kernels: tuple[str, ...] = TUNABLE_KERNELS,
    clock: Clock = perf_counter_ns,
    timer: RoundTimer | None = None,
    min_rounds: int = 5,
    max_rounds: int = 1000,
    prefill_rows: int | None = None,
) -> TuningReport:
    """Pick and APPLY the fastest kernel per (layer shape, M) of ``model``'s QuantizedLinear layers.

    ``prefill_rows`` overrides the prefill M when prompts differ in length (a padded batch, or continuous
    batching's packed prompts). ``budget_s_per_shape`` is split evenly over the M values (prefill and
    decode). Winners go to each layer's ``dispatch`` table. Cached winners (``cache_dir``, else
    ``$TOKBENCH_CACHE_DIR/tuning``, else ``~/.cache/tokbench/tuning``) are reused without timing; the
    device warmup runs only if something has to be timed.
    """
    from tokbench.hardware.warmup import device_warmup

    start_ns = clock()
    groups = _shape_groups(model)
    if not groups:
        raise TuningError("the model has no QuantizedLinear layers; run quantize_model first")
    first = next(iter(groups.values()))[0]
    device = torch.device(device) if device is not None else first.qweight.device
    ms = tuned_ms(batch_size, sequence_length, prefill_rows)
    cache = TuningCache(cache_dir) if use_cache else None
    timer = timer if timer is not None else default_timer(device, clock)
    budget_ns = int(budget_s_per_shape * 1e9 / len(ms))
    dtypes = {key[3] for key in groups}
    warmup_ns = 0
    warmed = False
    entries: list[ShapeTuning] = []
    for (in_features, out_features, group_size, dtype), layers in groups.items():
        representative = layers[0]
        if representative.qweight.device != device:
            raise TuningError(f"layers live on {representative.qweight.device}, tuning asked for {device}")
        candidates = candidate_choices(representative, device, dtype, kernels)
        if not candidates:
            raise TuningError(f"no runnable kernel among {kernels} for a {in_features}x{out_features} layer")
        for m, phase in ms.items():
            entry_start = clock()
            default = default_choice(representative, m, device, dtype)
            # The default is always timed so the speedup is measured, but only requested kernels can win.
            baseline = None if default in candidates else default
            timed = [*candidates, baseline] if baseline is not None else list(candidates)
            key = cache_key(
                device=device,
                dtype=dtype,
                group_size=group_size,
                in_features=in_features,
                out_features=out_features,
                m=m,
                candidates=candidates,
                baseline=baseline,
            )
            cached = cache.load(key) if cache is not None else None
            if cached is not None:
                cached = _validated_entry(cached, cache.path_for(key), representative, candidates, timed, dtype)
            plan: MeasurePlan | None = None
            if cached is not None:
                timings = [CandidateTiming.from_dict(t) for t in cached["candidates"]]
                winner = KernelChoice.from_dict(cached["winner"])
                tie_break = bool(cached.get("tie_break", False))
                rejected = [(KernelChoice.from_dict(c), str(r)) for c, r in cached.get("rejected", [])]
                from_cache = True
                high_dispersion = any(t.dispersion > HIGH_DISPERSION for t in timings)
            else:
                if not warmed:
                    warmup_ns = device_warmup(device, warmup_s, clock=clock).elapsed_ns
                    warmed = True
                timings, plan, rejected = time_layer(
                    representative,
                    m,
                    timed,
                    timer=timer,
                    budget_ns=budget_ns,
                    min_rounds=min_rounds,
                    max_rounds=max_rounds,
                )
                contenders = [t for t in timings if t.choice in candidates]
                if not contenders:
                    reasons = "; ".join(f"{c.label}: {r}" for c, r in rejected) or "nothing was timed"
                    raise TuningError(f"every candidate failed for a {in_features}x{out_features} layer ({reasons})")
                winner, tie_break = pick_winner(contenders)
                from_cache = False
                high_dispersion = warn_dispersion(timings, f"{in_features}x{out_features} M={m}")
                if cache is not None:
                    cache.store(
                        key,
                        {
                            "winner": winner.to_dict(),
                            "tie_break": tie_break,
                            "candidates": [t.to_dict() for t in timings],
                            "rejected": [[c.to_dict(), r] for c, r in rejected],
                        },
                    )
            by_choice = {t.choice: t for t in timings}
            winner_timing, default_timing = by_choice.get(winner), by_choice.get(default)
            speedup = (
                default_timing.median_ns / winner_timing.median_ns
                if winner_timing is not None and default_timing is not None and winner_timing.median_ns > 0
                else None
            )
            for layer in layers:
                layer.set_tuned(m, winner)
                prepare_choice(layer, winner, dtype)
            entries.append(
                ShapeTuning(
                    in_features=in_features,
                    out_features=out_features,
                    group_size=group_size,
                    m=m,
                    phase=phase,
                    layers=len(layers),
                    candidates=tuple(timings),
                    winner=winner,
                    default=default,
                    speedup_vs_default=speedup,
                    from_cache=from_cache,
                    tie_break=tie_break,
                    high_dispersion=high_dispersion,
                    plan=plan,
                    tuning_ns=clock() - entry_start,
                    rejected=tuple((c.label, r) for c, r in rejected),
                )
            )
    return TuningReport(
        device=device_name(device),
        device_type=device.type,
        dtype=",".join(sorted(str(d).removeprefix("torch.") for d in dtypes)),
        torch_version=torch.__version__,
        batch_size=batch_size,
        sequence_length=sequence_length,
        budget_s_per_shape=budget_s_per_shape,
        entries=tuple(entries),
        warmup_ns=warmup_ns,
        total_tuning_ns=clock() - start_ns,
        cache_dir=str(cache.directory) if cache is not None else None,
    )

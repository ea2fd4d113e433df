"""Kernel autotuner for int4 ``QuantizedLinear`` layers, with an on-disk cache and a rich table.

What it tunes: for every unique layer shape, the kernel (and split_k) used at each ``M`` the model
will really run: ``M = batch * sequence_length`` (prefill) and ``M = batch`` (decode). llm-awq's
tuner timed ``M = 1`` only, which its GEMV path never split, so it never changed anything.

How it times (the practice of Triton's do_bench, torch.utils.benchmark and pyperf):

* every candidate is called once untimed (first-call costs); one that raises there is dropped with a
  CandidateRejectedWarning and its reason kept in the report. The untuned default is always timed too
  (as a baseline when it is not a candidate, it cannot win then) so the speedup is always measured;
* one timed round gives an estimate;
  the remaining budget picks the number of warmup rounds (~10 %) and timed rounds;
* candidates are interleaved round-robin, the starting candidate rotating each round, so clock drift
  and thermal or frequency changes spread over all candidates instead of biasing the last one;
* CUDA: events around each call and a single synchronize per round; elsewhere the injectable clock
  around each call (with a device synchronize on non-CPU devices);
* statistics: median and IQR per candidate, a warning when IQR / median > 0.1;
* the lowest median wins, unless another candidate is a near-tie, in which case the simplest of the
  tied candidates wins (:func:`tokbench.quant.kernels.simplicity_rank`). A near-tie is a median
  difference within ``max(1 % of the best median, 2 standard errors of the difference of medians)``,
  the standard error of a median estimated as ``0.93 * IQR / sqrt(n)`` (normal approximation:
  ``1.2533 * sigma / sqrt(n)`` with ``sigma = IQR / 1.349``). This is a noise-aware version of "within
  the IQR" that still separates candidates whose medians are well measured.

Winners are cached as JSON, one file per key, keyed by everything that changes the answer (the kernel
code's :data:`tokbench.quant.kernels.KERNEL_REVISION` included); an entry whose winner cannot run the
layer now, or whose candidates differ, is ignored with a TuningCacheWarning.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from tokbench.analysis.stats import interquartile_range, median
from tokbench.clock import Clock, monotonic_ns
from tokbench.errors import TokbenchError
from tokbench.fileio import CACHE_ENV_VAR as CACHE_ENV_VAR  # re-exported: the tuning cache honours it
from tokbench.fileio import atomic_write_text, cache_root
from tokbench.hardware.devices import device_name, synchronize
from tokbench.quant import kernels as quant_kernels
from tokbench.quant.int4 import QuantizedLinear
from tokbench.quant.kernels import (
    TUNABLE_KERNELS,
    KernelChoice,
    candidate_choices,
    default_choice,
    prepare_choice,
    run_kernel,
    simplicity_rank,
    unavailable_reason,
)

if TYPE_CHECKING:
    from rich.table import Table

CACHE_SCHEMA_VERSION = 2  # 2: baseline and rejected candidates, kernel revision in the key
HIGH_DISPERSION = 0.1  # IQR / median above this is reported (torch.utils.benchmark uses the same bound)
TIE_RELATIVE = 0.01  # medians within 1 % are a tie whatever the noise estimate says
_MEDIAN_SE_PER_IQR = 0.93  # standard error of a median ~ 0.93 * IQR / sqrt(n) (normal approximation)


class TuningError(TokbenchError):
    """Tuning cannot proceed (no quantized layers, no runnable candidate...)."""


class HighDispersionWarning(UserWarning):
    """A candidate's timings were noisy (IQR / median > 0.1): its median is less trustworthy."""


class TuningCacheWarning(UserWarning):
    """A tuning cache entry was unreadable or did not match, and was ignored."""


class CandidateRejectedWarning(UserWarning):
    """A candidate kernel failed its first (untimed) call and was dropped from the tuning run."""


# --- timing ------------------------------------------------------------------------------------------


class RoundTimer(Protocol):
    """Times one round: calls each function once, in order, and returns each call's duration in ns."""

    def time_round(self, calls: Sequence[Callable[[], object]]) -> list[int]: ...


class ClockTimer:
    """Wall-clock timing around each call with an injectable clock (CPU, or devices without events)."""

    def __init__(
        self,
        device: torch.device,
        clock: Clock = monotonic_ns,
        before_call: Callable[[], object] | None = None,
    ) -> None:
        self.device = device
        self.clock = clock
        # Untimed work before each call, e.g. evicting the caches so weights are read cold, as they
        # are in a real forward pass that streams through all layers (Triton's do_bench flushes L2).
        self.before_call = before_call
        self._sync = device.type != "cpu"

    def time_round(self, calls: Sequence[Callable[[], object]]) -> list[int]:
        durations: list[int] = []
        for call in calls:
            if self.before_call is not None:
                self.before_call()
                if self._sync:
                    synchronize(self.device)
            start = self.clock()
            call()
            if self._sync:
                synchronize(self.device)
            durations.append(self.clock() - start)
        return durations


class CudaEventTimer:
    """CUDA events around each call, one synchronize at the end of the round (no per-call host stall)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def time_round(self, calls: Sequence[Callable[[], object]]) -> list[int]:
        starts = [torch.cuda.Event(enable_timing=True) for _ in calls]
        ends = [torch.cuda.Event(enable_timing=True) for _ in calls]
        for call, start, end in zip(calls, starts, ends, strict=True):
            start.record()
            call()
            end.record()
        torch.cuda.synchronize(self.device)
        return [round(start.elapsed_time(end) * 1e6) for start, end in zip(starts, ends, strict=True)]


def default_timer(device: torch.device, clock: Clock = monotonic_ns) -> RoundTimer:
    return CudaEventTimer(device) if device.type == "cuda" else ClockTimer(device, clock)


def round_robin_order(num_candidates: int, round_index: int) -> list[int]:
    """Candidate order of a round: all of them, starting one further along each round."""
    return [(round_index + offset) % num_candidates for offset in range(num_candidates)]


@dataclass(frozen=True)
class MeasurePlan:
    """How a measurement spent its budget."""

    estimate_round_ns: int
    warmup_rounds: int
    timed_rounds: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate_round_ns": self.estimate_round_ns,
            "warmup_rounds": self.warmup_rounds,
            "timed_rounds": self.timed_rounds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeasurePlan:
        return cls(int(data["estimate_round_ns"]), int(data["warmup_rounds"]), int(data["timed_rounds"]))


def plan_rounds(estimate_round_ns: int, budget_ns: int, min_rounds: int = 5, max_rounds: int = 1000) -> MeasurePlan:
    """Warmup and timed rounds from the budget left after the estimate (~10 % warmup, at least 1)."""
    affordable = budget_ns // max(estimate_round_ns, 1)
    warmup = max(1, affordable // 10)
    timed = min(max(affordable - warmup, min_rounds), max_rounds)
    return MeasurePlan(estimate_round_ns, int(warmup), int(timed))


def measure_round_robin(
    calls: Sequence[Callable[[], object]],
    timer: RoundTimer,
    budget_ns: int,
    *,
    min_rounds: int = 5,
    max_rounds: int = 1000,
) -> tuple[list[list[int]], MeasurePlan]:
    """Time ``calls`` interleaved round-robin; returns per-call samples (in ``calls`` order) and the plan."""
    if not calls:
        raise TuningError("nothing to time: no candidate calls")
    count = len(calls)
    for call in calls:  # first calls: lazy builds, scratch growth, kernel compilation
        call()
    estimate = sum(timer.time_round(calls))
    plan = plan_rounds(estimate, budget_ns - estimate, min_rounds, max_rounds)
    for round_index in range(plan.warmup_rounds):
        timer.time_round([calls[i] for i in round_robin_order(count, round_index)])
    samples: list[list[int]] = [[] for _ in calls]
    for round_index in range(plan.timed_rounds):
        order = round_robin_order(count, round_index)
        durations = timer.time_round([calls[i] for i in order])
        for index, duration in zip(order, durations, strict=True):
            samples[index].append(int(duration))
    return samples, plan


@dataclass(frozen=True)
class CandidateTiming:
    """One candidate's timed samples (ns) and their median and interquartile range."""

    choice: KernelChoice
    median_ns: int
    iqr_ns: int
    samples: tuple[int, ...]

    @classmethod
    def from_samples(cls, choice: KernelChoice, samples: Sequence[int]) -> CandidateTiming:
        return cls(choice, round(median(samples)), round(interquartile_range(samples)), tuple(int(s) for s in samples))

    @property
    def dispersion(self) -> float:
        return self.iqr_ns / self.median_ns if self.median_ns > 0 else 0.0

    @property
    def median_standard_error_ns(self) -> float:
        return _MEDIAN_SE_PER_IQR * self.iqr_ns / math.sqrt(max(len(self.samples), 1))

    def to_dict(self) -> dict[str, Any]:
        return {
            "choice": self.choice.to_dict(),
            "median_ns": self.median_ns,
            "iqr_ns": self.iqr_ns,
            "samples": list(self.samples),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CandidateTiming:
        return cls(
            choice=KernelChoice.from_dict(data["choice"]),
            median_ns=int(data["median_ns"]),
            iqr_ns=int(data["iqr_ns"]),
            samples=tuple(int(s) for s in data["samples"]),
        )


def is_near_tie(best: CandidateTiming, other: CandidateTiming, tie_relative: float = TIE_RELATIVE) -> bool:
    """Whether ``other``'s median is within the noise of ``best``'s (see the module doc)."""
    noise = 2.0 * math.hypot(best.median_standard_error_ns, other.median_standard_error_ns)
    return other.median_ns - best.median_ns <= max(tie_relative * best.median_ns, noise)


def pick_winner(timings: Sequence[CandidateTiming], tie_relative: float = TIE_RELATIVE) -> tuple[KernelChoice, bool]:
    """The winner and whether a near-tie decided it (the fastest was beaten by a simpler tied one)."""
    if not timings:
        raise TuningError("no candidate timings to choose from")
    best = min(timings, key=lambda t: (t.median_ns, simplicity_rank(t.choice)))
    tied = [t for t in timings if is_near_tie(best, t, tie_relative)]
    winner = min(tied, key=lambda t: simplicity_rank(t.choice))
    return winner.choice, winner.choice != best.choice


def warn_dispersion(timings: Sequence[CandidateTiming], context: str) -> bool:
    """Warn (HighDispersionWarning) for each noisy candidate; True if any was."""
    noisy = [t for t in timings if t.dispersion > HIGH_DISPERSION]
    for timing in noisy:
        warnings.warn(
            f"{context}: {timing.choice.label} timings are noisy (IQR/median = {timing.dispersion:.2f} > "
            f"{HIGH_DISPERSION}); its median of {timing.median_ns / 1e3:.1f} us is less trustworthy. "
            "Close other programs, pin threads, or give the tuner a larger budget",
            HighDispersionWarning,
            stacklevel=3,
        )
    return bool(noisy)


# --- cache -------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$TOKBENCH_CACHE_DIR/tuning`` when set, else ``~/.cache/tokbench/tuning``."""
    return cache_root() / "tuning"


class TuningCache:
    """Winners on disk, one JSON file per key; unreadable or mismatching files are ignored with a warning."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory).expanduser() if directory is not None else default_cache_dir()

    @staticmethod
    def _digest(key: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:40]

    def path_for(self, key: dict[str, Any]) -> Path:
        return self.directory / f"{self._digest(key)}.json"

    def load(self, key: dict[str, Any]) -> dict[str, Any] | None:
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(entry, dict) or entry.get("schema") != CACHE_SCHEMA_VERSION:
                raise ValueError("unknown schema")
            if entry.get("key") != key:
                warnings.warn(
                    f"tuning cache entry {path} was written for a different key; ignoring it and re-tuning",
                    TuningCacheWarning,
                    stacklevel=2,
                )
                return None
            KernelChoice.from_dict(entry["winner"])
            for item in entry["candidates"]:
                CandidateTiming.from_dict(item)
        except (OSError, ValueError, KeyError, TypeError) as error:
            warnings.warn(
                f"tuning cache entry {path} is unreadable ({error}); ignoring it and re-tuning",
                TuningCacheWarning,
                stacklevel=2,
            )
            return None
        return entry

    def store(self, key: dict[str, Any], payload: dict[str, Any]) -> Path | None:
        """Write atomically (temp file in the same directory, then ``os.replace``); None if it failed."""
        path = self.path_for(key)
        entry = {"schema": CACHE_SCHEMA_VERSION, "key": key, **payload}
        try:
            atomic_write_text(path, json.dumps(entry, indent=1, sort_keys=True))
        except OSError as error:
            warnings.warn(
                f"could not write the tuning cache in {self.directory} ({error}); winners are not kept",
                TuningCacheWarning,
                stacklevel=2,
            )
            return None
        return path


def triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return str(getattr(triton, "__version__", "unknown"))


def cache_key(
    *,
    device: torch.device,
    dtype: torch.dtype,
    group_size: int,
    in_features: int,
    out_features: int,
    m: int,
    candidates: Sequence[KernelChoice],
    baseline: KernelChoice | None = None,
) -> dict[str, Any]:
    """Everything that changes which kernel wins (``baseline``: the default, timed but not a candidate)."""
    uses_triton = any(c.kernel == "triton" for c in candidates)
    return {
        # Read at call time (not imported by value) so a bump, or a test's monkeypatch, takes effect.
        "kernel_revision": quant_kernels.KERNEL_REVISION,
        "device_type": device.type,
        "device_name": device_name(device),
        # CPU kernels scale with the thread count, so a winner at 2 threads says nothing about 16.
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "torch": torch.__version__,
        "triton": triton_version() if uses_triton else None,
        "dtype": str(dtype).removeprefix("torch."),
        "group_size": group_size,
        "in_features": in_features,
        "out_features": out_features,
        "m": m,
        "candidates": [c.label for c in candidates],
        "baseline": baseline.label if baseline is not None else None,
    }


# --- reports -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShapeTuning:
    """Tuning of one layer shape at one M."""

    in_features: int
    out_features: int
    group_size: int
    m: int
    phase: str  # "prefill", "decode" or "prefill+decode" (sequence_length 1)
    layers: int  # how many layers of the model have this shape
    candidates: tuple[CandidateTiming, ...]
    winner: KernelChoice
    default: KernelChoice  # always timed (as a baseline when it is not a candidate)
    speedup_vs_default: float | None  # default's median / winner's median; None if the default failed
    from_cache: bool
    tie_break: bool
    high_dispersion: bool
    plan: MeasurePlan | None  # None when the entry came from the cache
    tuning_ns: int
    rejected: tuple[tuple[str, str], ...] = ()  # (label, reason) of candidates whose first call failed

    def timing_of(self, choice: KernelChoice) -> CandidateTiming | None:
        return next((t for t in self.candidates if t.choice == choice), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "group_size": self.group_size,
            "m": self.m,
            "phase": self.phase,
            "layers": self.layers,
            "candidates": [t.to_dict() for t in self.candidates],
            "winner": self.winner.to_dict(),
            "default": self.default.to_dict(),
            "speedup_vs_default": self.speedup_vs_default,
            "from_cache": self.from_cache,
            "tie_break": self.tie_break,
            "high_dispersion": self.high_dispersion,
            "plan": self.plan.to_dict() if self.plan is not None else None,
            "tuning_ns": self.tuning_ns,
            "rejected": [list(item) for item in self.rejected],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShapeTuning:
        return cls(
            in_features=int(data["in_features"]),
            out_features=int(data["out_features"]),
            group_size=int(data["group_size"]),
            m=int(data["m"]),
            phase=str(data["phase"]),
            layers=int(data["layers"]),
            candidates=tuple(CandidateTiming.from_dict(t) for t in data["candidates"]),
            winner=KernelChoice.from_dict(data["winner"]),
            default=KernelChoice.from_dict(data["default"]),
            speedup_vs_default=(None if data.get("speedup_vs_default") is None else float(data["speedup_vs_default"])),
            from_cache=bool(data["from_cache"]),
            tie_break=bool(data["tie_break"]),
            high_dispersion=bool(data["high_dispersion"]),
            plan=MeasurePlan.from_dict(data["plan"]) if data.get("plan") is not None else None,
            tuning_ns=int(data["tuning_ns"]),
            rejected=tuple((str(label), str(reason)) for label, reason in data.get("rejected", [])),
        )


@dataclass(frozen=True)
class TuningReport:
    """Everything :func:`tune_model` measured and decided."""

    device: str
    device_type: str
    dtype: str
    torch_version: str
    batch_size: int
    sequence_length: int
    budget_s_per_shape: float
    entries: tuple[ShapeTuning, ...]
    warmup_ns: int  # device warmup before timing (0 when everything came from the cache)
    total_tuning_ns: int  # wall time of the whole call, warmup included
    cache_dir: str | None

    @property
    def cache_hits(self) -> int:
        return sum(1 for e in self.entries if e.from_cache)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "device_type": self.device_type,
            "dtype": self.dtype,
            "torch_version": self.torch_version,
            "batch_size": self.batch_size,
            "sequence_length": self.sequence_length,
            "budget_s_per_shape": self.budget_s_per_shape,
            "entries": [e.to_dict() for e in self.entries],
            "warmup_ns": self.warmup_ns,
            "total_tuning_ns": self.total_tuning_ns,
            "cache_dir": self.cache_dir,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TuningReport:
        return cls(
            device=str(data["device"]),
            device_type=str(data["device_type"]),
            dtype=str(data["dtype"]),
            torch_version=str(data["torch_version"]),
            batch_size=int(data["batch_size"]),
            sequence_length=int(data["sequence_length"]),
            budget_s_per_shape=float(data["budget_s_per_shape"]),
            entries=tuple(ShapeTuning.from_dict(e) for e in data["entries"]),
            warmup_ns=int(data["warmup_ns"]),
            total_tuning_ns=int(data["total_tuning_ns"]),
            cache_dir=None if data.get("cache_dir") is None else str(data["cache_dir"]),
        )


# --- tuning ------------------------------------------------------------------------------------------


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
    timings = [CandidateTiming.from_samples(c, s) for c, s in zip(runnable, samples, strict=True)]
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
    clock: Clock = monotonic_ns,
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
    from tokbench.engine.warmup import device_warmup

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


# --- rendering ---------------------------------------------------------------------------------------


def _us(ns: float) -> str:
    return f"{ns / 1e3:,.1f}"


def render_tuning_table(report: TuningReport) -> Table:
    """A ``rich.table.Table``: per shape and M, every candidate's median and IQR, the winner, the speedup."""
    from rich.table import Table

    table = Table(
        title=(
            f"int4 kernel tuning on {report.device} ({report.dtype}, batch {report.batch_size}, "
            f"seq {report.sequence_length}; {report.total_tuning_ns / 1e9:.2f} s, "
            f"{report.cache_hits}/{len(report.entries)} from cache)"
        )
    )
    for column, justify in (
        ("shape (in x out)", "left"),
        ("M", "right"),
        ("candidate", "left"),
        ("median us", "right"),
        ("IQR us", "right"),
        ("IQR/med", "right"),
        ("", "left"),
        ("vs default", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]  # str, not the Literal
    for entry in report.entries:
        default_timing = entry.timing_of(entry.default)
        ordered = sorted(entry.candidates, key=lambda t: t.median_ns)
        for index, timing in enumerate(ordered):
            marks = []
            if timing.choice == entry.winner:
                marks.append("WINNER" + (" (tie->simpler)" if entry.tie_break else ""))
            if timing.choice == entry.default:
                marks.append("default")
            if timing.dispersion > HIGH_DISPERSION:
                marks.append("noisy")
            speed = (
                f"{default_timing.median_ns / timing.median_ns:.2f}x"
                if default_timing is not None and timing.median_ns > 0
                else "-"
            )
            table.add_row(
                f"{entry.in_features} x {entry.out_features}" if index == 0 else "",
                f"{entry.m} ({entry.phase}{', cache' if entry.from_cache else ''})" if index == 0 else "",
                timing.choice.label,
                _us(timing.median_ns),
                _us(timing.iqr_ns),
                f"{timing.dispersion:.2f}",
                ", ".join(marks),
                speed,
                end_section=index == len(ordered) - 1,
            )
    return table

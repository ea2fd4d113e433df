"""Timing candidates: round timers (clock or CUDA events) and the interleaved round-robin measurement."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from tokbench.clock import Clock, perf_counter_ns
from tokbench.errors import TokbenchError
from tokbench.hardware.devices import synchronize
from tokbench.schema.quant import MeasurePlan


class TuningError(TokbenchError):
    """Tuning cannot proceed (no quantized layers, no runnable candidate...)."""


class RoundTimer(Protocol):
    """Times one round: calls each function once, in order, and returns each call's duration in ns."""

    def time_round(self, calls: Sequence[Callable[[], object]]) -> list[int]: ...


class ClockTimer:
    """Wall-clock timing around each call with an injectable clock (CPU, or devices without events)."""

    def __init__(
        self,
        device: torch.device,
        clock: Clock = perf_counter_ns,
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


def default_timer(device: torch.device, clock: Clock = perf_counter_ns) -> RoundTimer:
    return CudaEventTimer(device) if device.type == "cuda" else ClockTimer(device, clock)


def round_robin_order(num_candidates: int, round_index: int) -> list[int]:
    """Candidate order of a round: all of them, starting one further along each round."""
    return [(round_index + offset) % num_candidates for offset in range(num_candidates)]


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

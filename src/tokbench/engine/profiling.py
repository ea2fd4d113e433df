"""Profile one extra generation of K tokens under torch.profiler, after (never during) measurement.

The trace is a gzipped Chrome / Perfetto trace JSON (open it in ui.perfetto.dev or chrome://tracing);
every model forward in it is wrapped in a ``tokbench.forward`` event, so the generated tokens' forward
passes are easy to find. Continuous batching runs its forwards in a background thread, so the profiler
records every thread (``compat.profiler_all_threads_config``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from tokbench.clock import Clock, perf_counter_ns
from tokbench.engine import compat
from tokbench.engine.quiet import fd_output_held
from tokbench.hardware.devices import synchronize
from tokbench.schema.records import GenerationTrace, OperatorTime, ProfileRecord
from tokbench.text import safe_filename

FORWARD_EVENT = "tokbench.forward"
DEFAULT_TOP_OPERATORS = 15
_TRACE_SUFFIX = ".trace.json.gz"


def trace_path_for(result_path: str | Path) -> Path:
    """Where the trace of a result written to ``result_path`` goes: next to it, ``NAME.trace.json.gz``."""
    path = Path(result_path)
    return path.with_name(path.name.removesuffix(".json") + _TRACE_SUFFIX)


def default_trace_path(name: str, directory: str | Path = "tokbench-results") -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path(directory) / f"{safe_filename(name)}-{stamp}{_TRACE_SUFFIX}"


@contextmanager
def forward_events(model: Any) -> Iterator[list[int]]:
    """Wrap each forward of ``model`` in a ``tokbench.forward`` profiler event; yields a one-item call counter.

    Hooks, not a wrapper: generate and the continuous-batching loop call ``model(...)`` themselves. Open
    events are kept per thread, since continuous batching runs forwards in its own thread.
    """
    open_events = threading.local()
    count = [0]

    def before(_module: Any, _args: Any) -> None:
        event = torch.profiler.record_function(FORWARD_EVENT)
        event.__enter__()
        stack = getattr(open_events, "stack", None)
        if stack is None:
            stack = open_events.stack = []
        stack.append(event)
        count[0] += 1

    def after(_module: Any, _args: Any, _output: Any) -> None:
        stack = getattr(open_events, "stack", None)
        if stack:
            stack.pop().__exit__(None, None, None)

    handles = [model.register_forward_pre_hook(before), model.register_forward_hook(after)]
    try:
        yield count
    finally:
        for handle in handles:
            handle.remove()


def profile_generation(
    generate: Callable[[], GenerationTrace],
    model: Any,
    device: torch.device,
    tokens: int,
    trace_path: str | Path,
    clock: Clock = perf_counter_ns,
    top_operators: int = DEFAULT_TOP_OPERATORS,
) -> ProfileRecord:
    """Run ``generate`` (one generation of ``tokens`` tokens per request) under torch.profiler.

    CPU activity always, CUDA activity on a CUDA device, shapes recorded. The trace is written
    gzipped to ``trace_path`` (atomically); the record lists the operators with the most self time.
    """
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    synchronize(device)
    with forward_events(model) as forwards:
        start_ns = clock()
        profiler = profile(
            activities=activities, record_shapes=True, experimental_config=compat.profiler_all_threads_config()
        )
        with fd_output_held("torch.profiler"):  # kineto prints "USDT: ... profiler_start" from C++
            profiler.__enter__()
        try:
            generate()
            synchronize(device)
        finally:
            with fd_output_held("torch.profiler"):
                profiler.__exit__(None, None, None)
        elapsed_ns = clock() - start_ns
    target = Path(trace_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial.json.gz")  # torch gzips on the .gz suffix
    try:
        profiler.export_chrome_trace(str(partial))
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    on_device = device.type == "cuda"
    return ProfileRecord(
        tokens=tokens,
        trace_path=str(target),
        forward_passes=forwards[0],
        elapsed_ns=elapsed_ns,
        activities=tuple(str(activity).rsplit(".", 1)[-1] for activity in activities),
        top_operators=top_operator_times(profiler.key_averages(), top_operators, on_device),
    )


def top_operator_times(averages: Any, limit: int, by_device_time: bool) -> tuple[OperatorTime, ...]:
    """The ``limit`` operators with the most self time (device time if ``by_device_time``), tokbench's own
    forward events left out (their self time is the Python between operators, not an operator)."""
    rows = [
        OperatorTime(
            name=str(event.key),
            calls=int(event.count),
            self_cpu_us=float(event.self_cpu_time_total),
            self_device_us=float(getattr(event, "self_device_time_total", 0.0)),
        )
        for event in averages
        if event.key != FORWARD_EVENT
    ]
    rows.sort(key=lambda op: op.self_device_us if by_device_time else op.self_cpu_us, reverse=True)
    return tuple(rows[:limit])

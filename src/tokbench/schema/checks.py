"""Sense checks of a result read back (a file, a store row, a Ray task's answer): what no measurement produces.

A result that was edited by hand, damaged, or written by something else can hold NaN or infinite numbers,
timestamps that go backwards, zero or negative durations, empty token lists, or integers too large for the
statistics' 64-bit arithmetic. Each of these would crash a comparison or a report much later, or worse, give a
wrong number; here it is refused when the result is loaded, naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from tokbench.errors import ResultFormatError
from tokbench.schema.records import GenerationTrace

MAX_NS = 2**62  # perf_counter_ns of a machine up for 146 years; beyond it int64 arithmetic overflows


# The bulk of a result: every token's timestamp. ``check_traces`` checks each is an integer in range (a NaN or a
# float there is refused too), so the generic walk leaves these lists out and stays cheap.
_CHECKED_BY_TRACES = frozenset({"token_timestamps_ns"})


def first_non_finite(data: Any, path: str = "", skip: frozenset[str] = frozenset()) -> str | None:
    """The dotted path of the first NaN or infinite number (or integer beyond 64 bits) in ``data``, or None;
    values under a key in ``skip`` are left out."""
    for where, value in _numbers(data, path, skip):
        if isinstance(value, float) and not math.isfinite(value):
            return f"{where} is {value}"
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            return f"{where} is an integer beyond 64 bits"
    return None


def _numbers(data: Any, path: str, skip: frozenset[str]) -> Iterator[tuple[str, Any]]:
    stack: list[tuple[str, Any]] = [(path, data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, Mapping):
            stack.extend(
                (f"{where}.{key}" if where else str(key), item) for key, item in value.items() if key not in skip
            )
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{where}[{index}]", item) for index, item in enumerate(value))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield where, value


def check_numbers(data: Mapping[str, Any]) -> None:
    """Refuse raw result data holding a NaN, an infinity or an integer beyond 64 bits, naming the field."""
    problem = first_non_finite(data, skip=_CHECKED_BY_TRACES)
    if problem is not None:
        raise ResultFormatError(f"{problem}; no measurement produces that: the result was edited or damaged")


def check_traces(
    traces: tuple[GenerationTrace, ...], status: str, where: str = "iterations", shared_stamps: bool = False
) -> None:
    """Every call's timestamps in order, its durations positive, its integers in range. ``shared_stamps``: tokens
    may share one stamp (a serving run's SSE event carries several tokens under one arrival stamp, and a request
    answered in one event has no decode time: its TPOT is left out)."""
    for index, trace in enumerate(traces):
        where_call = f"{where}[{index}]" if where == "iterations" else where
        for name in ("t0_ns", "end_ns"):
            _check_ns(getattr(trace, name), f"{where_call}.{name}")
        if trace.end_ns <= trace.t0_ns:
            raise ResultFormatError(f"{where_call}: end_ns {trace.end_ns} is not after t0_ns {trace.t0_ns}")
        if not trace.token_timestamps_ns and status == "ok":
            raise ResultFormatError(f"{where_call}.token_timestamps_ns is empty in an ok result")
        for row, stamps in enumerate(trace.token_timestamps_ns):
            _check_row(trace, row, stamps, f"{where_call}.token_timestamps_ns[{row}]", status, shared_stamps)


def _check_row(
    trace: GenerationTrace, row: int, stamps: tuple[int, ...], where: str, status: str, shared_stamps: bool
) -> None:
    if not stamps:
        if status == "ok":
            raise ResultFormatError(f"{where} is empty: an ok result has a timestamp for every generated token")
        return
    if not set(map(type, stamps)) <= {int} or min(stamps) < 0 or max(stamps) >= MAX_NS:  # builtins: C speed
        for stamp in stamps:
            _check_ns(stamp, where)
    start, finish = trace.submitted_ns(row), trace.finished_ns(row)
    if stamps[0] <= start:
        raise ResultFormatError(f"{where}: the first token ({stamps[0]}) is not after the request started ({start})")
    if list(stamps) != sorted(stamps):  # sorted() of sorted data is one linear pass
        position = next(index for index in range(1, len(stamps)) if stamps[index] < stamps[index - 1])
        raise ResultFormatError(
            f"{where}: timestamps go backwards at token {position} ({stamps[position - 1]} then {stamps[position]})"
        )
    if len(stamps) > 1 and stamps[-1] == stamps[0] and not shared_stamps:
        raise ResultFormatError(f"{where}: every token has the same timestamp; the decode time would be zero")
    if stamps[-1] > finish:
        raise ResultFormatError(f"{where}: the last token ({stamps[-1]}) comes after the call ended ({finish})")


def _check_ns(value: object, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_NS:
        shown = f"a {len(str(abs(value)))}-digit integer" if isinstance(value, int) and abs(value) >= MAX_NS else (
            repr(value)[:40])  # fmt: skip
        raise ResultFormatError(f"{where}: {shown} is not a nanosecond instant (an integer from 0 to 2^62)")

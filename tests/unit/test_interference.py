"""Busy-machine verdicts from the kernel's counters (synthetic readings of known truth) and their place in a result."""

from __future__ import annotations

import json
from pathlib import Path

from tokbench.hardware.interference import (
    BUSY_SHARE,
    HostReading,
    InterferenceWatch,
    assess,
    other_cpu_threshold,
)
from tokbench.schema.interference import FLAG_CLOCKS_CHANGED, FLAG_HOST_BUSY, InterferenceRecord
from tokbench.schema.monitor import MonitorRecord, SampleSeries
from tokbench.schema.results import BenchmarkResult

DATA = Path(__file__).resolve().parent.parent / "data"
S = 1_000_000_000


def readings(*windows: tuple[float, float], steal: float = 0.0, seconds: float = 1.0) -> list[HostReading]:
    """Readings 1 s apart where each window's (own, other) CPUs are as given."""
    out = [HostReading(0, 100.0, 10.0, 5.0)]
    for own, other in windows:
        last = out[-1]
        out.append(
            HostReading(
                last.wall_ns + int(seconds * S),
                last.machine_busy_s + (own + other) * seconds,
                (last.steal_s or 0.0) + steal * seconds,
                last.own_s + own * seconds,
            )
        )
    return out


def test_thresholds_scale_with_the_machine() -> None:
    assert other_cpu_threshold(2) == 0.5
    assert other_cpu_threshold(64) == 6.4


def test_a_quiet_window_is_not_flagged() -> None:
    record = assess(readings((1.9, 0.05), (1.9, 0.1), (1.9, 0.0)), cpus=2)
    assert record is not None
    assert record.flags == ()
    assert abs(record.other_cpu - 0.05) < 1e-9
    assert abs(record.own_cpu - 1.9) < 1e-9
    assert "quiet" in record.summary_line()


def test_other_processes_over_a_quarter_of_the_time_flag_host_busy() -> None:
    # 1 window of 4 busy is exactly the threshold share; a hog of 1.5 CPUs in it
    record = assess(readings((1.0, 1.5), (1.9, 0.0), (1.9, 0.0), (1.9, 0.0)), cpus=2)
    assert record is not None and abs(record.busy_share - BUSY_SHARE) < 1e-9
    assert record.flags == (FLAG_HOST_BUSY,)
    assert "BUSY" in record.summary_line()
    # one busy window of five is a burst, not a busy machine
    quiet = assess(readings((1.0, 1.5), (1.9, 0.0), (1.9, 0.0), (1.9, 0.0), (1.9, 0.0)), cpus=2)
    assert quiet is not None and quiet.flags == ()


def test_steal_and_load_average_flag_host_busy() -> None:
    stolen = assess(readings((1.0, 0.0), (1.0, 0.0), steal=0.3), cpus=2)
    assert stolen is not None and stolen.host_busy and "stole" in stolen.host_busy_reasons[0]
    loaded = assess(readings((1.0, 0.0)), cpus=2, load_start=1.0, load_end=4.5)
    assert loaded is not None and loaded.host_busy and "load average" in loaded.host_busy_reasons[0]


def test_clock_changes_cpu_throttle_and_gpu_slowdown() -> None:
    base = readings((1.0, 0.0), (1.0, 0.0))
    throttled = [
        HostReading(r.wall_ns, r.machine_busy_s, r.steal_s, r.own_s, 3000.0, 7 + i) for i, r in enumerate(base)
    ]
    record = assess(throttled, cpus=2)
    assert record is not None and record.flags == (FLAG_CLOCKS_CHANGED,)
    assert record.cpu_throttle_events == 2
    gpu = SampleSeries("nvml", "ok", "gpu0", (1, 2, 3, 4), {"clock_event_reasons": (0, 0x20, 0x20, 1),
                                                           "sm_clock_mhz": (1980, 1500, 1500, 1980)})  # fmt: skip
    monitored = assess(base, cpus=2, monitor=MonitorRecord(50, 0, 4, (gpu,)))
    assert monitored is not None and monitored.clocks_changed
    assert monitored.gpu_throttle_share == 0.5 and monitored.gpu_sm_clock_mhz_min == 1500


def test_the_watch_reads_at_call_boundaries_once_a_window_has_passed() -> None:
    ticks = iter(readings(*[(1.0, 0.0)] * 10, seconds=0.001))  # readings only 1 ms apart: no window closes
    watch = InterferenceWatch(read=lambda: next(ticks), window_ns=S, now=lambda: 0)
    watch.start()
    wrapped = watch.wrap(lambda: 42)
    assert [wrapped() for _ in range(3)] == [42, 42, 42]
    assert len(watch.readings) == 1  # no reading inside the measured loop before a window passed
    assert watch.record(cpus=2) is not None


def test_the_flag_is_derived_stored_and_read_back() -> None:
    data = json.loads((DATA / "result-v2.json").read_text(encoding="utf-8"))
    old = BenchmarkResult.from_dict(data)
    assert old.interference is None and FLAG_HOST_BUSY not in old.flags  # results written before still load
    record = assess(readings((0.5, 1.5), (0.5, 1.5)), cpus=2)
    data["interference"] = record.to_dict() if record is not None else None
    busy = BenchmarkResult.from_dict(data)
    assert FLAG_HOST_BUSY in busy.flags
    assert FLAG_HOST_BUSY in busy.to_dict()["flags"]
    assert InterferenceRecord.from_dict(busy.to_dict()["interference"]) == busy.interference

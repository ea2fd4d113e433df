"""Busy-machine detection while measuring: what other processes, the hypervisor and the clocks did.

A result measured while something else used the CPUs is still a result (this project's machine is shared and
often busy), but not one to take at face value: ``InterferenceWatch`` turns that into a flag with its evidence.

How: the kernel's own CPU accounting, read at call boundaries, no thread. At the start of the measured window,
after a call once about a second has passed since the last reading, and at the end, it reads the machine's busy
CPU time (``/proc/stat`` through psutil: all CPUs, idle and iowait excluded, steal counted apart) and this
process's CPU time (every thread). Over each stretch, other processes used ``(machine busy − steal − this
process) / wall time`` CPUs. The kernel counts in clock ticks (10 ms), so a stretch is at least a second: shorter
ones would be mostly rounding. Readings cost tens of microseconds and fall between calls, never inside one.

Thresholds (judgement, stated; the figures are stored so a reader can apply their own):

- ``host_busy`` when other processes used at least ``max(0.5, 10% of the CPUs)`` CPUs for at least a quarter
  of the measured time. Half a CPU is enough to take a core away from a small run part of the time (on the
  2-core development machine a hog of one core moved the median E2E several-fold); on a large machine a tenth of
  its CPUs is the point where shared caches and memory bandwidth are contested. A quarter of the time is where
  it reaches the upper quartile of the calls, and so every percentile a table shows above the median.
- also ``host_busy`` when the hypervisor stole at least 0.1 CPU for a quarter of the time (other guests), or
  the 1-minute load average at the end is at least twice the CPUs (a run queue that long means waiting).
- ``clocks_changed`` when a Linux ``thermal_throttle`` counter grew, when the mean CPU frequency seen at window
  edges moved by more than 25% (where the OS exposes it), or when the GPU reported a power or thermal slowdown
  in at least 10% of the monitor's samples (NVML clock-event reasons; needs the monitor).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tokbench.schema.interference import InterferenceRecord, InterferenceWindow
from tokbench.schema.monitor import MonitorRecord

T = TypeVar("T")

WINDOW_NS = 1_000_000_000  # a stretch ends at the first call boundary after this long (kernel ticks are 10 ms)
OTHER_CPU_MIN = 0.5  # CPUs of other work that count as busy, at least...
OTHER_CPU_SHARE = 0.10  # ...or this share of the machine's CPUs, whichever is larger
BUSY_SHARE = 0.25  # of the measured time, for the run to be flagged
STEAL_CPU = 0.1
LOAD_PER_CPU = 2.0
CPU_MHZ_CHANGE = 0.25
GPU_THROTTLE_SHARE = 0.10
# NVML clock-event reasons that mean the GPU slowed itself: SW power cap, HW slowdown, SW / HW thermal, power brake.
GPU_SLOWDOWN_MASK = 0x4 | 0x8 | 0x20 | 0x40 | 0x80


def other_cpu_threshold(cpus: int) -> float:
    return max(OTHER_CPU_MIN, OTHER_CPU_SHARE * cpus)


@dataclass(frozen=True)
class HostReading:
    """Cumulative counters at one instant (seconds of CPU time; the machine's summed over its CPUs)."""

    wall_ns: int
    machine_busy_s: float  # every CPU's non-idle time, steal excluded
    steal_s: float | None
    own_s: float
    cpu_mhz: float | None = None
    throttle_events: int | None = None


def read_host(companions: CompanionCpu | None = None) -> HostReading:
    """The counters now (psutil; the kernel's accounting); ``companions``' CPU time counts as this process's own
    (work that runs beside the measurement by design, e.g. a duet partner's calls between ours)."""
    import psutil

    times = psutil.cpu_times()
    fields = times._asdict()
    # On Linux guest time is already inside user time; counting it again would double it (psutil does the same).
    total = sum(value for name, value in fields.items() if name not in ("guest", "guest_nice"))
    idle = fields.get("idle", 0.0) + fields.get("iowait", 0.0)
    steal = fields.get("steal")
    own = psutil.Process().cpu_times()
    return HostReading(
        wall_ns=time.monotonic_ns(),
        machine_busy_s=total - idle - (steal or 0.0),
        steal_s=steal,
        own_s=own.user + own.system + (companions.seconds() if companions is not None else 0.0),
        cpu_mhz=_cpu_mhz(),
        throttle_events=_throttle_events(),
    )


class CompanionCpu:
    """The CPU time (user + system, seconds) of processes that run beside the measurement by design; a process
    that has ended keeps the last time read (the kernel forgets it)."""

    def __init__(self, pids: tuple[int, ...]) -> None:
        self._last = dict.fromkeys(pids, 0.0)

    def seconds(self) -> float:
        import psutil

        for pid in self._last:
            try:
                times = psutil.Process(pid).cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            self._last[pid] = times.user + times.system
        return sum(self._last.values())


def _cpu_mhz() -> float | None:
    try:
        import psutil

        frequency = psutil.cpu_freq()
    except Exception:  # missing sysfs files on some virtual machines
        return None
    return float(frequency.current) if frequency is not None and frequency.current else None


def _throttle_events() -> int | None:
    """The sum of Linux's per-CPU thermal throttle counters, or None where they are not exposed."""
    total, found = 0, False
    for path in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/thermal_throttle/*_throttle_count"):
        try:
            total += int(path.read_text(encoding="ascii").strip())
            found = True
        except (OSError, ValueError):
            continue
    return total if found else None


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def cpu_count() -> int:
    import psutil

    return int(psutil.cpu_count(logical=True) or os.cpu_count() or 1)


class InterferenceWatch:
    """Readings around the measured calls: ``start()``, ``wrap(call)`` for every call, ``record(monitor)``.

    ``read`` and ``now`` (the clock readings are stamped with) replace the host's (tests give synthetic counters).
    ``companion_pids``: processes whose CPU is part of the design, not interference (a duet partner, ``sweep.duet``).
    """

    def __init__(
        self,
        read: Callable[[], HostReading] | None = None,
        window_ns: int = WINDOW_NS,
        now: Callable[[], int] = time.monotonic_ns,
        companion_pids: tuple[int, ...] = (),
    ) -> None:
        companions = CompanionCpu(companion_pids) if companion_pids else None
        self._read = read if read is not None else lambda: read_host(companions)
        self._now = now
        self._window_ns = window_ns
        self.readings: list[HostReading] = []
        self._load_start: float | None = None

    def start(self) -> None:
        self.readings = [self._read()]
        self._load_start = load_average()

    def wrap(self, call: Callable[[], T]) -> Callable[[], T]:
        """``call``, followed by a reading whenever a window's worth of time has passed since the last one."""

        def watched() -> T:
            value = call()
            if self.readings and self._now() - self.readings[-1].wall_ns >= self._window_ns:
                self.readings.append(self._read())
            return value

        return watched

    def record(self, monitor: MonitorRecord | None = None, cpus: int | None = None) -> InterferenceRecord | None:
        """The record over the readings so far (a final reading is taken now); None if ``start`` never ran."""
        if not self.readings:
            return None
        final = self._read()
        readings = list(self.readings)
        if len(readings) > 1 and final.wall_ns - readings[-1].wall_ns < self._window_ns // 2:
            readings.pop()  # a sliver after the last reading is mostly tick rounding: fold it into that window
        readings.append(final)
        return assess(readings, cpus or cpu_count(), self._load_start, load_average(), monitor)


def windows_of(readings: Sequence[HostReading]) -> list[InterferenceWindow]:
    windows = []
    for before, after in itertools.pairwise(readings):
        wall_s = (after.wall_ns - before.wall_ns) / 1e9
        if wall_s <= 0:
            continue
        own = max(0.0, after.own_s - before.own_s)
        busy = max(0.0, after.machine_busy_s - before.machine_busy_s)
        steal = None
        if after.steal_s is not None and before.steal_s is not None:
            steal = max(0.0, after.steal_s - before.steal_s) / wall_s
        windows.append(InterferenceWindow(after.wall_ns - before.wall_ns, own / wall_s, max(0.0, busy - own) / wall_s,
                                          steal))  # fmt: skip
    return windows


def assess(
    readings: Sequence[HostReading],
    cpus: int,
    load_start: float | None = None,
    load_end: float | None = None,
    monitor: MonitorRecord | None = None,
) -> InterferenceRecord | None:
    """The interference record of a measured window from its readings (at least two), with the verdicts."""
    windows = windows_of(readings)
    total_ns = sum(window.elapsed_ns for window in windows)
    if total_ns <= 0:
        return None
    threshold = other_cpu_threshold(cpus)

    def weighted(value: Callable[[InterferenceWindow], float]) -> float:
        return sum(value(window) * window.elapsed_ns for window in windows) / total_ns

    own, other = weighted(lambda w: w.own_cpu), weighted(lambda w: w.other_cpu)
    busy_share = sum(w.elapsed_ns for w in windows if w.other_cpu >= threshold) / total_ns
    steals = [w for w in windows if w.steal_cpu is not None]
    steal = sum(w.steal_cpu or 0.0 for w in steals) / len(steals) if steals else None
    steal_share = sum(w.elapsed_ns for w in steals if (w.steal_cpu or 0.0) >= STEAL_CPU) / total_ns

    busy_reasons = []
    if busy_share >= BUSY_SHARE:
        busy_reasons.append(
            f"other processes used ≥ {threshold:.2f} CPUs during {busy_share:.0%} of the measured time "
            f"(mean {other:.2f} of {cpus})"
        )
    if steal_share >= BUSY_SHARE:
        busy_reasons.append(f"the hypervisor stole ≥ {STEAL_CPU} CPU during {steal_share:.0%} of the time")
    if load_end is not None and load_end >= LOAD_PER_CPU * cpus:
        busy_reasons.append(f"load average {load_end:.1f} ≥ {LOAD_PER_CPU:g} × {cpus} CPUs")

    frequencies = [r.cpu_mhz for r in readings if r.cpu_mhz is not None]
    throttles = [r.throttle_events for r in readings if r.throttle_events is not None]
    gpu_share, gpu_clocks = _gpu_slowdown(monitor)
    clock_reasons = _clock_reasons(frequencies, throttles, gpu_share)
    return InterferenceRecord(
        cpus=cpus,
        window_ns=total_ns,
        own_cpu=own,
        other_cpu=other,
        other_cpu_threshold=threshold,
        busy_share=busy_share,
        busy_share_threshold=BUSY_SHARE,
        steal_cpu=steal,
        load_average_start=load_start,
        load_average_end=load_end,
        cpu_mhz_min=min(frequencies) if frequencies else None,
        cpu_mhz_max=max(frequencies) if frequencies else None,
        cpu_throttle_events=throttles[-1] - throttles[0] if len(throttles) >= 2 else None,
        gpu_throttle_share=gpu_share,
        gpu_sm_clock_mhz_min=min(gpu_clocks) if gpu_clocks else None,
        gpu_sm_clock_mhz_max=max(gpu_clocks) if gpu_clocks else None,
        windows=tuple(windows),
        host_busy_reasons=tuple(busy_reasons),
        clock_reasons=tuple(clock_reasons),
    )


def _clock_reasons(frequencies: Sequence[float], throttles: Sequence[int], gpu_share: float | None) -> list[str]:
    reasons = []
    if len(throttles) >= 2 and throttles[-1] > throttles[0]:
        reasons.append(f"the CPU throttled {throttles[-1] - throttles[0]} time(s) (thermal_throttle counters)")
    low, high = (min(frequencies), max(frequencies)) if frequencies else (0.0, 0.0)
    if high > 0 and (high - low) / high > CPU_MHZ_CHANGE:
        reasons.append(f"CPU frequency moved between {min(frequencies):,.0f} and {max(frequencies):,.0f} MHz")
    if gpu_share is not None and gpu_share >= GPU_THROTTLE_SHARE:
        reasons.append(f"the GPU reported a power or thermal slowdown in {gpu_share:.0%} of samples")
    return reasons


def _gpu_slowdown(monitor: MonitorRecord | None) -> tuple[float | None, list[float]]:
    """Share of GPU samples with a slowdown reason, and the SM clocks seen (empty without a GPU series)."""
    gpu = monitor.gpu if monitor is not None else None
    if gpu is None or not gpu.ok:
        return None, []
    reasons = [int(value) for value in gpu.column("clock_event_reasons") if value is not None]
    clocks = [float(value) for value in gpu.column("sm_clock_mhz") if value is not None]
    share = sum(1 for value in reasons if value & GPU_SLOWDOWN_MASK) / len(reasons) if reasons else None
    return share, clocks

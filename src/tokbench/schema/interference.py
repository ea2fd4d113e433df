"""What else the machine did while a run measured: CPU used by other processes, steal, load, clock changes.

Written by ``tokbench.hardware.interference`` around the measured calls; the result's ``host_busy`` and
``clocks_changed`` flags are derived from it. The thresholds that decided are stored with the figures, so a
reader sees why a run was (or was not) flagged, under the rules of the tokbench that measured it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tokbench.schema.serde import Record

FLAG_HOST_BUSY = "host_busy"
FLAG_CLOCKS_CHANGED = "clocks_changed"


@dataclass(frozen=True)
class InterferenceWindow(Record):
    """One stretch (about a second, ending at a call boundary) of the measured time, in CPUs' worth of work.

    ``own_cpu`` is this process (all its threads), ``other_cpu`` every other process on the machine,
    ``steal_cpu`` time the hypervisor gave to other guests (None where the OS does not count it).
    """

    elapsed_ns: int
    own_cpu: float
    other_cpu: float
    steal_cpu: float | None = None


@dataclass(frozen=True)
class InterferenceRecord(Record):
    """Interference over the measured window and the verdicts drawn from it (empty reasons: quiet).

    ``busy_share`` is the share of the measured time spent in windows where other processes used at least
    ``other_cpu_threshold`` CPUs. ``host_busy_reasons`` / ``clock_reasons`` say, in words, what crossed a
    threshold; either non-empty sets the matching run flag.
    """

    OMIT_NONE: ClassVar[bool] = True

    cpus: int
    window_ns: int
    own_cpu: float
    other_cpu: float
    other_cpu_threshold: float
    busy_share: float
    busy_share_threshold: float
    steal_cpu: float | None = None
    load_average_start: float | None = None  # 1-minute load average, as the OS reports it
    load_average_end: float | None = None
    cpu_mhz_min: float | None = None  # mean current CPU frequency, lowest and highest seen at window edges
    cpu_mhz_max: float | None = None
    cpu_throttle_events: int | None = None  # Linux thermal_throttle counters' growth over the window
    gpu_throttle_share: float | None = None  # share of GPU samples with a slowdown reason (power, thermal)
    gpu_sm_clock_mhz_min: float | None = None
    gpu_sm_clock_mhz_max: float | None = None
    windows: tuple[InterferenceWindow, ...] = ()
    host_busy_reasons: tuple[str, ...] = ()
    clock_reasons: tuple[str, ...] = ()

    @property
    def host_busy(self) -> bool:
        return bool(self.host_busy_reasons)

    @property
    def clocks_changed(self) -> bool:
        return bool(self.clock_reasons)

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(
            flag
            for flag, raised in ((FLAG_HOST_BUSY, self.host_busy), (FLAG_CLOCKS_CHANGED, self.clocks_changed))
            if raised
        )

    def summary_line(self) -> str:
        """One line for a header: BUSY / quiet, why, and the figures behind it."""
        figures = f"this run used {self.own_cpu:.2f} CPUs"
        if not self.host_busy:  # a busy verdict's reasons already give the other processes' figures and the load
            figures += f", other processes {self.other_cpu:.2f} of {self.cpus}"
            if self.load_average_end is not None:
                figures += f", load average {self.load_average_end:.1f}"
        if self.steal_cpu is not None:
            figures += f", steal {self.steal_cpu:.2f}"
        verdict = "BUSY: " + "; ".join(self.host_busy_reasons) if self.host_busy else "quiet"
        text = f"machine while measuring: {verdict} ({figures})"
        if self.clock_reasons:
            text += "; CLOCKS CHANGED: " + "; ".join(self.clock_reasons)
        return text


def flag_detail(record: InterferenceRecord | None, flag: str) -> str:
    """What lies behind a run flag raised by ``record`` (``""`` for any other flag): for a comparison's warnings."""
    if record is None:
        return ""
    if flag == FLAG_HOST_BUSY and record.host_busy:
        return " (measured on a BUSY machine: " + "; ".join(record.host_busy_reasons) + ")"
    if flag == FLAG_CLOCKS_CHANGED and record.clocks_changed:
        return " (clocks changed while measuring: " + "; ".join(record.clock_reasons) + ")"
    return ""

"""Hardware monitoring records: sample series per backend, and per-call memory peaks
(produced by ``tokbench.hardware.monitor``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tokbench.schema.serde import Record

STATUS_OK = "ok"
HOST = "host"

Value = float | int | None


@dataclass(frozen=True)
class SampleSeries(Record):
    """What one backend recorded: a status, what it watched, and one column per quantity.

    ``columns[name][i]`` is the value at ``timestamps_ns[i]``; ``None`` where the quantity could not be
    read. Column names end in their unit (``_bytes``, ``_percent``, ``_w``, ``_mj``, ``_mhz``, ``_c``).
    """

    backend: str
    status: str
    device: str = ""
    timestamps_ns: tuple[int, ...] = ()
    columns: dict[str, tuple[Value, ...]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def column(self, name: str) -> tuple[Value, ...]:
        return self.columns.get(name, ())

    def peak(self, name: str) -> Value:
        values = [v for v in self.column(name) if v is not None]
        return max(values) if values else None

    def mean(self, name: str) -> float | None:
        values = [v for v in self.column(name) if v is not None]
        return sum(values) / len(values) if values else None

    def counter_delta(self, name: str) -> Value:
        """Last minus first reading of a cumulative counter (e.g. ``energy_mj``), or None."""
        values = [v for v in self.column(name) if v is not None]
        return values[-1] - values[0] if len(values) >= 2 else None


@dataclass(frozen=True)
class MonitorRecord(Record):
    """Everything the sampler saw during one measured run."""

    interval_ms: int
    start_ns: int
    end_ns: int
    series: tuple[SampleSeries, ...] = ()

    def get(self, backend: str) -> SampleSeries | None:
        return next((s for s in self.series if s.backend == backend), None)

    @property
    def gpu(self) -> SampleSeries | None:
        """The GPU backend's series (nvml, amdsmi, or the ``gpu`` placeholder that says why there is none)."""
        return next((s for s in self.series if s.backend != HOST), None)

    @property
    def energy_j(self) -> float | None:
        """Energy the GPU's hardware counter says was used between the first and last sample."""
        gpu = self.gpu
        delta = gpu.counter_delta("energy_mj") if gpu is not None and gpu.ok else None
        return None if delta is None else delta / 1000.0


@dataclass(frozen=True)
class MemoryPeak(Record):
    """Peak memory of one measured generate call. ``source`` says what was measured."""

    source: str  # "torch.cuda allocator" | "VmHWM (peak RSS)" | "RSS after the call"
    peak_allocated_bytes: int | None = None  # accelerators: torch allocator, tensors
    peak_reserved_bytes: int | None = None  # accelerators: torch allocator, cached segments
    peak_rss_bytes: int | None = None  # CPU: the process's resident set

    @property
    def peak_bytes(self) -> int | None:
        """The peak that bounds what this call needed: allocated on accelerators, RSS on CPU."""
        return self.peak_allocated_bytes if self.peak_allocated_bytes is not None else self.peak_rss_bytes

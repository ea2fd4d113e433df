"""Efficiency records: the hardware peaks MBU / MFU divide by, and the efficiency report."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tokbench.schema.serde import Record


@dataclass(frozen=True)
class RobustFigure(Record):
    """The median of ``n`` timed rounds of one probe figure, with the rounds' quartiles and extremes."""

    median: float
    q1: float
    q3: float
    min: float
    max: float
    n: int

    @classmethod
    def from_dict(cls, data: Any) -> RobustFigure:  # type: ignore[override]
        """A figure read from a probe cache file, checked (the generic reader of results does not check ranges).

        Raises ValueError unless every figure is a finite positive number and n a positive integer."""
        if not isinstance(data, dict):
            raise ValueError(f"a figure must be an object, got {type(data).__name__}")
        values = {name: _positive_finite(data.get(name), name) for name in ("median", "q1", "q3", "min", "max")}
        n = data.get("n")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if not values["min"] <= values["q1"] <= values["median"] <= values["q3"] <= values["max"]:
            raise ValueError("figures are not ordered min <= q1 <= median <= q3 <= max")
        return cls(n=n, **values)


def _positive_finite(value: Any, name: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and positive, got {value!r}")
    return float(value)


def _positive_int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class ProbeRecord(Record):
    """What the probe measured: bandwidth (bytes/s, read + write) and matmul FLOP/s, each a median of rounds."""

    copy_bandwidth_bytes_s: RobustFigure
    matmul_flops_s: RobustFigure
    copy_bytes: int
    matmul_size: int
    threads: int
    measured_at: str = ""

    @classmethod
    def from_dict(cls, data: Any) -> ProbeRecord:  # type: ignore[override]
        """Raises ValueError for anything that is not a valid record (see ``RobustFigure.from_dict``)."""
        if not isinstance(data, dict):
            raise ValueError(f"a probe record must be an object, got {type(data).__name__}")
        measured_at = data.get("measured_at", "")
        if not isinstance(measured_at, str):
            raise ValueError("measured_at must be a string")
        return cls(
            copy_bandwidth_bytes_s=RobustFigure.from_dict(data.get("copy_bandwidth_bytes_s")),
            matmul_flops_s=RobustFigure.from_dict(data.get("matmul_flops_s")),
            copy_bytes=_positive_int(data.get("copy_bytes"), "copy_bytes"),
            matmul_size=_positive_int(data.get("matmul_size"), "matmul_size"),
            threads=_positive_int(data.get("threads"), "threads"),
            measured_at=measured_at,
        )

    def describe(self, dtype: str) -> str:
        """One line for reports: what was run and each figure's median with its spread."""
        bandwidth, flops = self.copy_bandwidth_bytes_s, self.matmul_flops_s
        return (
            f"median of {bandwidth.n} rounds: {self.copy_bytes // 2**20} MiB copy {bandwidth.median / 1e9:.1f} GB/s "
            f"(IQR {bandwidth.q1 / 1e9:.1f}-{bandwidth.q3 / 1e9:.1f}, min {bandwidth.min / 1e9:.1f}, "
            f"max {bandwidth.max / 1e9:.1f}), {self.matmul_size}² {dtype} matmul {flops.median / 1e9:.1f} GFLOP/s "
            f"(IQR {flops.q1 / 1e9:.1f}-{flops.q3 / 1e9:.1f}, min {flops.min / 1e9:.1f}, max {flops.max / 1e9:.1f}); "
            f"{self.threads} threads, {self.measured_at or '?'}"
        )



@dataclass(frozen=True)
class HardwarePeak(Record):
    """The peaks MBU and MFU divide by, and where they come from."""

    OMIT_NONE = True  # ``probe`` is written only for a measured peak

    device: str
    dtype: str
    memory_bandwidth_bytes_s: float
    flops_s: float
    kind: str  # "table" | "probe"
    source: str
    probe: ProbeRecord | None = None  # the measured figures with their spread, for kind "probe"


@dataclass(frozen=True)
class EfficiencyReport(Record):
    """Memory breakdown and efficiency of one measured run. ``None`` where a figure could not be had."""

    weight_bytes: int
    kv_cache_bytes_at_end: int
    kv_cache_positions_at_end: int
    peak_memory_bytes: int | None = None
    peak_memory_source: str = ""
    peak_beyond_weights_and_kv_bytes: int | None = None
    decode_bytes_per_step: float | None = None
    decode_steps_per_s: float | None = None  # median over measured calls
    decode_bandwidth_bytes_s: float | None = None
    mbu: float | None = None
    prefill_flops: float | None = None
    prefill_flops_s: float | None = None  # median over measured calls
    mfu: float | None = None
    peak: HardwarePeak | None = None
    peak_unavailable: str = ""  # why there is no peak (then no MBU / MFU)
    energy_j: float | None = None
    energy_per_token_j: float | None = None
    energy_status: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

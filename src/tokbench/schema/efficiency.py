"""Efficiency records: the hardware peaks MBU / MFU divide by, and the efficiency report."""

from __future__ import annotations

from dataclasses import dataclass, field

from tokbench.schema.serde import Record


@dataclass(frozen=True)
class HardwarePeak(Record):
    """The peaks MBU and MFU divide by, and where they come from."""

    device: str
    dtype: str
    memory_bandwidth_bytes_s: float
    flops_s: float
    kind: str  # "table" | "probe"
    source: str


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

"""The hardware limit efficiency is measured against: a table of known accelerators, or a measured probe.

Every ``HardwarePeak`` says where its figures come from. Table figures are the vendors' published dense
(no structured sparsity) peaks; FP32 is the non-tensor-core figure, since torch keeps TF32 off for
matmuls by default. CPUs and accelerators not in the table get a short probe (best of a few large
copies for memory bandwidth, square matmuls in the run's dtype for FLOP/s) that is cached on disk per
machine, dtype, torch version and thread count under ``$TOKBENCH_CACHE_DIR/hardware`` (else
``~/.cache/tokbench/hardware``). A probe taken while other work loads the machine reads low, which makes
utilization read high: delete the cache file to probe again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokbench.clock import Clock, perf_counter_ns
from tokbench.fileio import atomic_write_text, cache_root
from tokbench.schema.efficiency import HardwarePeak

if TYPE_CHECKING:
    import torch

PROBE_SCHEMA_VERSION = 1
KIND_TABLE = "table"
KIND_PROBE = "probe"

_TERA = 1e12
_GIGA = 1e9


@dataclass(frozen=True)
class AcceleratorSpec:
    """Published peaks of one accelerator model; ``pattern`` is matched against the device name."""

    name: str
    pattern: str  # regular expression, case-insensitive, searched in torch's device name
    memory_bandwidth_bytes_s: float
    bf16_flops_s: float  # dense tensor-core peak; FP16 is the same on every entry here
    fp32_flops_s: float  # non-tensor-core peak (TF32 is off for torch matmuls by default)
    source: str

    def flops_s(self, dtype: str) -> float:
        return self.fp32_flops_s if dtype == "float32" else self.bf16_flops_s


_NVIDIA_H100 = "https://www.nvidia.com/en-us/data-center/h100/ (H100 datasheet; dense = sparse figure / 2)"
_NVIDIA_H200 = "https://www.nvidia.com/en-us/data-center/h200/ (H200 datasheet; dense = sparse figure / 2)"
_NVIDIA_A100 = (
    "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
    "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf (A100 datasheet)"
)

# Most specific first: the first pattern that matches wins.
ACCELERATORS: tuple[AcceleratorSpec, ...] = (
    AcceleratorSpec("NVIDIA H200 NVL", r"h200.*nvl", 4.8 * _TERA, 835.5 * _TERA, 60 * _TERA, _NVIDIA_H200),
    AcceleratorSpec("NVIDIA H200 SXM", r"h200", 4.8 * _TERA, 989.5 * _TERA, 67 * _TERA, _NVIDIA_H200),
    AcceleratorSpec("NVIDIA H100 NVL", r"h100.*nvl", 3.9 * _TERA, 835.5 * _TERA, 60 * _TERA, _NVIDIA_H100),
    AcceleratorSpec("NVIDIA H100 PCIe", r"h100.*pcie", 2.0 * _TERA, 756.5 * _TERA, 51 * _TERA, _NVIDIA_H100),
    AcceleratorSpec("NVIDIA H100 SXM", r"h100", 3.35 * _TERA, 989.5 * _TERA, 67 * _TERA, _NVIDIA_H100),
    AcceleratorSpec("NVIDIA A100 SXM4 80GB", r"a100.*sxm.*80", 2.039 * _TERA, 312 * _TERA, 19.5 * _TERA, _NVIDIA_A100),
    AcceleratorSpec("NVIDIA A100 PCIe 80GB", r"a100.*80", 1.935 * _TERA, 312 * _TERA, 19.5 * _TERA, _NVIDIA_A100),
    AcceleratorSpec("NVIDIA A100 40GB", r"a100", 1.555 * _TERA, 312 * _TERA, 19.5 * _TERA, _NVIDIA_A100),
    AcceleratorSpec(
        "NVIDIA L40S", r"\bl40s\b", 864 * _GIGA, 362.05 * _TERA, 91.6 * _TERA,
        "https://www.nvidia.com/en-us/data-center/l40s/ (L40S datasheet; dense = sparse figure / 2)",
    ),
    AcceleratorSpec(
        "NVIDIA L4", r"\bl4\b", 300 * _GIGA, 121 * _TERA, 30.3 * _TERA,
        "https://www.nvidia.com/en-us/data-center/l4/ (L4 datasheet; dense = sparse figure / 2)",
    ),
    AcceleratorSpec(
        "NVIDIA A10G", r"\ba10g\b", 600 * _GIGA, 70 * _TERA, 31.52 * _TERA,
        "https://www.baseten.co/blog/nvidia-a10-vs-a10g-for-ml-model-inference/ (NVIDIA publishes no A10G "
        "datasheet; AWS G5 figures as compiled there)",
    ),
    AcceleratorSpec(
        "NVIDIA A10", r"\ba10\b", 600 * _GIGA, 125 * _TERA, 31.2 * _TERA,
        "https://www.nvidia.com/en-us/data-center/products/a10-gpu/ (A10 datasheet; dense = sparse figure / 2)",
    ),
    AcceleratorSpec(
        "AMD Instinct MI325X", r"mi325x", 6.0 * _TERA, 1307.4 * _TERA, 163.4 * _TERA,
        "https://www.amd.com/en/products/accelerators/instinct/mi300/mi325x.html (dense BF16, FP32 matrix)",
    ),
    AcceleratorSpec(
        "AMD Instinct MI300X", r"mi300x", 5.3 * _TERA, 1307.4 * _TERA, 163.4 * _TERA,
        "https://www.amd.com/en/products/accelerators/instinct/mi300/mi300x.html (dense BF16, FP32 matrix)",
    ),
    AcceleratorSpec(
        "AMD Instinct MI250X", r"mi250x", 3.2768 * _TERA, 383 * _TERA, 95.7 * _TERA,
        "https://www.amd.com/en/products/accelerators/instinct/mi200/mi250x.html (BF16 and FP32 matrix)",
    ),
)  # fmt: skip


def find_accelerator(device_name: str) -> AcceleratorSpec | None:
    """The table entry for a device name such as ``NVIDIA H100 80GB HBM3``, or None."""
    for spec in ACCELERATORS:
        if re.search(spec.pattern, device_name, flags=re.IGNORECASE):
            return spec
    return None


# --- the probe ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeSettings:
    copy_bytes: int  # size of the source buffer; each copy reads and writes it once
    matmul_size: int  # square matmul side
    min_repeats: int = 3
    budget_s: float = 0.1  # per measurement, after the warm-up call

    @classmethod
    def for_device(cls, device_type: str) -> ProbeSettings:
        if device_type == "cpu":
            return cls(copy_bytes=128 * 2**20, matmul_size=1024)
        return cls(copy_bytes=1024 * 2**20, matmul_size=8192)


def _best_time_ns(work: Any, device: torch.device, settings: ProbeSettings, clock: Clock) -> int:
    from tokbench.hardware.devices import synchronize

    work()  # first touch / kernel selection stay out of the figure
    synchronize(device)
    best: int | None = None
    started = clock()
    repeats = 0
    while repeats < settings.min_repeats or clock() - started < settings.budget_s * 1e9:
        start = clock()
        work()
        synchronize(device)
        elapsed = max(1, clock() - start)
        best = elapsed if best is None else min(best, elapsed)
        repeats += 1
        if repeats >= 50:
            break
    assert best is not None
    return best


def _copy_time_ns(device: torch.device, settings: ProbeSettings, clock: Clock) -> int:
    import torch

    source = torch.ones(settings.copy_bytes // 4, dtype=torch.float32, device=device)
    target = torch.empty_like(source)
    return _best_time_ns(lambda: target.copy_(source), device, settings, clock)


def probe(
    device: torch.device, dtype: str, settings: ProbeSettings | None = None, clock: Clock = perf_counter_ns
) -> dict[str, Any]:
    """Measure copy bandwidth and matmul FLOP/s on ``device``: best of a few, after a warm-up call."""
    import torch

    settings = settings or ProbeSettings.for_device(device.type)
    copy_ns = _copy_time_ns(device, settings, clock)
    size = settings.matmul_size
    left = torch.randn(size, size, device=device).to(getattr(torch, dtype))
    right = torch.randn(size, size, device=device).to(getattr(torch, dtype))
    matmul_ns = _best_time_ns(lambda: torch.mm(left, right), device, settings, clock)
    return {
        "copy_bandwidth_bytes_s": 2 * settings.copy_bytes / (copy_ns / 1e9),  # read + write
        "matmul_flops_s": 2 * size**3 / (matmul_ns / 1e9),
        "copy_bytes": settings.copy_bytes,
        "matmul_size": size,
        "threads": torch.get_num_threads(),
    }


def _device_name(device: torch.device) -> str:
    from tokbench.hardware.devices import device_name

    return device_name(device)


def probe_cache_key(device: torch.device, dtype: str) -> dict[str, Any]:
    import torch

    return {
        "schema": PROBE_SCHEMA_VERSION,
        "device_type": device.type,
        "device_name": _device_name(device),
        "dtype": dtype,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }


def default_probe_dir() -> Path:
    return cache_root() / "hardware"


def cached_probe(
    device: torch.device, dtype: str, cache_dir: Path | None = None, clock: Clock = perf_counter_ns
) -> tuple[dict[str, Any], Path, bool]:
    """The probe's figures for this machine and dtype, from the cache or measured now (then cached).

    Returns the figures, the cache file, and whether they came from the cache.
    """
    directory = cache_dir if cache_dir is not None else default_probe_dir()
    key = probe_cache_key(device, dtype)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = directory / f"probe-{device.type}-{digest}.json"
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored.get("key") == key:
            return stored["figures"], path, True
    except (OSError, ValueError, KeyError, AttributeError):
        pass  # absent or unreadable: probe again and overwrite
    figures = probe(device, dtype, clock=clock)
    figures["measured_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with suppress(OSError):  # a read-only cache folder costs a re-probe next time, not the result
        atomic_write_text(path, json.dumps({"key": key, "figures": figures}, indent=1))
    return figures, path, False


def peak_for(
    device: torch.device, dtype: str, cache_dir: Path | None = None, clock: Clock = perf_counter_ns
) -> HardwarePeak:
    """The table entry for a known accelerator, else this machine's cached probe."""
    name = _device_name(device)
    if device.type == "cuda":
        spec = find_accelerator(name)
        if spec is not None:
            return HardwarePeak(
                name, dtype, spec.memory_bandwidth_bytes_s, spec.flops_s(dtype), KIND_TABLE,
                f"table entry {spec.name}: {spec.source}",
            )  # fmt: skip
    figures, path, from_cache = cached_probe(device, dtype, cache_dir, clock)
    source = (
        f"measured probe ({figures['copy_bytes'] // 2**20} MiB copy, {figures['matmul_size']}² {dtype} matmul, "
        f"{figures['threads']} threads, {figures.get('measured_at', '?')}; "
        f"{'cached' if from_cache else 'now cached'} in {path})"
    )
    return HardwarePeak(
        name, dtype, float(figures["copy_bandwidth_bytes_s"]), float(figures["matmul_flops_s"]), KIND_PROBE, source
    )

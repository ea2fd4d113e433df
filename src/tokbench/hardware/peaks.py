"""The hardware limit efficiency is measured against: a table of known accelerators, or a measured probe.

Every ``HardwarePeak`` says where its figures come from. Table figures are the vendors' published dense
(no structured sparsity) peaks; FP32 is the non-tensor-core figure, since torch keeps TF32 off for
matmuls by default. CPUs and accelerators not in the table get a short probe: after a warm round, the
median of several timed rounds of a large copy (memory bandwidth) and of a square matmul in the run's dtype
(FLOP/s), with the spread of the rounds (quartiles, min, max, n) kept in the record. A single best or
single timing moves with whatever else the machine does (34.9 then 53.6 GB/s on one machine); the median
of rounds moves much less, and the spread says how much to trust it.

The figures are cached on disk per machine, dtype, torch version and thread count under
``$TOKBENCH_CACHE_DIR/hardware`` (else ``~/.cache/tokbench/hardware``), so every run on a machine divides
by the same peak. ``TOKBENCH_REPROBE=1`` measures again and replaces the cached figures. A cache file
that cannot be trusted (bad JSON, wrong types, NaN, infinite or non-positive figures) is ignored with a
``ProbeCacheWarning`` naming the file, and replaced by a fresh probe.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokbench.analysis.stats import percentiles
from tokbench.clock import Clock, perf_counter_ns
from tokbench.fileio import atomic_write_text, cache_root
from tokbench.schema.efficiency import HardwarePeak, ProbeRecord, RobustFigure

if TYPE_CHECKING:
    import torch

# 2: median of timed rounds with their spread (1 was the best of a few timings, which moved run to run)
PROBE_SCHEMA_VERSION = 2
REPROBE_ENV = "TOKBENCH_REPROBE"
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


def robust_figure(values: list[float]) -> RobustFigure:
    """The median of timed rounds with their quartiles and extremes."""
    q1, centre, q3 = percentiles(values, (25.0, 50.0, 75.0))
    return RobustFigure(median=centre, q1=q1, q3=q3, min=min(values), max=max(values), n=len(values))


class ProbeCacheWarning(UserWarning):
    """A cached probe file could not be used; it is measured again and replaced."""


@dataclass(frozen=True)
class ProbeSettings:
    copy_bytes: int  # size of the source buffer; each copy reads and writes it once
    matmul_size: int  # square matmul side
    rounds: int = 11  # timed rounds per figure, after one warm round; the figure is their median

    @classmethod
    def for_device(cls, device_type: str) -> ProbeSettings:
        if device_type == "cpu":
            return cls(copy_bytes=128 * 2**20, matmul_size=1024)
        return cls(copy_bytes=1024 * 2**20, matmul_size=8192)


def _round_times_ns(work: Any, device: torch.device, settings: ProbeSettings, clock: Clock) -> list[int]:
    """One warm round (first touch, kernel selection), then ``settings.rounds`` timed, synchronized rounds."""
    from tokbench.hardware.devices import synchronize

    work()
    synchronize(device)
    times = []
    for _ in range(settings.rounds):
        start = clock()
        work()
        synchronize(device)
        times.append(max(1, clock() - start))
    return times


def probe(
    device: torch.device, dtype: str, settings: ProbeSettings | None = None, clock: Clock = perf_counter_ns
) -> ProbeRecord:
    """Measure copy bandwidth and matmul FLOP/s on ``device``: the median of timed rounds, with their spread."""
    import torch

    settings = settings or ProbeSettings.for_device(device.type)
    if settings.rounds < 1:
        raise ValueError(f"the probe needs at least 1 round, got {settings.rounds}")
    source = torch.ones(settings.copy_bytes // 4, dtype=torch.float32, device=device)
    target = torch.empty_like(source)
    copy_ns = _round_times_ns(lambda: target.copy_(source), device, settings, clock)
    size = settings.matmul_size
    left = torch.randn(size, size, device=device).to(getattr(torch, dtype))
    right = torch.randn(size, size, device=device).to(getattr(torch, dtype))
    matmul_ns = _round_times_ns(lambda: torch.mm(left, right), device, settings, clock)
    return ProbeRecord(
        copy_bandwidth_bytes_s=robust_figure([2 * settings.copy_bytes * 1e9 / ns for ns in copy_ns]),  # read + write
        matmul_flops_s=robust_figure([2 * size**3 * 1e9 / ns for ns in matmul_ns]),
        copy_bytes=settings.copy_bytes,
        matmul_size=size,
        threads=torch.get_num_threads(),
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


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


def reprobe_requested() -> bool:
    """Whether ``TOKBENCH_REPROBE`` asks to measure again instead of reading the cache."""
    return os.environ.get(REPROBE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def read_probe_cache(path: Path, key: dict[str, Any]) -> ProbeRecord | None:
    """The cached record for ``key``, or None when there is none for it. A file that exists but cannot be
    trusted (bad JSON, wrong types, NaN / inf / non-positive figures) warns naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        warnings.warn(f"{path}: cannot read the hardware probe cache ({error.strerror}); probing again",
                      ProbeCacheWarning, stacklevel=3)  # fmt: skip
        return None
    try:
        stored = json.loads(text, parse_constant=_reject_constant)
        if not isinstance(stored, dict):
            raise ValueError("the file is not a JSON object")
        if stored.get("key") != key:
            return None  # another machine, dtype, torch or thread count (or an older probe): not this figure
        return ProbeRecord.from_dict(stored.get("figures"))
    except ValueError as error:  # json.JSONDecodeError is a ValueError
        reason = "it is not valid JSON" if isinstance(error, json.JSONDecodeError) else str(error)
        warnings.warn(f"{path}: ignoring an invalid hardware probe cache ({reason}); probing again and replacing it",
                      ProbeCacheWarning, stacklevel=3)  # fmt: skip
        return None


def _reject_constant(name: str) -> float:
    raise ValueError(f"a figure is {name}")


def cached_probe(
    device: torch.device,
    dtype: str,
    cache_dir: Path | None = None,
    clock: Clock = perf_counter_ns,
    *,
    reprobe: bool | None = None,
    settings: ProbeSettings | None = None,
) -> tuple[ProbeRecord, Path, bool]:
    """The probe's figures for this machine and dtype, from the cache or measured now (then cached).

    ``reprobe`` (default: ``TOKBENCH_REPROBE``) measures again even when the cache holds figures.
    Returns the record, the cache file, and whether it came from the cache.
    """
    directory = cache_dir if cache_dir is not None else default_probe_dir()
    key = probe_cache_key(device, dtype)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = directory / f"probe-{device.type}-{digest}.json"
    if not (reprobe if reprobe is not None else reprobe_requested()):
        stored = read_probe_cache(path, key)
        if stored is not None:
            return stored, path, True
    record = probe(device, dtype, settings=settings, clock=clock)
    with suppress(OSError):  # a read-only cache folder costs a re-probe next time, not the result
        atomic_write_text(path, json.dumps({"key": key, "figures": record.to_dict()}, indent=1, allow_nan=False))
    return record, path, False


def _holds(path: Path, record: ProbeRecord) -> bool:
    """Whether the cache file at ``path`` holds exactly ``record`` (it was written just now)."""
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("figures") == record.to_dict()
    except (OSError, ValueError, AttributeError):
        return False


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
    record, path, from_cache = cached_probe(device, dtype, cache_dir, clock)
    if from_cache:
        where = f"cached in {path}"
    elif _holds(path, record):
        where = f"now cached in {path}"
    else:  # the cache folder could not be written (read-only, full): say so, never "now cached"
        where = f"not cached: {path.parent} could not be written, so the next run measures again"
    source = f"measured probe ({record.describe(dtype)}; {where}; {REPROBE_ENV}=1 measures again)"
    return HardwarePeak(
        name, dtype, record.copy_bandwidth_bytes_s.median, record.matmul_flops_s.median, KIND_PROBE, source, record
    )

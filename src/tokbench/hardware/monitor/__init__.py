"""Hardware monitoring around the measured iterations: one sampler, a backend per thing watched.

- ``host`` (psutil, always): process CPU %, RSS, system CPU % and memory;
- ``nvml`` (nvidia-ml-py) when the model runs on an NVIDIA GPU: utilization, memory (device and this
  process), power, the hardware energy counter, SM / memory clocks, temperature, clock-event reasons;
- ``amdsmi`` when the model runs on a ROCm GPU and ``amdsmi`` is importable.

A backend that cannot run is a recorded status (``unavailable: <reason>``), never a crash and never a
silent empty series. The sampler is started once around the whole measurement loop (never during
warmup): it samples synchronously at ``start`` and ``stop`` and every ``interval_ms`` in between on a
background thread, stamping each sample with the same clock as the token stamps.

``PeakMemoryTracker.wrap(generate_once)`` records the memory peak of each measured call: the torch
allocator's peak allocated / reserved bytes on CUDA, the process's peak RSS on CPU (Linux ``VmHWM``,
reset before each call through ``/proc/self/clear_refs``).

Modules: ``backends`` (host / NVML / amdsmi, device matching, ``nvml_environment``), ``sampler``
(``Sampler``), ``peak_memory`` (``PeakMemoryTracker``); records in ``tokbench.schema.monitor``.

This package imports neither torch nor the vendor libraries at import time, so results stay cheap to read.
"""

from tokbench.hardware.monitor.backends import (
    AMDSMI,
    GPU,
    NVML,
    AmdSmiBackend,
    Backend,
    BackendUnavailable,
    HostBackend,
    NvmlBackend,
    describe_error,
    gpu_backend_for,
    match_device,
    normalize_uuid,
    nvml_environment,
    unavailable,
    visible_device_entry,
)
from tokbench.hardware.monitor.peak_memory import PeakMemoryTracker, reset_peak_rss
from tokbench.hardware.monitor.sampler import (
    DEFAULT_INTERVAL_MS,
    PHASE_DECODE,
    PHASE_OUTSIDE,
    PHASE_PREFILL,
    Sampler,
)

__all__ = [
    "AMDSMI",
    "DEFAULT_INTERVAL_MS",
    "GPU",
    "NVML",
    "PHASE_DECODE",
    "PHASE_OUTSIDE",
    "PHASE_PREFILL",
    "AmdSmiBackend",
    "Backend",
    "BackendUnavailable",
    "HostBackend",
    "NvmlBackend",
    "PeakMemoryTracker",
    "Sampler",
    "describe_error",
    "gpu_backend_for",
    "match_device",
    "normalize_uuid",
    "nvml_environment",
    "reset_peak_rss",
    "unavailable",
    "visible_device_entry",
]

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

This module imports neither torch nor the vendor libraries at import time, so results stay cheap to read.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tokbench.clock import Clock, monotonic_ns

if TYPE_CHECKING:
    import torch

DEFAULT_INTERVAL_MS = 50
STATUS_OK = "ok"
HOST = "host"
NVML = "nvml"
AMDSMI = "amdsmi"
GPU = "gpu"  # the GPU slot when no GPU backend applies (the model runs on the CPU)

Value = float | int | None
T = TypeVar("T")


class BackendUnavailable(Exception):
    """A backend cannot sample here; the message is the recorded reason."""


# --- records -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleSeries:
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "status": self.status,
            "device": self.device,
            "timestamps_ns": list(self.timestamps_ns),
            "columns": {name: list(values) for name, values in self.columns.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SampleSeries:
        return cls(
            backend=str(data["backend"]),
            status=str(data["status"]),
            device=str(data.get("device", "")),
            timestamps_ns=tuple(int(t) for t in data.get("timestamps_ns", ())),
            columns={str(k): tuple(v) for k, v in data.get("columns", {}).items()},
        )


@dataclass(frozen=True)
class MonitorRecord:
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "interval_ms": self.interval_ms,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "series": [s.to_dict() for s in self.series],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MonitorRecord:
        return cls(
            interval_ms=int(data["interval_ms"]),
            start_ns=int(data["start_ns"]),
            end_ns=int(data["end_ns"]),
            series=tuple(SampleSeries.from_dict(s) for s in data.get("series", ())),
        )


@dataclass(frozen=True)
class MemoryPeak:
    """Peak memory of one measured generate call. ``source`` says what was measured."""

    source: str  # "torch.cuda allocator" | "VmHWM (peak RSS)" | "RSS after the call"
    peak_allocated_bytes: int | None = None  # accelerators: torch allocator, tensors
    peak_reserved_bytes: int | None = None  # accelerators: torch allocator, cached segments
    peak_rss_bytes: int | None = None  # CPU: the process's resident set

    @property
    def peak_bytes(self) -> int | None:
        """The peak that bounds what this call needed: allocated on accelerators, RSS on CPU."""
        return self.peak_allocated_bytes if self.peak_allocated_bytes is not None else self.peak_rss_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "peak_allocated_bytes": self.peak_allocated_bytes,
            "peak_reserved_bytes": self.peak_reserved_bytes,
            "peak_rss_bytes": self.peak_rss_bytes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryPeak:
        return cls(
            source=str(data["source"]),
            peak_allocated_bytes=data.get("peak_allocated_bytes"),
            peak_reserved_bytes=data.get("peak_reserved_bytes"),
            peak_rss_bytes=data.get("peak_rss_bytes"),
        )


def unavailable(reason: str) -> str:
    return f"unavailable: {reason}"


def describe_error(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# --- backends ----------------------------------------------------------------------------------------


class Backend:
    """One thing to watch. ``open`` raises ``BackendUnavailable``; ``read`` returns one sample's values."""

    name = ""

    def __init__(self) -> None:
        self.device = ""

    def open(self) -> None:
        raise NotImplementedError

    def read(self) -> dict[str, Value]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the library; must not raise."""


class _Fields:
    """Reads named quantities, dropping one for good the first time its call fails (unsupported here)."""

    def __init__(self, readers: dict[str, Callable[[], Value]]) -> None:
        self._readers = readers
        self._dead: set[str] = set()

    def read(self) -> dict[str, Value]:
        values: dict[str, Value] = {}
        for name, reader in self._readers.items():
            if name in self._dead:
                values[name] = None
                continue
            try:
                values[name] = reader()
            except Exception:  # NotSupported, no permission, not in this driver: the column stays None
                self._dead.add(name)
                values[name] = None
        return values


class HostBackend(Backend):
    """This process and the host through psutil."""

    name = HOST

    def open(self) -> None:
        try:
            import psutil
        except ImportError as error:  # pragma: no cover - psutil is a dependency
            raise BackendUnavailable("psutil is not installed") from error
        self._psutil = psutil
        self._process = psutil.Process()
        self.device = f"pid {self._process.pid}"
        # cpu_percent compares with the previous call: prime both so the first sample means something.
        self._process.cpu_percent(None)
        psutil.cpu_percent(None)

    def read(self) -> dict[str, Value]:
        process = self._process
        with process.oneshot():
            cpu = process.cpu_percent(None)
            rss = process.memory_info().rss
        memory = self._psutil.virtual_memory()
        return {
            "process_cpu_percent": cpu,
            "rss_bytes": int(rss),
            "system_cpu_percent": self._psutil.cpu_percent(None),
            "system_memory_used_bytes": int(memory.total - memory.available),
        }


def normalize_uuid(uuid: str) -> str:
    """A GPU UUID without its ``GPU-`` / ``MIG-`` prefix, lower case: NVML and CUDA spell them differently."""
    text = str(uuid).strip().lower()
    for prefix in ("gpu-", "mig-"):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def visible_device_entry(torch_index: int, visible_devices: str | None) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` entry behind torch's device ``torch_index`` (the index itself if unset).

    CUDA renumbers the visible devices from 0, so ``cuda:0`` under ``CUDA_VISIBLE_DEVICES=2,3`` is physical
    GPU 2. Entries may be indices or (possibly abbreviated) UUIDs.
    """
    if not visible_devices or not visible_devices.strip():
        return str(torch_index)
    entries = [entry.strip() for entry in visible_devices.split(",") if entry.strip()]
    if torch_index >= len(entries):
        raise BackendUnavailable(f"torch device {torch_index} is not among CUDA_VISIBLE_DEVICES={visible_devices!r}")
    return entries[torch_index]


def match_device(
    torch_index: int,
    torch_uuid: str | None,
    physical_uuids: list[str],
    visible_devices: str | None,
) -> int:
    """The physical (NVML / SMI) index of torch's ``cuda:torch_index``.

    Best by UUID (exact whatever the device order); otherwise through ``CUDA_VISIBLE_DEVICES``: an index
    entry, or a UUID prefix matched against the physical devices.
    """
    normalized = [normalize_uuid(u) for u in physical_uuids]
    if torch_uuid:
        wanted = normalize_uuid(torch_uuid)
        if wanted in normalized:
            return normalized.index(wanted)
    entry = visible_device_entry(torch_index, visible_devices)
    if entry.isdigit():
        index = int(entry)
        if index >= len(physical_uuids):
            raise BackendUnavailable(f"physical GPU {index} does not exist ({len(physical_uuids)} found)")
        return index
    prefix = normalize_uuid(entry)
    matches = [i for i, uuid in enumerate(normalized) if uuid.startswith(prefix)]
    if len(matches) != 1:
        raise BackendUnavailable(f"CUDA_VISIBLE_DEVICES entry {entry!r} matches {len(matches)} GPUs")
    return matches[0]


def _torch_device_uuid(index: int) -> str | None:
    import torch

    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    return str(uuid) if uuid is not None else None


def _load_pynvml() -> Any:
    """nvidia-ml-py initialised, or ``BackendUnavailable`` saying exactly what is missing."""
    try:
        import pynvml
    except ImportError as error:
        raise BackendUnavailable("nvidia-ml-py is not installed (pip install nvidia-ml-py)") from error
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound as error:
        raise BackendUnavailable("NVML library not found (no NVIDIA driver on this machine)") from error
    except pynvml.NVMLError_DriverNotLoaded as error:
        raise BackendUnavailable("the NVIDIA driver is not loaded") from error
    except pynvml.NVMLError as error:
        raise BackendUnavailable(f"NVML failed to initialise: {describe_error(error)}") from error
    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlBackend(Backend):
    """The NVIDIA GPU torch calls ``cuda:torch_index``, through NVML."""

    name = NVML

    def __init__(self, torch_index: int, torch_uuid: str | None = None, visible_devices: str | None = None) -> None:
        super().__init__()
        self.torch_index = torch_index
        self.torch_uuid = torch_uuid
        self.visible_devices = (
            visible_devices if visible_devices is not None else os.environ.get("CUDA_VISIBLE_DEVICES")
        )
        self._nvml: Any = None

    def open(self) -> None:
        nvml = _load_pynvml()
        self._nvml = nvml
        try:
            count = nvml.nvmlDeviceGetCount()
            uuids = [_text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))) for i in range(count)]
            physical = match_device(self.torch_index, self.torch_uuid, uuids, self.visible_devices)
            handle = nvml.nvmlDeviceGetHandleByIndex(physical)
            name = _text(nvml.nvmlDeviceGetName(handle))
        except BackendUnavailable:
            self.close()
            raise
        except nvml.NVMLError as error:
            self.close()
            raise BackendUnavailable(f"NVML could not open cuda:{self.torch_index}: {describe_error(error)}") from error
        self.device = f"cuda:{self.torch_index} = NVML GPU {physical} {name} ({uuids[physical]})"
        pid = os.getpid()

        def process_memory() -> Value:
            # In a container the PIDs NVML reports are the host's: then this stays None.
            for process in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if process.pid == pid:
                    return None if process.usedGpuMemory is None else int(process.usedGpuMemory)
            return None

        def utilization() -> Any:
            return nvml.nvmlDeviceGetUtilizationRates(handle)

        event_reasons = (
            getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
            or nvml.nvmlDeviceGetCurrentClocksThrottleReasons
        )
        self._fields = _Fields(
            {
                "gpu_util_percent": lambda: utilization().gpu,
                "memory_util_percent": lambda: utilization().memory,
                "memory_used_bytes": lambda: int(nvml.nvmlDeviceGetMemoryInfo(handle).used),
                "process_memory_bytes": process_memory,
                "power_w": lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
                "energy_mj": lambda: int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle)),
                "sm_clock_mhz": lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM),
                "memory_clock_mhz": lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM),
                "temperature_c": lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
                "clock_event_reasons": lambda: int(event_reasons(handle)),  # bitmask; 0 or GpuIdle = no throttling
            }
        )

    def read(self) -> dict[str, Value]:
        return self._fields.read()

    def close(self) -> None:
        if self._nvml is not None:
            with suppress(Exception):  # shutting down a half-open NVML must not hide the real reason
                self._nvml.nvmlShutdown()
            self._nvml = None


def _load_amdsmi() -> Any:
    try:
        import amdsmi
    except Exception as error:  # ImportError, or OSError when the ROCm library behind it is missing
        raise BackendUnavailable(f"amdsmi is not importable ({describe_error(error)})") from error
    try:
        amdsmi.amdsmi_init()
    except Exception as error:
        raise BackendUnavailable(f"amdsmi failed to initialise: {describe_error(error)}") from error
    return amdsmi


class AmdSmiBackend(Backend):
    """The AMD GPU torch (ROCm build) calls ``cuda:torch_index``, through amdsmi."""

    name = AMDSMI

    def __init__(self, torch_index: int, torch_uuid: str | None = None, visible_devices: str | None = None) -> None:
        super().__init__()
        self.torch_index = torch_index
        self.torch_uuid = torch_uuid
        if visible_devices is None:
            visible_devices = next(
                (os.environ[v] for v in ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")
                 if os.environ.get(v)),
                None,
            )  # fmt: skip
        self.visible_devices = visible_devices
        self._smi: Any = None

    def open(self) -> None:
        smi = _load_amdsmi()
        self._smi = smi
        try:
            handles = smi.amdsmi_get_processor_handles()
            uuids = []
            for handle in handles:
                try:
                    uuids.append(_text(smi.amdsmi_get_gpu_device_uuid(handle)))
                except Exception:
                    uuids.append("")
            physical = match_device(self.torch_index, self.torch_uuid, uuids, self.visible_devices)
            handle = handles[physical]
        except BackendUnavailable:
            self.close()
            raise
        except Exception as error:
            self.close()
            raise BackendUnavailable(
                f"amdsmi could not open cuda:{self.torch_index}: {describe_error(error)}"
            ) from error
        self.device = f"cuda:{self.torch_index} = amdsmi GPU {physical} ({uuids[physical]})"

        def number(value: Any) -> Value:
            return value if isinstance(value, int | float) else None  # amdsmi reports "N/A" as a string

        def energy_mj() -> Value:
            counter = smi.amdsmi_get_energy_count(handle)
            accumulator = counter.get("energy_accumulator", counter.get("power"))
            return accumulator * counter["counter_resolution"] / 1000.0  # resolution is in µJ

        def power_w() -> Value:
            info = smi.amdsmi_get_power_info(handle)
            return number(info.get("current_socket_power", info.get("average_socket_power")))

        self._fields = _Fields(
            {
                "gpu_util_percent": lambda: number(smi.amdsmi_get_gpu_activity(handle)["gfx_activity"]),
                "memory_util_percent": lambda: number(smi.amdsmi_get_gpu_activity(handle)["umc_activity"]),
                "memory_used_bytes": lambda: int(smi.amdsmi_get_gpu_vram_usage(handle)["vram_used"]) * 1024 * 1024,
                "power_w": power_w,
                "energy_mj": energy_mj,
                "sm_clock_mhz": lambda: number(smi.amdsmi_get_clock_info(handle, smi.AmdSmiClkType.GFX)["clk"]),
                "memory_clock_mhz": lambda: number(smi.amdsmi_get_clock_info(handle, smi.AmdSmiClkType.MEM)["clk"]),
                "temperature_c": lambda: number(
                    smi.amdsmi_get_temp_metric(
                        handle, smi.AmdSmiTemperatureType.HOTSPOT, smi.AmdSmiTemperatureMetric.CURRENT
                    )
                ),
            }
        )

    def read(self) -> dict[str, Value]:
        return self._fields.read()

    def close(self) -> None:
        if self._smi is not None:
            with suppress(Exception):
                self._smi.amdsmi_shut_down()
            self._smi = None


def gpu_backend_for(device: torch.device) -> Backend | str:
    """The backend for the GPU the model runs on, or the reason there is none."""
    if device.type != "cuda":
        return unavailable(f"the model runs on {device.type}, not on a GPU")
    import torch

    index = device.index if device.index is not None else torch.cuda.current_device()
    uuid = _torch_device_uuid(index)
    if getattr(torch.version, "hip", None):
        return AmdSmiBackend(index, uuid)
    return NvmlBackend(index, uuid)


# --- the sampler -------------------------------------------------------------------------------------


class _Series:
    """A backend's samples while running (mutable; frozen into a SampleSeries by ``stop``)."""

    def __init__(self, backend: Backend | None, status: str, name: str, device: str = "") -> None:
        self.backend = backend
        self.status = status
        self.name = name
        self.device = device
        self.timestamps_ns: list[int] = []
        self.rows: list[dict[str, Value]] = []

    def sample(self, clock: Clock) -> None:
        if self.backend is None or self.status != STATUS_OK:
            return
        try:
            values = self.backend.read()
        except Exception as error:  # a backend that breaks mid-run stops; the others go on
            self.status = f"failed after {len(self.rows)} samples: {describe_error(error)}"
            return
        self.timestamps_ns.append(clock())
        self.rows.append(values)

    def freeze(self) -> SampleSeries:
        names: list[str] = []
        for row in self.rows:
            names.extend(name for name in row if name not in names)
        columns = {name: tuple(row.get(name) for row in self.rows) for name in names}
        return SampleSeries(self.name, self.status, self.device, tuple(self.timestamps_ns), columns)


class Sampler:
    """Samples its backends from ``start`` to ``stop``; use as ``with sampler: <measured loop>``.

    Opening the backends (``open``, done by the constructor) happens before the measurement so the
    library start-up cost never lands inside it. After ``stop``, ``record`` holds the frozen result.
    """

    def __init__(
        self,
        backends: list[Backend | tuple[str, str]],
        interval_ms: int = DEFAULT_INTERVAL_MS,
        clock: Clock = monotonic_ns,
    ) -> None:
        if interval_ms < 1:
            raise ValueError(f"interval_ms must be >= 1, got {interval_ms}")
        self.interval_ms = interval_ms
        self.clock = clock
        self._series: list[_Series] = []
        for backend in backends:
            if isinstance(backend, tuple):  # (name, status): a slot that records only why it is empty
                self._series.append(_Series(None, backend[1], backend[0]))
                continue
            try:
                backend.open()
            except BackendUnavailable as error:
                self._series.append(_Series(None, unavailable(str(error)), backend.name))
                continue
            except Exception as error:
                backend.close()
                self._series.append(_Series(None, unavailable(describe_error(error)), backend.name))
                continue
            self._series.append(_Series(backend, STATUS_OK, backend.name, backend.device))
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_ns: int | None = None
        self.record: MonitorRecord | None = None

    @classmethod
    def for_device(
        cls, device: torch.device, interval_ms: int = DEFAULT_INTERVAL_MS, clock: Clock = monotonic_ns
    ) -> Sampler:
        """The host, plus the GPU backend for ``device`` (or a ``gpu`` slot saying why there is none)."""
        try:
            gpu = gpu_backend_for(device)
        except Exception as error:  # e.g. torch cannot describe the device: no GPU samples, still a result
            gpu = unavailable(f"the GPU backend could not be set up: {describe_error(error)}")
        return cls([HostBackend(), gpu if isinstance(gpu, Backend) else (GPU, gpu)], interval_ms, clock)

    def _sample_all(self) -> None:
        for series in self._series:
            series.sample(self.clock)

    def _loop(self) -> None:
        interval_s = self.interval_ms / 1000.0
        next_due = time.monotonic() + interval_s
        while not self._stop_event.wait(max(0.0, next_due - time.monotonic())):
            self._sample_all()
            next_due += interval_s
            now = time.monotonic()
            if next_due < now:  # fell behind (a long sample, a descheduled thread): skip, don't burst
                next_due = now + interval_s

    def start(self) -> None:
        if self._start_ns is not None:
            raise RuntimeError("a Sampler is started once")
        self._start_ns = self.clock()
        self._sample_all()  # a sample at the very start of the window
        self._thread = threading.Thread(target=self._loop, name="tokbench-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> MonitorRecord:
        if self._start_ns is None or self._thread is None:
            raise RuntimeError("stop() before start()")
        if self.record is not None:
            return self.record
        self._stop_event.set()
        self._thread.join()
        self._sample_all()  # and one at its very end
        end_ns = self.clock()
        self.close()
        self.record = MonitorRecord(
            self.interval_ms, self._start_ns, end_ns, tuple(series.freeze() for series in self._series)
        )
        return self.record

    def close(self) -> None:
        """Release the vendor libraries (also for a sampler that never started)."""
        for series in self._series:
            if series.backend is not None:
                series.backend.close()

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- per-iteration peak memory -----------------------------------------------------------------------

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def _read_vm_hwm_bytes() -> int | None:
    try:
        for line in _STATUS.read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError):
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0); False where that is impossible."""
    try:
        _CLEAR_REFS.write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


class PeakMemoryTracker:
    """Wraps a generate-once callable so each call records its memory peak into ``peaks``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peaks: list[MemoryPeak] = []

    @contextmanager
    def measure(self) -> Iterator[None]:
        if self.device.type == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
            yield
            self.peaks.append(
                MemoryPeak(
                    "torch.cuda allocator",
                    peak_allocated_bytes=int(torch.cuda.max_memory_allocated(self.device)),
                    peak_reserved_bytes=int(torch.cuda.max_memory_reserved(self.device)),
                    peak_rss_bytes=_read_vm_hwm_bytes(),
                )
            )
            return
        hwm_resettable = reset_peak_rss() and _read_vm_hwm_bytes() is not None
        yield
        if hwm_resettable:
            self.peaks.append(MemoryPeak("VmHWM (peak RSS)", peak_rss_bytes=_read_vm_hwm_bytes()))
        else:  # no per-call peak here: the RSS right after the call is a lower bound
            import psutil

            self.peaks.append(MemoryPeak("RSS after the call", peak_rss_bytes=int(psutil.Process().memory_info().rss)))

    def wrap(self, generate_once: Callable[[], T]) -> Callable[[], T]:
        def measured() -> T:
            with self.measure():
                return generate_once()

        return measured


# --- environment -------------------------------------------------------------------------------------


def nvml_environment(torch_indices: list[int] | None = None) -> dict[str, Any]:
    """Driver / CUDA driver version, and per visible GPU its clocks, power limit, persistence and MIG mode.

    Never raises: a missing library or GPU is ``{"status": "unavailable: ..."}``.
    """
    try:
        nvml = _load_pynvml()
    except BackendUnavailable as error:
        return {"status": unavailable(str(error))}
    try:
        info: dict[str, Any] = {"status": STATUS_OK}
        for key, call in (
            ("driver_version", lambda: _text(nvml.nvmlSystemGetDriverVersion())),
            ("nvml_version", lambda: _text(nvml.nvmlSystemGetNVMLVersion())),
            ("cuda_driver_version", lambda: nvml.nvmlSystemGetCudaDriverVersion_v2()),
        ):
            info[key] = _safe(call)
        count = nvml.nvmlDeviceGetCount()
        uuids = [_text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))) for i in range(count)]
        devices = []
        for torch_index in torch_indices or []:
            try:
                physical = match_device(
                    torch_index, _torch_device_uuid(torch_index), uuids, os.environ.get("CUDA_VISIBLE_DEVICES")
                )
            except BackendUnavailable as error:
                devices.append({"torch_index": torch_index, "status": unavailable(str(error))})
                continue
            handle = nvml.nvmlDeviceGetHandleByIndex(physical)
            devices.append(
                {
                    "torch_index": torch_index,
                    "nvml_index": physical,
                    "uuid": uuids[physical],
                    "name": _safe(lambda h=handle: _text(nvml.nvmlDeviceGetName(h))),
                    "sm_clock_mhz": _safe(lambda h=handle: nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM)),
                    "memory_clock_mhz": _safe(lambda h=handle: nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_MEM)),
                    "max_sm_clock_mhz": _safe(lambda h=handle: nvml.nvmlDeviceGetMaxClockInfo(h, nvml.NVML_CLOCK_SM)),
                    "max_memory_clock_mhz": _safe(
                        lambda h=handle: nvml.nvmlDeviceGetMaxClockInfo(h, nvml.NVML_CLOCK_MEM)
                    ),
                    "power_limit_w": _safe(lambda h=handle: nvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0),
                    "temperature_c": _safe(
                        lambda h=handle: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)
                    ),
                    "persistence_mode": _safe(lambda h=handle: bool(nvml.nvmlDeviceGetPersistenceMode(h))),
                    "mig_mode": _safe(lambda h=handle: nvml.nvmlDeviceGetMigMode(h)[0]),
                }
            )
        info["devices"] = devices
        return info
    except Exception as error:
        return {"status": f"failed: {describe_error(error)}"}
    finally:
        with suppress(Exception):
            nvml.nvmlShutdown()


def _safe(call: Callable[[], T]) -> T | None:
    try:
        return call()
    except Exception:  # not supported on this GPU or driver: recorded as None
        return None

"""Monitoring backends: host (psutil), NVML, amdsmi; device matching by UUID / ``CUDA_VISIBLE_DEVICES``;
the NVML facts recorded in the environment. No torch or vendor library import at module level."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any, TypeVar

from tokbench.schema.monitor import HOST, STATUS_OK, Value

if TYPE_CHECKING:
    import torch

NVML = "nvml"
AMDSMI = "amdsmi"
GPU = "gpu"  # the GPU slot when no GPU backend applies (the model runs on the CPU)

T = TypeVar("T")


class BackendUnavailable(Exception):
    """A backend cannot sample here; the message is the recorded reason."""


def unavailable(reason: str) -> str:
    return f"unavailable: {reason}"


def describe_error(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


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

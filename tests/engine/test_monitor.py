"""Monitoring: real samplers on this machine, the unavailable paths for real, and the GPU paths on a GPU."""

from __future__ import annotations

import importlib.util
import itertools
import time
from pathlib import Path

import pytest
import torch

import tokbench
from tokbench.clock import FakeClock
from tokbench.config import BenchmarkConfig
from tokbench.hardware.monitor import (
    GPU,
    NVML,
    AmdSmiBackend,
    Backend,
    BackendUnavailable,
    HostBackend,
    NvmlBackend,
    PeakMemoryTracker,
    Sampler,
    match_device,
    nvml_environment,
    visible_device_entry,
)
from tokbench.schema.monitor import HOST, MemoryPeak, MonitorRecord, SampleSeries
from tokbench.schema.results import load_result, save_result

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_host_samples_span_exactly_the_measured_iterations(
    fast_config_fields: dict[str, object], tmp_path: Path
) -> None:
    config = BenchmarkConfig(**{**fast_config_fields, "measurement_iterations": 3, "monitor_interval_ms": 5})  # type: ignore[arg-type]
    result = tokbench.run(config, progress=False, device_warmup_s=0.01)
    assert result.status == "ok", result.reason
    record = result.monitor
    assert record is not None and record.interval_ms == 5
    host = record.get(HOST)
    assert host is not None and host.ok and host.device.startswith("pid ")
    stamps = host.timestamps_ns
    assert len(stamps) >= 2 and list(stamps) == sorted(stamps)
    # within the sampler's window, and covering every measured iteration from its t0 to its end
    assert record.start_ns <= stamps[0] and stamps[-1] <= record.end_ns
    assert stamps[0] <= result.iterations[0].t0_ns and stamps[-1] >= result.iterations[-1].end_ns
    # never during warmup: the warmups ran one after the other after the validation call
    cold = result.phases.cold_call
    assert cold is not None
    assert stamps[0] >= cold.end_ns + sum(result.phases.warmup_curve_ns)
    assert result.phases.measurement_wall_ns is not None
    assert record.end_ns - record.start_ns <= result.phases.measurement_wall_ns
    for name in ("process_cpu_percent", "rss_bytes", "system_cpu_percent", "system_memory_used_bytes"):
        assert len(host.column(name)) == len(stamps)
    assert all(value is not None and value > 0 for value in host.column("rss_bytes"))

    gpu = record.gpu
    assert gpu is not None and gpu.backend == GPU
    assert gpu.status == "unavailable: the model runs on cpu, not on a GPU" and gpu.timestamps_ns == ()

    assert len(result.memory_peaks) == config.measurement_iterations
    assert all(peak.peak_rss_bytes and peak.peak_rss_bytes > 0 for peak in result.memory_peaks)

    report = result.efficiency
    assert report is not None
    assert report.peak is not None and report.peak.kind == "probe" and report.peak.memory_bandwidth_bytes_s > 0
    assert report.mbu is not None and report.mbu > 0
    assert report.mfu is not None and report.mfu > 0
    assert report.peak_memory_bytes == max(peak.peak_rss_bytes for peak in result.memory_peaks)  # type: ignore[type-var]
    assert report.energy_j is None and report.energy_status.startswith("unavailable: the model runs on cpu")
    assert not [note for note in result.notes if note.startswith("monitor")]

    assert load_result(save_result(result, tmp_path / "r.json")) == result


class _BreaksAfter(Backend):
    """A backend whose device goes away after ``reads`` samples."""

    name = "flaky"

    def __init__(self, reads: int) -> None:
        super().__init__()
        self.reads = reads

    def open(self) -> None:
        self.device = "test device"

    def read(self) -> dict[str, float | int | None]:
        if self.reads == 0:
            raise RuntimeError("device lost")
        self.reads -= 1
        return {"value_percent": 1.0}


class _Unavailable(Backend):
    name = "absent"

    def open(self) -> None:
        raise BackendUnavailable("no such device here")


def test_sampler_stamps_with_the_given_clock_and_records_every_backends_fate() -> None:
    clock = FakeClock(start_ns=1_000, step_ns=10)
    sampler = Sampler([HostBackend(), _BreaksAfter(reads=2), _Unavailable(), ("gpu", "unavailable: test")], 1, clock)
    with sampler:
        time.sleep(0.05)
    record = sampler.record
    assert record is not None and sampler.stop() is record  # stop is idempotent
    host, flaky, absent, gpu = record.series
    assert host.ok and len(host.timestamps_ns) >= 3  # start, at least one tick, stop
    assert all(later - earlier >= 10 for earlier, later in itertools.pairwise(host.timestamps_ns))
    assert record.start_ns == 1_000 and record.end_ns > host.timestamps_ns[-1]
    assert flaky.status == "failed after 2 samples: RuntimeError: device lost"
    assert flaky.column("value_percent") == (1.0, 1.0)
    assert absent.status == "unavailable: no such device here" and absent.timestamps_ns == ()
    assert gpu.status == "unavailable: test"
    with pytest.raises(RuntimeError):
        sampler.start()


@no_cuda
def test_nvml_without_a_driver_is_a_recorded_status_not_a_crash() -> None:
    backend = NvmlBackend(0, visible_devices=None)
    with pytest.raises(BackendUnavailable) as caught:
        backend.open()
    if importlib.util.find_spec("pynvml") is None:
        assert "nvidia-ml-py is not installed" in str(caught.value)
    else:
        assert "NVML library not found" in str(caught.value) or "driver is not loaded" in str(caught.value)
    sampler = Sampler([HostBackend(), NvmlBackend(0)], 50)
    with sampler:
        pass
    assert sampler.record is not None
    nvml = sampler.record.get(NVML)
    assert nvml is not None and nvml.status.startswith("unavailable: ") and nvml.timestamps_ns == ()
    assert sampler.record.energy_j is None
    environment = nvml_environment([0])
    assert environment["status"] == nvml.status


@pytest.mark.skipif(importlib.util.find_spec("amdsmi") is not None, reason="amdsmi is installed here")
def test_amdsmi_missing_is_a_recorded_status() -> None:
    with pytest.raises(BackendUnavailable, match="amdsmi is not importable"):
        AmdSmiBackend(0, visible_devices=None).open()


def test_device_matching_respects_uuids_and_visible_devices() -> None:
    physical = ["GPU-aaaa-1111", "GPU-bbbb-2222", "GPU-cccc-3333"]
    # by UUID, whatever the prefix and case, and whatever CUDA_VISIBLE_DEVICES says
    assert match_device(0, "CCCC-3333", physical, "0") == 2
    # by CUDA_VISIBLE_DEVICES: torch renumbers the visible devices from 0
    assert match_device(0, None, physical, "2,1") == 2
    assert match_device(1, None, physical, "2,1") == 1
    assert match_device(1, None, physical, None) == 1
    assert match_device(0, None, physical, "GPU-bbbb") == 1  # an abbreviated UUID entry
    assert visible_device_entry(1, " 3 , 5 ") == "5"
    with pytest.raises(BackendUnavailable, match="not among"):
        match_device(2, None, physical, "0,1")
    with pytest.raises(BackendUnavailable, match="does not exist"):
        match_device(0, None, physical, "7")
    with pytest.raises(BackendUnavailable, match="matches 0 GPUs"):
        match_device(0, None, physical, "GPU-dddd")


def test_peak_rss_is_per_iteration() -> None:
    tracker = PeakMemoryTracker(torch.device("cpu"))
    size = 64 * 2**20

    def allocate() -> int:
        block = bytearray(size)  # touched: it really becomes resident
        return len(block)

    assert tracker.wrap(allocate)() == size
    tracker.wrap(lambda: None)()
    big, small = tracker.peaks
    assert big.peak_rss_bytes is not None and small.peak_rss_bytes is not None
    if big.source == "VmHWM (peak RSS)":  # Linux: the mark is reset before each call
        assert big.peak_rss_bytes - small.peak_rss_bytes >= size // 2
    assert big.peak_bytes == big.peak_rss_bytes


def test_monitor_records_round_trip_and_energy_comes_from_the_counter() -> None:
    nvml = SampleSeries(
        NVML, "ok", "cuda:0", (10, 20, 30), {"energy_mj": (5_000, 5_400, 6_500), "power_w": (100.0, None, 300.0)}
    )
    record = MonitorRecord(50, 5, 35, (SampleSeries(HOST, "ok"), nvml))
    assert record.energy_j == pytest.approx(1.5)
    assert nvml.mean("power_w") == pytest.approx(200.0) and nvml.peak("power_w") == 300.0
    assert MonitorRecord.from_dict(record.to_dict()) == record
    broken = MonitorRecord(50, 5, 35, (SampleSeries(NVML, "failed after 0 samples: X", columns={"energy_mj": (1, 2)}),))
    assert broken.energy_j is None
    peak = MemoryPeak("torch.cuda allocator", 10, 20, 30)
    assert MemoryPeak.from_dict(peak.to_dict()) == peak and peak.peak_bytes == 10


@pytest.mark.cuda
@needs_cuda
def test_nvml_samples_the_gpu_the_model_runs_on(fast_config_fields: dict[str, object]) -> None:
    config = BenchmarkConfig(**{**fast_config_fields, "device": "cuda", "monitor_interval_ms": 5})  # type: ignore[arg-type]
    result = tokbench.run(config, progress=False, device_warmup_s=0.01)
    assert result.status == "ok", result.reason
    assert result.monitor is not None
    gpu = result.monitor.gpu
    assert gpu is not None and gpu.ok, gpu
    assert len(gpu.timestamps_ns) >= 2
    assert torch.cuda.get_device_name(0) in gpu.device
    assert any(v is not None for v in gpu.column("memory_used_bytes"))
    assert all(peak.peak_allocated_bytes and peak.peak_allocated_bytes > 0 for peak in result.memory_peaks)
    report = result.efficiency
    assert report is not None and report.mbu is not None
    if report.energy_j is not None:
        assert report.energy_per_token_j is not None and report.energy_per_token_j > 0
    nvml = result.environment.nvml
    assert nvml is not None and nvml.status == "ok" and nvml.devices
    assert (nvml.devices[0].uuid or "-") in gpu.device

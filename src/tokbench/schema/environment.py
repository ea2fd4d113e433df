"""What a measurement ran on, as a typed record: ``BenchmarkResult.environment``.

Captured by ``hardware.environment.capture_environment`` in the process that ran the config (or, for a result
built elsewhere, by the launcher, the Ray driver or the sweep runner, which say so in ``captured_by``). Every
field is optional: a capture that failed keeps only ``capture_error``, and results written before a field existed
load with its default. The JSON keeps the shape results always had: the machine's facts are always written (null
when unknown), the keys that say something happened (``capture_error``, ``captured_by``, ``compat_warnings``)
only when it did; NVML facts only where NVML answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from tokbench.schema.serde import Record


@dataclass(frozen=True)
class GitState(Record):
    """A git work tree's commit and whether it had uncommitted changes to tracked files."""

    commit: str
    dirty: bool


@dataclass(frozen=True)
class GpuInfo(Record):
    """One GPU as torch sees it."""

    index: int
    name: str
    total_memory_bytes: int
    capability: str  # "major.minor"
    uuid: str | None = None


@dataclass(frozen=True)
class CpuFrequency(Record):
    """psutil's CPU frequency at capture (0.0 where the kernel does not expose a maximum)."""

    current: float
    max: float


@dataclass(frozen=True)
class NvmlDevice(Record):
    """One GPU's NVML facts at the start of the run; a fact this GPU or driver does not report is left out."""

    torch_index: int
    status: str | None = None  # only when this GPU could not be matched to an NVML device: why
    nvml_index: int | None = None
    uuid: str | None = None
    name: str | None = None
    sm_clock_mhz: int | None = None
    memory_clock_mhz: int | None = None
    max_sm_clock_mhz: int | None = None
    max_memory_clock_mhz: int | None = None
    power_limit_w: float | None = None
    temperature_c: int | None = None
    persistence_mode: bool | None = None
    mig_mode: int | None = None

    OMIT_NONE: ClassVar[bool] = True


@dataclass(frozen=True)
class NvmlFacts(Record):
    """The NVIDIA driver's facts (``hardware.monitor.nvml_environment``): ``status`` says whether NVML answered."""

    status: str
    driver_version: str | None = None
    nvml_version: str | None = None
    cuda_driver_version: int | None = None
    devices: tuple[NvmlDevice, ...] | None = None

    OMIT_NONE: ClassVar[bool] = True


@dataclass(frozen=True)
class EnvironmentRecord(Record):
    """Library versions, OS, CPU, memory, GPUs, git state and the environment variables that change a run."""

    python: str | None = None
    python_implementation: str | None = None
    tokbench: str | None = None
    torch: str | None = None
    transformers: str | None = None
    os: str | None = None
    machine: str | None = None
    cpu: str | None = None
    cpu_count: int | None = None
    torch_threads: int | None = None
    torch_interop_threads: int | None = None
    cpu_governors: dict[str, int] | None = None  # governor -> how many CPUs run it
    cpu_frequency_mhz: CpuFrequency | None = None
    memory_bytes: int | None = None
    cuda: str | None = None
    hip: str | None = None
    gpu_driver: str | None = None
    gpus: tuple[GpuInfo, ...] = ()
    nvml: NvmlFacts | None = None
    git: GitState | None = None  # the working directory's tree (the user's code)
    tokbench_git: GitState | None = None  # tokbench's own tree (None for an installed wheel)
    env: dict[str, str] = field(default_factory=dict)  # CUDA_*, OMP_NUM_THREADS, TORCH_*, ... as set
    capture_error: str | None = None  # why the capture failed (the rest is then unknown)
    captured_by: str | None = None  # which process captured it, when not the one that ran the config
    compat_warnings: tuple[str, ...] = ()  # engine.compat.check_versions: versions outside the tested range

    SPARSE_FIELDS: ClassVar[tuple[str, ...]] = ("capture_error", "captured_by", "compat_warnings")

    @property
    def commit(self) -> str | None:
        """The commit of the working directory's tree, if it was a git tree."""
        return self.git.commit if self.git is not None else None

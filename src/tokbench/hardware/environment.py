"""What the measurement ran on: library versions, OS, CPU, memory, GPU, and the code's git commit."""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import sys
from pathlib import Path

from tokbench.schema.environment import CpuFrequency, EnvironmentRecord, GitState, GpuInfo, NvmlFacts

_RELEVANT_ENV_PREFIXES = (
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "CUDA_LAUNCH_BLOCKING",
    "HIP_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "NVIDIA_TF32_OVERRIDE",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TORCH_",
    "TORCHINDUCTOR_",
    "PYTORCH_",
)


def cpu_model_name() -> str:
    """The CPU's marketing name (``platform.processor()`` is often empty on Linux)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def total_memory_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:  # pragma: no cover - psutil is a dependency
        return None


def git_state(directory: str | Path | None = None) -> GitState | None:
    """Commit and dirty flag of the git work tree at ``directory`` (cwd by default), or None."""
    cwd = str(directory) if directory is not None else os.getcwd()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return GitState(commit, bool(status.strip()))


def cpu_governors() -> dict[str, int] | None:
    """How many CPUs run each cpufreq governor (``{"performance": 64}``), or None where it is not exposed."""
    counts: dict[str, int] = {}
    for path in sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_governor")):
        try:
            governor = path.read_text(encoding="ascii").strip()
        except OSError:
            continue
        counts[governor] = counts.get(governor, 0) + 1
    return counts or None


def cpu_frequency_mhz() -> CpuFrequency | None:
    try:
        import psutil

        frequency = psutil.cpu_freq()
    except Exception:  # psutil raises on some virtual machines where the files are missing
        return None
    return None if frequency is None else CpuFrequency(float(frequency.current), float(frequency.max))


def tokbench_git_state() -> GitState | None:
    """Commit and dirty flag of the tree tokbench's own code was imported from (None for an installed wheel)."""
    return git_state(Path(__file__).resolve().parent)


def gpu_info() -> tuple[GpuInfo, ...]:
    import torch

    if not torch.cuda.is_available():
        return ()
    devices = []
    for index in range(torch.cuda.device_count()):
        properties = torch.cuda.get_device_properties(index)
        devices.append(
            GpuInfo(
                index=index,
                name=properties.name,
                total_memory_bytes=int(properties.total_memory),
                capability=f"{properties.major}.{properties.minor}",
                uuid=str(getattr(properties, "uuid", "")) or None,
            )
        )
    return tuple(devices)


def _nvidia_driver_version() -> str | None:
    try:
        output = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return output.strip().splitlines()[0] if output.strip() else None


def capture_environment_or_reason(captured_by: str = "") -> EnvironmentRecord:
    """``capture_environment()``, or the reason it failed: a broken driver must never cost a result its record.

    ``captured_by`` says which process captured it when that is not the one that ran the config.
    """
    try:
        environment = capture_environment()
    except Exception as error:
        environment = EnvironmentRecord(capture_error=f"{type(error).__name__}: {error}")
    return dataclasses.replace(environment, captured_by=captured_by or None)


def capture_environment() -> EnvironmentRecord:
    """A snapshot of everything that can change a benchmark's numbers."""
    import torch
    import transformers

    from tokbench.hardware.monitor import nvml_environment
    from tokbench.version import __version__

    gpus = gpu_info()
    # driver, CUDA driver version; per GPU clocks, power limit, persistence and MIG mode at start
    nvml = NvmlFacts.from_dict(nvml_environment([gpu.index for gpu in gpus]))
    return EnvironmentRecord(
        python=sys.version.split()[0],
        python_implementation=platform.python_implementation(),
        tokbench=__version__,
        torch=torch.__version__,
        transformers=transformers.__version__,
        os=platform.platform(),
        machine=platform.machine(),
        cpu=cpu_model_name(),
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        torch_interop_threads=torch.get_num_interop_threads(),
        cpu_governors=cpu_governors(),
        cpu_frequency_mhz=cpu_frequency_mhz(),
        memory_bytes=total_memory_bytes(),
        cuda=torch.version.cuda,
        hip=getattr(torch.version, "hip", None),
        gpu_driver=nvml.driver_version or (_nvidia_driver_version() if gpus else None),
        gpus=gpus,
        nvml=nvml,
        git=git_state(),
        tokbench_git=tokbench_git_state(),
        env={key: value for key, value in sorted(os.environ.items()) if key.startswith(_RELEVANT_ENV_PREFIXES)},
    )

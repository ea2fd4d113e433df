"""What the measurement ran on: library versions, OS, CPU, memory, GPU, and the code's git commit."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

_RELEVANT_ENV_PREFIXES = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCH_", "TORCHINDUCTOR_")


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


def git_state(directory: str | Path | None = None) -> dict[str, Any] | None:
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
    return {"commit": commit, "dirty": bool(status.strip())}


def gpu_info() -> list[dict[str, Any]]:
    import torch

    if not torch.cuda.is_available():
        return []
    devices = []
    for index in range(torch.cuda.device_count()):
        properties = torch.cuda.get_device_properties(index)
        devices.append(
            {
                "index": index,
                "name": properties.name,
                "total_memory_bytes": int(properties.total_memory),
                "capability": f"{properties.major}.{properties.minor}",
            }
        )
    return devices


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


def capture_environment() -> dict[str, Any]:
    """A plain-dict snapshot of everything that can change a benchmark's numbers."""
    import torch
    import transformers

    from tokbench import __version__

    gpus = gpu_info()
    return {
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "tokbench": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "os": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_bytes": total_memory_bytes(),
        "cuda": torch.version.cuda,
        "hip": getattr(torch.version, "hip", None),
        "gpu_driver": _nvidia_driver_version() if gpus else None,
        "gpus": gpus,
        "git": git_state(),
        "env": {key: value for key, value in sorted(os.environ.items()) if key.startswith(_RELEVANT_ENV_PREFIXES)},
    }

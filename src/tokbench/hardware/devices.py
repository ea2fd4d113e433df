"""Device resolution and synchronization: the one place that knows about accelerator back-ends."""

from __future__ import annotations

import torch

from tokbench.config import parse_device
from tokbench.errors import UnavailableFeatureError


def resolve_device(spec: str) -> torch.device:
    """Turn a config's device string into a ``torch.device`` that exists on this machine."""
    parse_device(spec)
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if hasattr(torch, "xpu") and torch.xpu.is_available():
            return torch.device("xpu", 0)
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UnavailableFeatureError(
                "device", f"{spec!r} asked for but this torch sees no CUDA device", "use --device cpu or auto"
            )
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise UnavailableFeatureError(
                "device",
                f"{spec!r} asked for but only {torch.cuda.device_count()} CUDA device(s) are visible",
                "pick an index below the visible count (CUDA_VISIBLE_DEVICES renumbers devices)",
            )
        return torch.device("cuda", index)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UnavailableFeatureError("device", "MPS is not available on this machine", "use --device cpu")
    if device.type == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        raise UnavailableFeatureError("device", "no XPU device is available", "use --device cpu")
    return device


_TORCH_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a config's ``dtype`` name."""
    return _TORCH_DTYPES[name]


def synchronize(device: torch.device) -> None:
    """Wait until all work queued on ``device`` has finished (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
    elif device.type == "xpu":
        torch.xpu.synchronize(device)


def device_name(device: torch.device) -> str:
    """A human-readable name for the hardware behind ``device``, used in cache keys and reports."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        from tokbench.hardware.environment import cpu_model_name

        return cpu_model_name()
    return device.type

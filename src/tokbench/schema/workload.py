"""The device kind a stored result ran on, and so its workload key, from its own records (no torch).

A run resolves ``device: auto`` when it loads the model (``effective_settings["device"]``); a result that
failed or was skipped before loading still names a kind: an explicit device's, or what ``auto`` picks
on the machine its environment describes (a CUDA device when torch saw one, as ``resolve_device`` does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tokbench.config import BenchmarkConfig
from tokbench.schema.environment import EnvironmentRecord


def run_device_type(
    config: BenchmarkConfig, effective_settings: Any, environment: EnvironmentRecord
) -> str:
    """The kind of device ("cpu", "cuda", ...) the run used, or would have used."""
    resolved = (
        effective_settings.get("device")
        if isinstance(effective_settings, Mapping)
        else getattr(effective_settings, "device", None)
    )
    if isinstance(resolved, str) and resolved:
        return resolved.split(":")[0]
    if config.device != "auto":
        return config.device.split(":")[0]
    return "cuda" if environment.gpus else "cpu"


def result_workload_key(
    config: BenchmarkConfig, effective_settings: Any, environment: EnvironmentRecord
) -> str:
    """``config.workload_key`` for the device kind the run resolved."""
    return config.workload_key(run_device_type(config, effective_settings, environment))
